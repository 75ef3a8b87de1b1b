"""Campaigns: the brand, its commercial-use flag and style, and who owns it."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.models import Campaign, User
from farm.errors import InvalidInput

ADHOC_CAMPAIGN = "Ad hoc renders"


def create_campaign(
    session: Session,
    *,
    name: str,
    brand: str,
    commercial_use: bool = True,
    due_date: date | None = None,
    style_suffix: str = "",
    style_negative: str = "",
    owner: User | None = None,
) -> Campaign:
    name, brand = name.strip(), brand.strip()
    if not name:
        raise InvalidInput("name", "is required")
    if not brand:
        raise InvalidInput("brand", "is required")
    if session.scalar(select(Campaign.id).where(Campaign.name == name)):
        raise InvalidInput("name", f"a campaign named '{name}' exists already")
    campaign = Campaign(
        name=name, brand=brand, commercial_use=commercial_use, due_date=due_date,
        style_suffix=style_suffix, style_negative=style_negative,
        owner_id=owner.id if owner else None,
    )
    session.add(campaign)
    session.flush()
    record_event(session, action="campaign.created", entity_type="campaign", entity_id=campaign.id,
                 actor=owner, after={"name": name, "brand": brand, "commercial_use": commercial_use})
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
