"""What can be exported: the campaigns a user may see, with how many approved assets each has.

One query: the approved assets are counted per campaign through the (approval_state, id) index
and joined to the visible campaigns, so the export page costs the same however many campaigns or
assets there are.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.campaigns.access import visible_campaigns
from farm.db.models import Asset, Campaign, User


@dataclass(frozen=True)
class ExportableCampaign:
    campaign_id: int
    name: str
    brand: str
    status: str
    approved_assets: int


def exportable_campaigns(session: Session, user: User, *, include_archived: bool = True) -> list[ExportableCampaign]:
    """Every campaign `user` may see, by name, with its count of approved assets (0 included:
    the page says why there is nothing to export)."""
    approved = (select(Asset.campaign_id, func.count().label("approved"))
                .where(Asset.approval_state == "approved").group_by(Asset.campaign_id).subquery())
    query = (select(Campaign.id, Campaign.name, Campaign.brand, Campaign.status,
                    func.coalesce(approved.c.approved, 0))
             .outerjoin(approved, approved.c.campaign_id == Campaign.id)
             .where(visible_campaigns(user))
             .order_by(Campaign.name))
    if not include_archived:
        query = query.where(Campaign.status != "archived")
    return [ExportableCampaign(campaign_id=i, name=name, brand=brand, status=status, approved_assets=count)
            for i, name, brand, status, count in session.execute(query)]
