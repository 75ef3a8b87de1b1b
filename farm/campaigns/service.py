"""Campaigns: the brand, its commercial-use flag and style, its channel formats, and who owns it.

The functions that take a `user` act for that user: they see only the campaigns
farm.campaigns.access lets the user see (others are reported as not found), record the user in
the audit log with the values before and after each change, and return plain `CampaignInfo`
values the dashboard and the API can render or serialise. Which roles may call which function is
the dashboard's to check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Mapping

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.campaigns.access import require_visible_campaign, visible_campaigns
from farm.campaigns.formats import resolve_formats
from farm.db.base import utcnow
from farm.db.models import Campaign, CampaignMember, RegisteredModel, User
from farm.errors import InvalidInput, NotFound
from farm.models.registry import require_active_checkpoint

ADHOC_CAMPAIGN = "Ad hoc renders"
MAX_NAME_CHARS = 200
MAX_STYLE_CHARS = 2000
# What `update_campaign` may change.
EDITABLE_FIELDS = ("name", "brand", "commercial_use", "due_date", "default_model", "style_suffix",
                   "style_negative", "channel_formats")


def _checked_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "is required")
    if len(value.strip()) > MAX_NAME_CHARS:
        raise InvalidInput(field, f"is longer than {MAX_NAME_CHARS} characters")
    return value.strip()


def _checked_style(value: object, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be text")
    if len(value) > MAX_STYLE_CHARS:
        raise InvalidInput(field, f"is longer than {MAX_STYLE_CHARS} characters")
    return value.strip()


def _checked_due_date(value: object) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        raise InvalidInput("due_date", "must be a date, not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidInput("due_date", f"must be a date as YYYY-MM-DD, got {value!r}")


def _checked_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, f"must be true or false, got {value!r}")
    return value


def _checked_formats(value: object) -> list[str]:
    if value is None:
        return []
    return [f.name for f in resolve_formats(value, field="channel_formats")]


def _default_model_id(session: Session, value: object) -> int | None:
    if value is None or value == "":
        return None
    return require_active_checkpoint(session, value, field="default_model").id


def _require_unique_name(session: Session, name: str, campaign_id: int | None = None) -> None:
    clash = select(Campaign.id).where(Campaign.name == name)
    if campaign_id is not None:
        clash = clash.where(Campaign.id != campaign_id)
    if session.scalar(clash):
        raise InvalidInput("name", f"a campaign named '{name}' exists already")


def create_campaign(
    session: Session,
    *,
    name: str,
    brand: str,
    commercial_use: bool = True,
    due_date: date | str | None = None,
    style_suffix: str = "",
    style_negative: str = "",
    owner: User | None = None,
    default_model: str | None = None,
    channel_formats: list[str] | None = None,
) -> Campaign:
    name, brand = _checked_name(name, "name"), _checked_name(brand, "brand")
    values = dict(
        name=name, brand=brand, commercial_use=_checked_bool(commercial_use, "commercial_use"),
        due_date=_checked_due_date(due_date), style_suffix=_checked_style(style_suffix, "style_suffix"),
        style_negative=_checked_style(style_negative, "style_negative"),
        default_model_id=_default_model_id(session, default_model),
        channel_formats=_checked_formats(channel_formats),
    )
    _require_unique_name(session, name)
    campaign = Campaign(**values, owner_id=owner.id if owner else None)
    session.add(campaign)
    session.flush()
    record_event(session, action="campaign.created", entity_type="campaign", entity_id=campaign.id,
                 actor=owner, after=_audit_values(session, campaign))
    return campaign


def adhoc_campaign(session: Session) -> Campaign:
    """The campaign that renders submitted without one (e.g. `farm render`) belong to.

    It is marked non-commercial: ad hoc renders are exploration, not deliverables.
    """
    campaign = session.scalar(select(Campaign).where(Campaign.name == ADHOC_CAMPAIGN))
    return campaign or create_campaign(
        session, name=ADHOC_CAMPAIGN, brand="(none)", commercial_use=False
    )


def get_campaign(session: Session, name: str) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        raise InvalidInput("campaign", f"unknown campaign '{name}'")
    return campaign


def require_open_campaign(session: Session, user: User, campaign_id: int) -> Campaign:
    """A campaign the user can see that takes new jobs; InvalidInput("campaign") if archived."""
    campaign = require_visible_campaign(session, user, campaign_id)
    if campaign.status == "archived":
        raise InvalidInput("campaign", f"campaign '{campaign.name}' is archived and takes no new jobs")
    return campaign


# -- what the dashboard and the API call ----------------------------------------------------------

@dataclass(frozen=True)
class CampaignInfo:
    id: int
    name: str
    brand: str
    status: str
    commercial_use: bool
    due_date: date | None
    default_model: str | None
    style_suffix: str
    style_negative: str
    channel_formats: list[str]
    owner_id: int | None
    created_at: datetime
    updated_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: dates and times as ISO 8601 text."""
        values = asdict(self)
        for key in ("due_date", "created_at", "updated_at"):
            values[key] = values[key].isoformat() if values[key] is not None else None
        return values


