"""Finding assets a user may see, and the conversions every asset service needs.

An asset of a campaign the user cannot see is reported exactly like one that does not exist
(NotFound), so its existence is not revealed (farm.campaigns.access).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.campaigns.access import visible_campaigns
from farm.db.models import Asset, User
from farm.errors import InvalidInput, NotFound


def asset_id_value(value: object, field: str = "asset_id") -> int:
    """An asset id given by a form, the API or the CLI, as an int (InvalidInput naming `field`)."""
    if isinstance(value, bool):
        raise InvalidInput(field, f"must be an asset id, got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 1:
        raise InvalidInput(field, f"must be an asset id, got {value!r}")
    return value


def visible_asset(session: Session, user: User, asset_id: object, *, field: str = "asset_id",
                  for_update: bool = False) -> Asset:
    """The asset, or NotFound if there is none or its campaign is hidden from `user`.

    `for_update` locks the row (Postgres) until the caller's transaction ends, so two reviewers
    deciding at once are serialised and each audit event's `before` is true.
    """
    asset_id = asset_id_value(asset_id, field)
    query = select(Asset).where(Asset.id == asset_id, visible_campaigns(user, Asset.campaign_id))
    if for_update:
        query = query.with_for_update(of=Asset)
    asset = session.scalar(query)
    if asset is None:
        raise NotFound("asset", asset_id)
    return asset


def jsonable(value: Any) -> Any:
    """Dataclasses, lists, dicts and datetimes turned into what json.dumps takes (ISO 8601 times)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def unique_ids(values: Iterable[object], field: str) -> list[int]:
    """Ids in the order given, each once."""
    return list(dict.fromkeys(asset_id_value(v, field) for v in values))
