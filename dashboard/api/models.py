"""API: the model registry. Anyone with a token reads models; admins register them (as `farm
models add`: a path inside the model folders, hashed in full), suspend and unsuspend them, and put
them under another license (models.manage). A change answers what it did: renders held, released
and queued again, still held, assets flagged for re-review."""

from __future__ import annotations

from typing import Any

from dashboard.api.blueprint import api, api_body, api_query
from dashboard.auth import current_user
from dashboard.helpers import current_farm, db_transaction
from farm.db.models import ARCHITECTURES, MODEL_KINDS, MODEL_STATUSES
from farm.errors import InvalidInput
from farm.models import admin
from farm.models.admin import ModelChange, ModelInfo
from farm.models.lookup import form_path, model_name_by_id

TAGS = ("models",)
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
_MODEL_PROPERTIES = {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "kind": {"type": "string", "enum": list(MODEL_KINDS)},
    "architecture": {"type": "string", "enum": list(ARCHITECTURES)},
    "uri": {"type": "string", "description": "Where its files are on the farm's machines."},
    "sha256": {"type": "string", "description": "Of the file, or of a diffusers folder's file manifest."},
    "short_hash": {"type": "string", "description": "The first 10 hex digits, as AUTOMATIC1111 and Civitai show it."},
    "license": {"type": "string"},
    "license_name": {"type": "string"},
    "commercial_use": {"type": "string"},
    "base_model": {"type": ["string", "null"]},
    "source_url": {"type": ["string", "null"]},
    "status": {"type": "string", "enum": list(MODEL_STATUSES)},
    "status_reason": {"type": ["string", "null"]},
    "added_by": {"type": ["string", "null"]},
    "created_at": {"type": "string", "format": "date-time"},
    "updated_at": _OPTIONAL_TIME,
    "policy_version": {"type": "integer"},
}
MODEL = api.schema("Model", {"type": "object", "required": list(_MODEL_PROPERTIES), "properties": _MODEL_PROPERTIES})
MODEL_DETAIL = api.schema("ModelDetail", {
    "type": "object",
    "required": [*_MODEL_PROPERTIES, "derivatives", "queued_renders", "held_renders", "assets",
                 "assets_needing_rereview"],
    "properties": {
        **_MODEL_PROPERTIES,
        "derivatives": {"type": "array", "items": {"type": "string"},
                        "description": "Models registered with this one as their base."},
        "queued_renders": {"type": "integer"},
        "held_renders": {"type": "integer"},
        "assets": {"type": "integer", "description": "Assets it made as checkpoint or upscaler."},
        "assets_needing_rereview": {"type": "integer"},
    },
})
MODEL_LIST = api.schema("ModelList", {
    "type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": MODEL}},
})
MODEL_CREATE = api.schema("ModelCreate", {
    "type": "object", "required": ["path", "name", "kind", "license"], "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "minLength": 1, "maxLength": 4096,
                 "description": "A .safetensors file or diffusers folder inside a model folder; relative paths are "
                                "under {home}/models. Pickle-based weights (.ckpt, .pt, .bin) are refused."},
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "kind": {"type": "string", "enum": list(MODEL_KINDS)},
        "license": {"type": "string", "minLength": 1, "description": "A license identifier (GET /licenses)."},
        "base": {"type": ["string", "null"], "description": "The checkpoint it derives from; required for a LoRA."},
        "source_url": {"type": ["string", "null"], "maxLength": 1000},
        "architecture": {"type": ["string", "null"], "enum": [*ARCHITECTURES, None],
                         "description": "Detected for a diffusers checkpoint; a LoRA takes its base's."},
    },
})
MODEL_CHANGE = api.schema("ModelChange", {
    "type": "object",
    "required": ["model", "held_renders", "released_renders", "released_render_ids", "still_held_renders",
                 "flagged_assets"],
    "properties": {
        "model": MODEL,
        "held_renders": {"type": "integer", "description": "Queued renders the policy now refuses, held with the reason."},
        "released_renders": {"type": "integer"},
        "released_render_ids": {"type": "array", "items": {"type": "integer"},
                                "description": "Held renders the policy now allows, queued and routed again."},
        "still_held_renders": {"type": "integer"},
        "flagged_assets": {"type": "integer", "description": "Assets it helped make, flagged for re-review."},
    },
})
SUSPENSION = api.schema("ModelSuspension", {
    "type": "object", "required": ["reason"], "additionalProperties": False,
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 2000,
                              "description": "Shown on held renders and kept in the audit log."}},
})
LICENSE_CHANGE = api.schema("ModelLicenseChange", {
    "type": "object", "required": ["license"], "additionalProperties": False,
    "properties": {"license": {"type": "string", "minLength": 1},
                   "reason": {"type": ["string", "null"], "maxLength": 2000}},
})