def _model_name(session: Session, model_id: int | None) -> str | None:
    return session.scalar(select(RegisteredModel.name).where(RegisteredModel.id == model_id)) if model_id else None


def campaign_info(session: Session, campaign: Campaign) -> CampaignInfo:
    return CampaignInfo(
        id=campaign.id, name=campaign.name, brand=campaign.brand, status=campaign.status,
        commercial_use=campaign.commercial_use, due_date=campaign.due_date,
        default_model=_model_name(session, campaign.default_model_id), style_suffix=campaign.style_suffix,
        style_negative=campaign.style_negative, channel_formats=list(campaign.channel_formats),
        owner_id=campaign.owner_id, created_at=campaign.created_at, updated_at=campaign.updated_at,
    )


def _audit_values(session: Session, campaign: Campaign, fields=EDITABLE_FIELDS) -> dict[str, Any]:
    values = campaign_info(session, campaign).to_dict()
    return {key: values[key] for key in fields}


def create_campaign_as(session: Session, user: User, **fields: Any) -> CampaignInfo:
    """Create a campaign owned by `user` (fields as `create_campaign` takes them)."""
    unknown = sorted(set(fields) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], "is not a campaign field")
    return campaign_info(session, create_campaign(session, owner=user, **fields))


def get_campaign_info(session: Session, user: User, campaign_id: int) -> CampaignInfo:
    return campaign_info(session, require_visible_campaign(session, user, campaign_id))


def list_campaigns(session: Session, user: User, include_archived: bool = False) -> list[CampaignInfo]:
    """The campaigns the user can see, by name; archived ones only when asked for."""
    query = select(Campaign).where(visible_campaigns(user)).order_by(Campaign.name)
    if not include_archived:
        query = query.where(Campaign.status != "archived")
    campaigns = session.scalars(query).all()
    model_ids = {c.default_model_id for c in campaigns if c.default_model_id}
    names = dict(session.execute(select(RegisteredModel.id, RegisteredModel.name)
                                 .where(RegisteredModel.id.in_(model_ids))).all()) if model_ids else {}
    return [CampaignInfo(
        id=c.id, name=c.name, brand=c.brand, status=c.status, commercial_use=c.commercial_use,
        due_date=c.due_date, default_model=names.get(c.default_model_id), style_suffix=c.style_suffix,
        style_negative=c.style_negative, channel_formats=list(c.channel_formats), owner_id=c.owner_id,
        created_at=c.created_at, updated_at=c.updated_at,
    ) for c in campaigns]


