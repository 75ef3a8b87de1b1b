"""Paging the gallery back towards newer assets.

The gallery pages by keyset towards older assets (farm.assets.gallery: `before` = the last id of
the page shown). A "newer" link names the first id of the page shown (`after`); this module
finds the `before` cursor that shows the page of assets just newer than it, with the same
filters, so both directions are pages of the same kind and a page is always keyed by `before`.

One query, an index range scan forwards from `after` that stops after `limit + 1` rows, whatever
the table's size.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.assets.gallery import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, GalleryFilters
from farm.assets.lookup import asset_id_value
from farm.campaigns.access import require_visible_campaign, visible_campaigns
from farm.db.models import Asset, User
from farm.errors import InvalidInput


def before_for_newer(session: Session, user: User, filters: GalleryFilters | None, after: object, *,
                     limit: int = DEFAULT_PAGE_SIZE) -> int | None:
    """The `before` cursor of the page of the `limit` assets just newer than asset id `after`
    (those `user` may see, matching `filters`); None when that page is the first page.

    Filtering on a campaign the user cannot see raises NotFound, as list_assets does; a bad
    `after` raises InvalidInput("after", ...).
    """
    filters = filters or GalleryFilters()
    filters.validate()
    after = asset_id_value(after, "after")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
    conditions = [getattr(Asset, name) == value for name, value in filters.active().items()]
    if filters.campaign_id is not None:
        require_visible_campaign(session, user, filters.campaign_id)
    else:
        conditions.append(visible_campaigns(user, Asset.campaign_id))
    newer = list(session.scalars(
        select(Asset.id).where(Asset.id > after, *conditions).order_by(Asset.id.asc()).limit(limit + 1)))
    # ids just above `after`, oldest first: with more than a page of them, the page shows
    # newer[limit - 1] .. newer[0], which is "below newer[limit]"; otherwise it is the first page.
    return newer[limit] if len(newer) > limit else None