def _time(value) -> str | None:
    return value.isoformat() if value is not None else None


def model_json(info: ModelInfo) -> dict[str, Any]:
    data = info.to_dict()
    data["created_at"], data["updated_at"] = _time(info.created_at), _time(info.updated_at)
    return data


def change_json(change: ModelChange) -> dict[str, Any]:
    return {"model": model_json(change.model), "held_renders": change.held_renders,
            "released_renders": len(change.released_render_ids),
            "released_render_ids": list(change.released_render_ids),
            "still_held_renders": change.still_held_renders, "flagged_assets": change.flagged_assets}


def _name(model_id: int) -> str:
    with db_transaction() as db:
        return model_name_by_id(db, model_id)


@api.operation("GET", "/models", summary="Registered models, by kind and name", permission="campaigns.view",
               response=MODEL_LIST, tags=TAGS,
               query={"kind": {"type": "string", "enum": list(MODEL_KINDS)},
                      "status": {"type": "string", "enum": list(MODEL_STATUSES)},
                      "license": {"type": "string", "description": "A license identifier."}})
def list_models():
    query = api_query()
    with db_transaction() as db:
        models = admin.list_models(db, kind=query.get("kind"), status=query.get("status"),
                                   license_identifier=query.get("license"))
    return {"models": [model_json(model) for model in models]}


@api.operation("GET", "/models/<int:model_id>", summary="One model: hash, license, who added it, its renders and assets",
               permission="campaigns.view", response=MODEL_DETAIL, tags=TAGS)
def get_model(model_id: int):
    with db_transaction() as db:
        detail = admin.show_model(db, model_name_by_id(db, model_id))
    return {**model_json(detail.model), "derivatives": detail.derivatives, "queued_renders": detail.queued_renders,
            "held_renders": detail.held_renders, "assets": detail.assets,
            "assets_needing_rereview": detail.assets_needing_rereview}


@api.operation("POST", "/models", summary="Register a model from the model folders", permission="models.manage",
               request=MODEL_CREATE, response=MODEL, status=201, tags=TAGS,
               description="Hashes the files in full (sha256) and records who added it. Refused, naming the "
                           "field: a path outside the model folders (after resolving .. and symlinks), pickle-based "
                           "weights, an unknown license or base, a name or files registered already. Audited as "
                           "model.registered.")
def create_model():
    body, farm = api_body(), current_farm()
    try:
        info = admin.add_model_now(farm, current_user(), path=form_path(farm.settings, body["path"]), name=body["name"],
                                   kind=body["kind"], license_identifier=body["license"], base=body.get("base"),
                                   source_url=body.get("source_url"), architecture=body.get("architecture"))
    except InvalidInput as error:
        if error.field == "source":  # the registry's name for it (farm models add --source)
            raise InvalidInput("source_url", error.message) from None
        raise
    return model_json(info), 201


@api.operation("POST", "/models/<int:model_id>/suspend", summary="Suspend a model: hold its queued renders",
               permission="models.manage", request=SUSPENSION, response=MODEL_CHANGE, tags=TAGS,
               description="No new renders with it (the policy refuses them, rule model_suspended); queued renders "
                           "whose chain uses it are held with the reason; its assets are flagged for re-review. "
                           "Audited as model.suspended. 400 naming `model` when it is suspended already.")
def suspend_model(model_id: int):
    return change_json(admin.suspend_model_now(current_farm(), current_user(), _name(model_id), api_body()["reason"]))


@api.operation("POST", "/models/<int:model_id>/unsuspend", summary="Let a suspended model render again",
               permission="models.manage", response=MODEL_CHANGE, tags=TAGS,
               description="Held renders the policy now allows are queued again. Audited as model.unsuspended. "
                           "400 naming `model` when it is not suspended.")
def unsuspend_model(model_id: int):
    return change_json(admin.unsuspend_model_now(current_farm(), current_user(), _name(model_id)))


@api.operation("POST", "/models/<int:model_id>/license", summary="Put a model under another license",
               permission="models.manage", request=LICENSE_CHANGE, response=MODEL_CHANGE, tags=TAGS,
               description="Unfinished renders using it are re-checked under the new terms (refused queued ones "
                           "held, allowed held ones released); its assets are flagged for re-review. Audited as "
                           "model.license_changed.")
def set_model_license(model_id: int):
    body = api_body()
    return change_json(admin.set_model_license_now(current_farm(), current_user(), _name(model_id), body["license"],
                                                   (body.get("reason") or "").strip() or None))