def update_campaign(session: Session, user: User, campaign_id: int, changes: Mapping[str, Any]) -> CampaignInfo:
    """Change any of EDITABLE_FIELDS; only fields whose value changes are written and audited.

    `default_model` is a model name (or None to clear it), `channel_formats` a list of names
    from configs/channels.yaml, `due_date` a date or "YYYY-MM-DD".
    """
    campaign = require_visible_campaign(session, user, campaign_id)
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], "is not a campaign field that can be changed")
    checked: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("name", "brand"):
            checked[key] = _checked_name(value, key)
        elif key == "commercial_use":
            checked[key] = _checked_bool(value, key)
        elif key == "due_date":
            checked[key] = _checked_due_date(value)
        elif key in ("style_suffix", "style_negative"):
            checked[key] = _checked_style(value, key)
        elif key == "channel_formats":
            checked[key] = _checked_formats(value)
        elif key == "default_model":
            checked["default_model_id"] = _default_model_id(session, value)
    if "name" in checked:
        _require_unique_name(session, checked["name"], campaign.id)
    before = _audit_values(session, campaign)
    changed = {key: value for key, value in checked.items() if getattr(campaign, key) != value}
    if not changed:
        return campaign_info(session, campaign)
    for key, value in changed.items():
        setattr(campaign, key, value)
    campaign.updated_at = utcnow()
    session.flush()
    after = _audit_values(session, campaign)
    fields = [key for key in EDITABLE_FIELDS if before[key] != after[key]]
    record_event(session, action="campaign.updated", entity_type="campaign", entity_id=campaign.id, actor=user,
                 before={key: before[key] for key in fields}, after={key: after[key] for key in fields})
    return campaign_info(session, campaign)


def _set_status(session: Session, user: User, campaign_id: int, status: str, action: str) -> CampaignInfo:
    campaign = require_visible_campaign(session, user, campaign_id)
    if campaign.status != status:
        before = campaign.status
        campaign.status = status
        campaign.updated_at = utcnow()
        session.flush()
        record_event(session, action=action, entity_type="campaign", entity_id=campaign.id, actor=user,
                     before={"status": before}, after={"status": status})
    return campaign_info(session, campaign)


def archive_campaign(session: Session, user: User, campaign_id: int) -> CampaignInfo:
    """Archived campaigns stay readable (gallery, exports) but take no new jobs."""
    return _set_status(session, user, campaign_id, "archived", "campaign.archived")


def unarchive_campaign(session: Session, user: User, campaign_id: int) -> CampaignInfo:
    campaign = require_visible_campaign(session, user, campaign_id)
    if campaign.status != "archived":
        return campaign_info(session, campaign)
    return _set_status(session, user, campaign_id, "active", "campaign.unarchived")


# -- members ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemberInfo:
    user_id: int
    name: str
    role: str
    added_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "added_at": self.added_at.isoformat()}


def list_members(session: Session, user: User, campaign_id: int) -> list[MemberInfo]:
    require_visible_campaign(session, user, campaign_id)
    rows = session.execute(
        select(User, CampaignMember.added_at).join(CampaignMember, CampaignMember.user_id == User.id)
        .where(CampaignMember.campaign_id == campaign_id).order_by(User.name)
    ).all()
    return [MemberInfo(user_id=u.id, name=u.name, role=u.role, added_at=added) for u, added in rows]


def _member_user(session: Session, member_id: object) -> User:
    if isinstance(member_id, bool) or not isinstance(member_id, int):
        raise InvalidInput("user_id", f"must be a user id, got {member_id!r}")
    member = session.get(User, member_id)
    if member is None:
        raise NotFound("user", member_id)
    return member


def add_member(session: Session, user: User, campaign_id: int, member_id: int) -> bool:
    """Let user `member_id` see the campaign; False if they were a member already."""
    campaign = require_visible_campaign(session, user, campaign_id)
    member = _member_user(session, member_id)
    if member.disabled:
        raise InvalidInput("user_id", f"user '{member.name}' is disabled")
    if session.scalar(select(CampaignMember.id).where(CampaignMember.campaign_id == campaign.id,
                                                      CampaignMember.user_id == member.id)):
        return False
    session.add(CampaignMember(campaign_id=campaign.id, user_id=member.id))
    session.flush()
    record_event(session, action="campaign.member_added", entity_type="campaign", entity_id=campaign.id,
                 actor=user, before=None, after={"user_id": member.id, "user": member.name})
    return True


def remove_member(session: Session, user: User, campaign_id: int, member_id: int) -> bool:
    """Take away user `member_id`'s membership; False if they were not a member."""
    campaign = require_visible_campaign(session, user, campaign_id)
    member = _member_user(session, member_id)
    removed = session.execute(
        delete(CampaignMember).where(CampaignMember.campaign_id == campaign.id, CampaignMember.user_id == member.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not removed:
        return False
    record_event(session, action="campaign.member_removed", entity_type="campaign", entity_id=campaign.id,
                 actor=user, before={"user_id": member.id, "user": member.name}, after=None)
    return True
