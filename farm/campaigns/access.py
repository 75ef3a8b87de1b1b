"""Who may see which campaign.

Admins, ops and auditors see every campaign (ops to follow the queue, auditors to audit it).
Campaign managers and reviewers see the campaigns they own or are members of. Everything a
campaign holds (templates, jobs, renders, assets, reviews, exports) is visible exactly when the
campaign is: services filter with `visible_campaigns` and check single ids with
`require_visible_campaign`. An invisible campaign is reported as not found, so its existence
is not revealed.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.orm import Session

from farm.db.models import Campaign, CampaignMember, User
from farm.errors import NotFound

SEES_EVERY_CAMPAIGN = frozenset({"admin", "ops", "auditor"})


def sees_every_campaign(user: User) -> bool:
    return user.role in SEES_EVERY_CAMPAIGN


def visible_campaigns(user: User, campaign_id_column=Campaign.id) -> ColumnElement[bool]:
    """A WHERE clause keeping rows whose campaign `user` may see; pass the row's campaign id column."""
    if sees_every_campaign(user):
        return true()
    owned = select(Campaign.id).where(Campaign.owner_id == user.id)
    member_of = select(CampaignMember.campaign_id).where(CampaignMember.user_id == user.id)
    return or_(campaign_id_column.in_(owned), campaign_id_column.in_(member_of))


def can_see_campaign(session: Session, user: User, campaign_id: int) -> bool:
    return session.scalar(
        select(Campaign.id).where(Campaign.id == campaign_id, visible_campaigns(user))
    ) is not None


def require_visible_campaign(session: Session, user: User, campaign_id: int) -> Campaign:
    """The campaign, or NotFound if it does not exist or `user` may not see it."""
    campaign = session.scalar(select(Campaign).where(Campaign.id == campaign_id, visible_campaigns(user)))
    if campaign is None:
        raise NotFound("campaign", campaign_id)
    return campaign
