"""The gallery: assets newest first, filtered, one page at a time, fast with 100,000 assets.

Paging is by keyset, not offset: a page asks for ids below the last id of the page before
(`before`), so page 500 costs what page 1 costs. Each filter has an index ending in id
((campaign_id, id), (job_id, id), (model_id, id), (channel_format, id), (approval_state, id)),
so a page is one backward index range scan that stops after `limit + 1` rows; the extra row
says whether there is a next page without counting anything.

A page is one or two queries whatever its size (see list_assets): the model name and the
render's prompt and seed for the caption come in the same query by join, and thumbnails are
keys in the asset row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Select, select, union_all
from sqlalchemy.orm import Session

from farm.campaigns.access import require_visible_campaign, sees_every_campaign, visible_campaigns
from farm.db.models import APPROVAL_STATES, Asset, Campaign, RegisteredModel, Render, User
from farm.errors import InvalidInput

DEFAULT_PAGE_SIZE = 48
MAX_PAGE_SIZE = 200
CAPTION_LENGTH = 120


@dataclass(frozen=True)
class GalleryFilters:
    campaign_id: int | None = None
    job_id: int | None = None
    approval_state: str | None = None
    model_id: int | None = None
    channel_format: str | None = None

    @classmethod
    def from_query(cls, args: Mapping[str, Any]) -> "GalleryFilters":
        """From query-string or JSON values (text or numbers; empty means no filter), checked:
        InvalidInput names the field."""
        values: dict[str, Any] = {}
        for name in ("campaign_id", "job_id", "model_id"):
            values[name] = _optional_id(args.get(name), name)
        for name in ("approval_state", "channel_format"):
            value = args.get(name)
            values[name] = value.strip() or None if isinstance(value, str) else value
        filters = cls(**values)
        filters.validate()
        return filters

    def validate(self) -> None:
        for name in ("campaign_id", "job_id", "model_id"):
            _optional_id(getattr(self, name), name)
        if self.approval_state is not None and self.approval_state not in APPROVAL_STATES:
            raise InvalidInput("approval_state", f"must be one of {', '.join(APPROVAL_STATES)}")
        if self.channel_format is not None and (not isinstance(self.channel_format, str) or len(self.channel_format) > 64):
            raise InvalidInput("channel_format", "must be a channel format name")

    def active(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _optional_id(value: object, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(name, f"must be a positive whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class GalleryItem:
    asset_id: int
    thumbnail_key: str
    storage_key: str
    width: int
    height: int
    format: str
    approval_state: str
    version: int
    parent_asset_id: int | None
    campaign_id: int
    job_id: int
    model_id: int
    model_name: str
    channel_format: str | None
    seed: int | None
    caption: str  # the prompt, cut to CAPTION_LENGTH characters
    created_at: datetime
    # A model of its chain was suspended or changed license since it was made (farm.models.admin).
    needs_rereview: bool = False


@dataclass(frozen=True)
class GalleryPage:
    items: list[GalleryItem]
    has_more: bool
    # Pass as `before` for the next page (the last item's id); None on the last page.
    next_cursor: int | None
    filters: GalleryFilters = field(default_factory=GalleryFilters)
    limit: int = DEFAULT_PAGE_SIZE


# A user who sees at most this many campaigns (and filters on none) gets one index range scan
# per campaign, merged: see gallery_query.
MAX_CAMPAIGNS_SCANNED_APART = 50
# Which filter's index a page walks when several filters are given: the one likely to hold the
# fewest assets (a job holds at most 10,000; a campaign, a model, a format or a state far more).
DRIVING_FILTERS = ("job_id", "campaign_id", "model_id", "channel_format", "approval_state")


def _newest_ids(filters: dict[str, Any], before: int | None, limit: int) -> Select:
    """The ids of the newest limit + 1 assets below `before` that match every filter.

    Assets are written in id order, but not evenly: a campaign that ended, or a model that was
    retired, has all its assets far below the newest ids. Walking the primary key backwards and
    filtering (which the planner, assuming an even spread, often prefers) would then read most of
    the table to fill one page. So the page walks the filter's own (filter, id) index instead:
    the filter is written as a range (BETWEEN v AND v) and the order as (filter, id), which only
    that index gives without sorting. An equality would let Postgres drop the filter from the
    order (it is constant) and fall back on the primary key. Other filters are checked on the
    way; at worst the walk reads every asset of the driving filter, never the whole table.
    """
    query = select(Asset.id)
    if before is not None:
        query = query.where(Asset.id < before)
    if not filters:
        return query.order_by(Asset.id.desc()).limit(limit + 1)
    driver = next(name for name in DRIVING_FILTERS if name in filters)
    column = getattr(Asset, driver)
    query = query.where(column.between(filters[driver], filters[driver]),
                        *[getattr(Asset, name) == value for name, value in filters.items() if name != driver])
    return query.order_by(column.desc(), Asset.id.desc()).limit(limit + 1)


def gallery_query(filters: GalleryFilters, before: int | None, limit: int, *,
                  campaign_ids: list[int] | None = None) -> Select:
    """The SELECT behind one page (limit + 1 rows); exposed so tests and the bench can EXPLAIN it.

    The newest matching ids come from one index range scan (`_newest_ids`); the page joins
    their rows, renders and model names. `campaign_ids` keeps the page to those campaigns (the
    ones a user may see); None keeps it to none. Each campaign is then read apart through its
    own index range, newest first and at most limit + 1 ids, and the pieces are merged and cut:
    at most campaigns x (limit + 1) ids are read, however old the campaigns. Past
    MAX_CAMPAIGNS_SCANNED_APART campaigns the user sees much of the farm, and one scan of the
    newest assets, keeping those of their campaigns, fills a page quickly.
    """
    active = filters.active()
    if campaign_ids is None:
        ids = _newest_ids(active, before, limit)
    elif len(campaign_ids) > MAX_CAMPAIGNS_SCANNED_APART:
        ids = _newest_ids(active, before, limit).where(Asset.campaign_id.in_(campaign_ids))
    else:
        pieces = [_newest_ids({**active, "campaign_id": campaign_id}, before, limit).subquery()
                  for campaign_id in campaign_ids]
        merged = union_all(*[select(piece.c.id) for piece in pieces]).subquery()
        # Cut to one page before joining, so the join looks up limit + 1 rows by primary key.
        ids = select(merged.c.id).order_by(merged.c.id.desc()).limit(limit + 1)
    return (
        select(Asset.id, Asset.thumbnail_key, Asset.storage_key, Asset.width, Asset.height, Asset.format,
               Asset.approval_state, Asset.version, Asset.parent_asset_id, Asset.campaign_id, Asset.job_id,
               # The seed as JSON, not cast to an integer: seeds go up to 2**32 - 1, past Postgres' INTEGER.
               Asset.model_id, RegisteredModel.name, Asset.channel_format, Render.params["seed"],
               Render.params["prompt"].as_string(), Asset.created_at, Asset.needs_rereview)
        .join(Render, Render.id == Asset.render_id)
        .join(RegisteredModel, RegisteredModel.id == Asset.model_id)
        .where(Asset.id.in_(ids))
        .order_by(Asset.id.desc()).limit(limit + 1)
    )


def list_assets(session: Session, user: User, filters: GalleryFilters | None = None, *,
                before: int | None = None, limit: int = DEFAULT_PAGE_SIZE) -> GalleryPage:
    """One page of the assets `user` may see, newest first, matching every filter given.

    `before`: the `next_cursor` of the page before (None for the first page). Filtering on a
    campaign the user cannot see raises NotFound, as opening it would. One query for users who
    see every campaign, two otherwise (which campaigns they see, then the page), and two with a
    campaign filter (that it is visible, then the page).
    """
    filters = filters or GalleryFilters()
    filters.validate()
    before = _optional_id(before, "before")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
    campaign_ids = None
    if filters.campaign_id is not None:
        require_visible_campaign(session, user, filters.campaign_id)
    elif not sees_every_campaign(user):
        campaign_ids = list(session.scalars(select(Campaign.id).where(visible_campaigns(user)).order_by(Campaign.id)))
        if not campaign_ids:
            return GalleryPage(items=[], has_more=False, next_cursor=None, filters=filters, limit=limit)
    rows = session.execute(gallery_query(filters, before, limit, campaign_ids=campaign_ids)).all()
    items = [GalleryItem(
        asset_id=r[0], thumbnail_key=r[1], storage_key=r[2], width=r[3], height=r[4], format=r[5],
        approval_state=r[6], version=r[7], parent_asset_id=r[8], campaign_id=r[9], job_id=r[10], model_id=r[11],
        model_name=r[12], channel_format=r[13], seed=r[14], caption=_caption(r[15]), created_at=r[16],
        needs_rereview=bool(r[17]),
    ) for r in rows[:limit]]
    has_more = len(rows) > limit
    return GalleryPage(items=items, has_more=has_more, next_cursor=items[-1].asset_id if has_more else None,
                       filters=filters, limit=limit)


def _caption(prompt: str | None) -> str:
    prompt = (prompt or "").strip()
    return prompt if len(prompt) <= CAPTION_LENGTH else prompt[:CAPTION_LENGTH - 1].rstrip() + "…"


@dataclass(frozen=True)
class FilterChoice:
    value: Any
    label: str


@dataclass(frozen=True)
class FilterChoices:
    campaigns: list[FilterChoice]
    models: list[FilterChoice]
    approval_states: list[FilterChoice]
    channel_formats: list[FilterChoice]


def filter_choices(session: Session, user: User) -> FilterChoices:
    """What the gallery's filter menus offer: the campaigns the user may see (and their channel
    formats), the models that can make assets, the approval states. Two small queries, no scan
    of the assets (jobs are filtered from a job's page, not from a menu)."""
    campaigns = session.execute(
        select(Campaign.id, Campaign.name, Campaign.channel_formats).where(visible_campaigns(user))
        .order_by(Campaign.name)).all()
    models = session.execute(
        select(RegisteredModel.id, RegisteredModel.name)
        .where(RegisteredModel.kind.in_(("checkpoint", "upscaler"))).order_by(RegisteredModel.name)).all()
    formats = sorted({name for _, _, names in campaigns for name in (names or [])})
    return FilterChoices(
        campaigns=[FilterChoice(i, name) for i, name, _ in campaigns],
        models=[FilterChoice(i, name) for i, name in models],
        approval_states=[FilterChoice(s, s.replace("_", " ")) for s in APPROVAL_STATES],
        channel_formats=[FilterChoice(name, name) for name in formats],
    )
