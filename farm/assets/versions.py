"""Versions of an asset and side-by-side comparison.

A re-render with changes makes a new version pointing at its parent (farm.review.rerender), so
an asset's versions form a tree: the root (version 1) and every re-render below it. An upscale
also points at its source, but it is a derivative, not a version: lineage follows re-render
links only, and an upscale's own lineage starts at the upscale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, literal, select
from sqlalchemy.orm import Session, aliased

from farm.assets.lookup import visible_asset
from farm.db.models import Asset, RegisteredModel, Render, User


@dataclass(frozen=True)
class VersionEntry:
    asset_id: int
    version: int
    parent_asset_id: int | None
    approval_state: str
    created_at: datetime
    thumbnail_key: str
    storage_key: str
    width: int
    height: int
    seed: int | None
    prompt: str
    is_requested: bool  # the asset the lineage was asked for


def _lineage_query():
    """The SELECT of every version of asset :asset_id (root and all re-render descendants),
    with its render's parameters, in version order. Built once: constructing the CTEs costs
    more than running them.

    Two recursive CTEs in one statement: up to the root through re-render links, then down from
    the root. Re-renders stay in their campaign, so the walk down is kept to :campaign_id and
    uses the (campaign_id, id) index instead of every asset.
    """
    asset_id, campaign_id = bindparam("asset_id", type_=Integer), bindparam("campaign_id", type_=Integer)
    up = (select(Asset.id.label("id"), Asset.parent_asset_id.label("parent_id"), Render.kind.label("kind"),
                 literal(0).label("depth"))
          .join(Render, Render.id == Asset.render_id).where(Asset.id == asset_id)
          .cte("lineage_up", recursive=True))
    parent, parent_render = aliased(Asset), aliased(Render)
    up = up.union_all(
        select(parent.id, parent.parent_asset_id, parent_render.kind, up.c.depth + 1)
        .join(parent_render, parent_render.id == parent.render_id)
        .join(up, parent.id == up.c.parent_id)
        .where(up.c.kind != "upscale")
    )
    root = select(up.c.id).order_by(up.c.depth.desc()).limit(1).scalar_subquery()
    down = select(Asset.id.label("id")).where(Asset.id == root).cte("lineage_down", recursive=True)
    child, child_render = aliased(Asset), aliased(Render)
    down = down.union_all(
        select(child.id)
        .join(child_render, child_render.id == child.render_id)
        .join(down, child.parent_asset_id == down.c.id)
        # A re-render's asset is written after its parent's, so its id is higher: with the
        # campaign, that bounds the walk to one range of the (campaign_id, id) index.
        .where(child.campaign_id == campaign_id, child.id > down.c.id, child_render.kind != "upscale")
    )
    return (select(Asset, Render.params).join(Render, Render.id == Asset.render_id)
            .where(Asset.id.in_(select(down.c.id))).order_by(Asset.version, Asset.created_at, Asset.id))


_LINEAGE = _lineage_query()


def lineage(session: Session, asset: Asset) -> list[VersionEntry]:
    """Every version of an asset already known to be visible, by version, then time: one query."""
    rows = session.execute(_LINEAGE, {"asset_id": asset.id, "campaign_id": asset.campaign_id}).all()
    return [VersionEntry(
        asset_id=a.id, version=a.version, parent_asset_id=a.parent_asset_id, approval_state=a.approval_state,
        created_at=a.created_at, thumbnail_key=a.thumbnail_key, storage_key=a.storage_key, width=a.width,
        height=a.height, seed=params.get("seed"), prompt=params.get("prompt", ""), is_requested=a.id == asset.id,
    ) for a, params in rows]


def versions_of(session: Session, user: User, asset_id: int) -> list[VersionEntry]:
    """The asset's whole lineage (root and every re-render below it), by version then time,
    with approval states. NotFound if the user cannot see the asset."""
    return lineage(session, visible_asset(session, user, asset_id))


# -- comparison ---------------------------------------------------------------------------------

# Shown first, in this order; any other parameter follows by name. variable_row is bookkeeping
# (an index into the job's rows), not a parameter anyone chose.
PARAM_ORDER = ("prompt", "negative_prompt", "seed", "steps", "cfg_scale", "sampler", "width", "height",
               "format", "model", "model_sha256")
HIDDEN_PARAMS = frozenset({"variable_row"})


@dataclass(frozen=True)
class ComparedAsset:
    asset_id: int
    version: int
    parent_asset_id: int | None
    approval_state: str
    storage_key: str
    thumbnail_key: str
    width: int
    height: int
    params: dict[str, Any]


@dataclass(frozen=True)
class ParamRow:
    name: str
    a: Any
    b: Any
    differs: bool


@dataclass(frozen=True)
class Comparison:
    a: ComparedAsset
    b: ComparedAsset
    rows: list[ParamRow]        # every parameter, side by side
    differences: list[str]      # names of the parameters that differ


def _compared(session: Session, user: User, asset_id: int, field: str) -> ComparedAsset:
    asset = visible_asset(session, user, asset_id, field=field)
    model_name, model_sha256 = session.execute(
        select(RegisteredModel.name, RegisteredModel.sha256).where(RegisteredModel.id == asset.render.model_id)
    ).one()
    params = {k: v for k, v in asset.render.params.items() if k not in HIDDEN_PARAMS}
    params.update(model=model_name, model_sha256=model_sha256)
    return ComparedAsset(asset_id=asset.id, version=asset.version, parent_asset_id=asset.parent_asset_id,
                         approval_state=asset.approval_state, storage_key=asset.storage_key,
                         thumbnail_key=asset.thumbnail_key, width=asset.width, height=asset.height, params=params)


def compare(session: Session, user: User, a: int, b: int) -> Comparison:
    """Two assets' parameters side by side and which differ (any two assets the user can see;
    usually two versions of one asset). NotFound names the asset that cannot be seen."""
    left, right = _compared(session, user, a, "a"), _compared(session, user, b, "b")
    names = [n for n in PARAM_ORDER if n in left.params or n in right.params]
    names += sorted((set(left.params) | set(right.params)) - set(names))
    rows = [ParamRow(name, left.params.get(name), right.params.get(name),
                     left.params.get(name) != right.params.get(name)) for name in names]
    return Comparison(a=left, b=right, rows=rows, differences=[row.name for row in rows if row.differs])
