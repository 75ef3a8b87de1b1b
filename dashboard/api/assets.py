"""API: assets (the gallery's list, one asset with provenance, versions and reviews, its image),
comparison of two assets, and re-render with changes."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for

from dashboard.api.blueprint import api, api_body, api_query
from dashboard.auth import current_user
from dashboard.gallery import load_page
from dashboard.helpers import current_farm, db_transaction
from farm.assets.detail import AssetDetail, asset_detail
from farm.assets.gallery import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, GalleryItem
from farm.assets.lookup import jsonable, visible_asset
from farm.assets.versions import compare
from farm.db.models import APPROVAL_STATES
from farm.errors import InvalidInput, NotFound
from farm.render.params import MAX_CFG_SCALE, MAX_SEED, MAX_STEPS, MIN_CFG_SCALE, MIN_STEPS
from farm.review.rerender import CHANGEABLE_PARAMS, submit_rerender
from farm.review.service import DECISIONS
from farm.storage import ObjectMissing

TIME = {"type": "string", "format": "date-time"}
OPTIONAL_ID = {"type": ["integer", "null"]}

ASSET_SUMMARY = api.schema("AssetSummary", {
    "type": "object",
    "required": ["id", "campaign_id", "job_id", "model_id", "model_name", "channel_format", "width", "height",
                 "format", "approval_state", "version", "parent_asset_id", "seed", "caption", "created_at",
                 "image_url", "thumbnail_url"],
    "properties": {
        "id": {"type": "integer"},
        "campaign_id": {"type": "integer"},
        "job_id": {"type": "integer"},
        "model_id": {"type": "integer"},
        "model_name": {"type": "string"},
        "channel_format": {"type": ["string", "null"]},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "format": {"type": "string"},
        "approval_state": {"type": "string", "enum": list(APPROVAL_STATES)},
        "version": {"type": "integer"},
        "parent_asset_id": OPTIONAL_ID,
        "seed": OPTIONAL_ID,
        "caption": {"type": "string", "description": "The prompt, cut to 120 characters."},
        "created_at": TIME,
        "image_url": {"type": "string", "description": "GET it with the same bearer token."},
        "thumbnail_url": {"type": "string"},
    },
})

ASSET_PAGE = api.schema("AssetPage", {
    "type": "object",
    "required": ["items", "has_more", "next_cursor"],
    "properties": {
        "items": {"type": "array", "items": ASSET_SUMMARY},
        "has_more": {"type": "boolean"},
        "next_cursor": {"type": ["integer", "null"],
                        "description": "Pass as `before` for the next (older) page; null on the last page."},
    },
})

REVIEW = api.schema("Review", {
    "type": "object",
    "required": ["id", "asset_id", "reviewer_id", "reviewer", "decision", "comment", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "asset_id": {"type": "integer"},
        "reviewer_id": {"type": "integer"},
        "reviewer": {"type": "string"},
        "decision": {"type": "string", "enum": list(DECISIONS)},
        "comment": {"type": "string"},
        "created_at": TIME,
        "approval_state": {"type": "string", "enum": list(APPROVAL_STATES),
                           "description": "The asset's state after this decision (when just made)."},
    },
})

VERSION = api.schema("AssetVersion", {
    "type": "object",
    "required": ["asset_id", "version", "parent_asset_id", "approval_state", "created_at", "seed", "prompt",
                 "is_requested", "width", "height"],
    "properties": {
        "asset_id": {"type": "integer"},
        "version": {"type": "integer"},
        "parent_asset_id": OPTIONAL_ID,
        "approval_state": {"type": "string", "enum": list(APPROVAL_STATES)},
        "created_at": TIME,
        "seed": OPTIONAL_ID,
        "prompt": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "is_requested": {"type": "boolean", "description": "The asset the lineage was asked for."},
    },
})

PROVENANCE = api.schema("Provenance", {
    "type": "object",
    "required": ["campaign_id", "campaign_name", "brand", "job_id", "job_name", "template_id", "template_name",
                 "template_version", "model_id", "model_name", "model_sha256", "model_short_hash",
                 "license_identifier", "license_name", "commercial_use", "render_id", "rendered_by",
                 "started_at", "finished_at"],
    "properties": {
        "campaign_id": {"type": "integer"}, "campaign_name": {"type": "string"}, "brand": {"type": "string"},
        "job_id": {"type": "integer"}, "job_name": {"type": ["string", "null"]}, "job_kind": {"type": "string"},
        "template_id": {"type": "integer"}, "template_name": {"type": "string"},
        "template_version": {"type": "integer"}, "template_body": {"type": "string"},
        "template_negative_body": {"type": "string"},
        "variables": {"type": ["object", "null"]},
        "model_id": {"type": "integer"}, "model_name": {"type": "string"}, "model_kind": {"type": "string"},
        "model_architecture": {"type": "string"},
        "model_sha256": {"type": "string"}, "model_short_hash": {"type": "string"},
        "license_identifier": {"type": "string"}, "license_name": {"type": "string"},
        "license_url": {"type": ["string", "null"]}, "commercial_use": {"type": "string"},
        "render_id": {"type": "integer"}, "rendered_by": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]},
        "source_asset_id": OPTIONAL_ID,
    },
})

ASSET_DETAIL = api.schema("AssetDetail", {
    "type": "object",
    "required": ["id", "campaign_id", "job_id", "width", "height", "format", "channel_format", "approval_state",
                 "version", "parent_asset_id", "created_at", "kind", "sha256", "size_bytes", "params",
                 "provenance", "reviews", "versions", "image_url", "thumbnail_url"],
    "properties": {
        "id": {"type": "integer"},
        "campaign_id": {"type": "integer"},
        "job_id": {"type": "integer"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "format": {"type": "string"},
        "channel_format": {"type": ["string", "null"]},
        "approval_state": {"type": "string", "enum": list(APPROVAL_STATES)},
        "version": {"type": "integer"},
        "parent_asset_id": OPTIONAL_ID,
        "created_at": TIME,
        "kind": {"type": "string", "enum": ["txt2img", "upscale"]},
        "sha256": {"type": "string"},
        "size_bytes": {"type": "integer"},
        "params": {"type": "object", "description": "The render's full parameters."},
        "provenance": PROVENANCE,
        "reviews": {"type": "array", "items": REVIEW, "description": "Oldest first."},
        "versions": {"type": "array", "items": VERSION, "description": "The lineage, by version."},
        "image_url": {"type": "string"},
        "thumbnail_url": {"type": "string"},
        "license_chain": {"type": ["array", "null"], "items": {"type": "object"},
                          "description": "Every model of its chain under the license it was rendered under "
                                         "({model, kind, sha256, license, via, attribution, use_restrictions, ...}); "
                                         "null for assets made before chains were kept."},
        "needs_rereview": {"type": "boolean",
                           "description": "A model of its chain was suspended or changed license since; exports "
                                          "leave it out until a reviewer decides again."},
        "rereview_reason": {"type": ["string", "null"]},
    },
})

COMPARED = {
    "type": "object",
    "required": ["asset_id", "version", "approval_state", "params"],
    "properties": {"asset_id": {"type": "integer"}, "version": {"type": "integer"},
                   "parent_asset_id": OPTIONAL_ID,
                   "approval_state": {"type": "string", "enum": list(APPROVAL_STATES)},
                   "width": {"type": "integer"}, "height": {"type": "integer"},
                   "params": {"type": "object"}, "image_url": {"type": "string"}},
}
COMPARISON = api.schema("Comparison", {
    "type": "object",
    "required": ["a", "b", "rows", "differences"],
    "properties": {
        "a": COMPARED,
        "b": COMPARED,
        "rows": {"type": "array", "items": {
            "type": "object", "required": ["name", "a", "b", "differs"],
            "properties": {"name": {"type": "string"}, "differs": {"type": "boolean"}},
        }},
        "differences": {"type": "array", "items": {"type": "string"}},
    },
})

RERENDER_REQUEST = api.schema("RerenderRequest", {
    "type": "object",
    "required": ["changes"],
    "additionalProperties": False,
    "properties": {
        "changes": {
            "type": "object",
            "description": f"New values for some of: {', '.join(CHANGEABLE_PARAMS)}; the rest stay the source's.",
            "properties": {
                "prompt": {"type": "string", "maxLength": 10_000},
                "negative_prompt": {"type": "string", "maxLength": 10_000},
                "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                "steps": {"type": "integer", "minimum": MIN_STEPS, "maximum": MAX_STEPS},
                "cfg_scale": {"type": "number", "minimum": MIN_CFG_SCALE, "maximum": MAX_CFG_SCALE},
                "sampler": {"type": "string"},
            },
        },
        "submission_key": {"type": "string", "minLength": 1, "maxLength": 64,
                           "description": "Send the same key again (a retry) and get the same job back."},
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
    },
})
RERENDER_RESULT = api.schema("RerenderResult", {
    "type": "object",
    "required": ["job_id", "parent_asset_id"],
    "properties": {"job_id": {"type": "integer"}, "parent_asset_id": {"type": "integer"}},
})

ID_QUERY = {"type": "integer", "minimum": 1}
LIST_QUERY = {
    "campaign_id": ID_QUERY,
    "job_id": ID_QUERY,
    "model_id": ID_QUERY,
    "approval_state": {"type": "string", "enum": list(APPROVAL_STATES)},
    "channel_format": {"type": "string", "maxLength": 64},
    "before": {**ID_QUERY, "description": "The `next_cursor` of the page before: older assets."},
    "after": {**ID_QUERY, "description": "An asset id: the page of assets just newer than it."},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
}


def _urls(asset_id: int) -> dict[str, str]:
    return {"image_url": url_for("api.asset_image", asset_id=asset_id),
            "thumbnail_url": url_for("api.asset_thumbnail", asset_id=asset_id)}


def summary_json(item: GalleryItem) -> dict[str, Any]:
    return {
        "id": item.asset_id, "campaign_id": item.campaign_id, "job_id": item.job_id, "model_id": item.model_id,
        "model_name": item.model_name, "channel_format": item.channel_format, "width": item.width,
        "height": item.height, "format": item.format, "approval_state": item.approval_state,
        "version": item.version, "parent_asset_id": item.parent_asset_id, "seed": item.seed,
        "caption": item.caption, "created_at": item.created_at.isoformat(), **_urls(item.asset_id),
    }


def review_json(record, approval_state: str | None = None) -> dict[str, Any]:
    result = {"id": record.id, "asset_id": record.asset_id, "reviewer_id": record.reviewer_id,
              "reviewer": record.reviewer_name, "decision": record.decision, "comment": record.comment,
              "created_at": record.created_at.isoformat()}
    if approval_state is not None:
        result["approval_state"] = approval_state
    return result


def detail_json(detail: AssetDetail) -> dict[str, Any]:
    return {
        "id": detail.asset_id, "campaign_id": detail.provenance.campaign_id, "job_id": detail.provenance.job_id,
        "width": detail.width, "height": detail.height, "format": detail.format,
        "channel_format": detail.channel_format, "approval_state": detail.approval_state,
        "version": detail.version, "parent_asset_id": detail.parent_asset_id,
        "created_at": detail.created_at.isoformat(), "kind": detail.kind, "sha256": detail.sha256,
        "size_bytes": detail.size_bytes, "params": jsonable(detail.params),
        "provenance": jsonable(detail.provenance),
        "reviews": [review_json(r) for r in detail.reviews],
        "versions": [{"asset_id": v.asset_id, "version": v.version, "parent_asset_id": v.parent_asset_id,
                      "approval_state": v.approval_state, "created_at": v.created_at.isoformat(), "seed": v.seed,
                      "prompt": v.prompt, "width": v.width, "height": v.height, "is_requested": v.is_requested}
                     for v in detail.versions],
        **_urls(detail.asset_id),
        "license_chain": jsonable(detail.license_chain), "needs_rereview": detail.needs_rereview,
        "rereview_reason": detail.rereview_reason,
    }


@api.operation("GET", "/assets", summary="Assets newest first, filtered, one page at a time",
               permission="campaigns.view", response=ASSET_PAGE, query=LIST_QUERY, tags=("assets",),
               description="Keyset paging: pass `next_cursor` as `before` for the next page. Only assets of "
                           "campaigns the caller may see; a campaign filter the caller cannot see is 404.")
def list_assets():
    query = {name: value for name, value in api_query().items() if value is not None}
    with db_transaction() as db:
        _, page, _, _ = load_page(db, current_user(), query)
    return {"items": [summary_json(item) for item in page.items], "has_more": page.has_more,
            "next_cursor": page.next_cursor}


@api.operation("GET", "/assets/<int:asset_id>", summary="One asset: parameters, provenance, reviews, versions",
               permission="campaigns.view", response=ASSET_DETAIL, tags=("assets",))
def get_asset(asset_id: int):
    with db_transaction() as db:
        detail = asset_detail(db, current_user(), asset_id)
    return detail_json(detail)


def _stored(asset_id: int, thumbnail: bool, content_type: str) -> Response:
    with db_transaction() as db:
        asset = visible_asset(db, current_user(), asset_id)
        key = asset.thumbnail_key if thumbnail else asset.storage_key
    try:
        data = current_farm().storage.get(key)
    except ObjectMissing:
        raise NotFound("stored image of asset", asset_id) from None
    # Keys are content hashes: an object never changes.
    return Response(data, content_type=content_type, headers={"Cache-Control": "private, max-age=31536000, immutable"})


@api.operation("GET", "/assets/<int:asset_id>/image", summary="The asset's PNG (its parameters inside)",
               permission="campaigns.view", response={"type": "string", "format": "binary"},
               content_type="image/png", tags=("assets",))
def asset_image(asset_id: int):
    return _stored(asset_id, False, "image/png")


@api.operation("GET", "/assets/<int:asset_id>/thumbnail", summary="The asset's thumbnail (WebP, at most 256 px)",
               permission="campaigns.view", response={"type": "string", "format": "binary"},
               content_type="image/webp", tags=("assets",))
def asset_thumbnail(asset_id: int):
    return _stored(asset_id, True, "image/webp")


@api.operation("GET", "/assets/compare", summary="Two assets' parameters side by side",
               permission="campaigns.view", response=COMPARISON, query={"a": ID_QUERY, "b": ID_QUERY},
               required_query=("a", "b"), tags=("assets",))
def compare_assets():
    query = api_query()
    with db_transaction() as db:
        comparison = compare(db, current_user(), query["a"], query["b"])

    def side(x):
        return {"asset_id": x.asset_id, "version": x.version, "parent_asset_id": x.parent_asset_id,
                "approval_state": x.approval_state, "width": x.width, "height": x.height,
                "params": jsonable(x.params), "image_url": url_for("api.asset_image", asset_id=x.asset_id)}

    return {"a": side(comparison.a), "b": side(comparison.b),
            "rows": [{"name": r.name, "a": jsonable(r.a), "b": jsonable(r.b), "differs": r.differs}
                     for r in comparison.rows],
            "differences": comparison.differences}


@api.operation("POST", "/assets/<int:asset_id>/rerender", summary="Re-render with changes: a new version",
               permission="review.decide", request=RERENDER_REQUEST, response=RERENDER_RESULT, status=201,
               tags=("assets", "reviews"),
               description="Writes a job of one render whose asset becomes the next version of this one, and "
                           "queues it. The same `submission_key` again returns the same job.")
def rerender_asset(asset_id: int):
    body = api_body()
    try:
        job_id = submit_rerender(current_farm(), current_user(), asset_id, body["changes"],
                                 submission_key=body.get("submission_key"), priority=body.get("priority"))
    except InvalidInput as error:
        # The service names a parameter by itself ("steps"); in this body it is under changes.
        if error.field in CHANGEABLE_PARAMS or error.field in body["changes"]:
            raise InvalidInput(f"changes.{error.field}", error.message) from None
        raise
    return {"job_id": job_id, "parent_asset_id": asset_id}, 201
