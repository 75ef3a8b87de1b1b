"""API: the license registry. Anyone with a token reads licenses; admins add them and change
their terms (licenses.manage), each change audited by farm.licenses.admin. Identifiers never
change and licenses are never deleted: models, assets' license chains and the audit log name
them, so a license stays for as long as that history does."""

from __future__ import annotations

from typing import Any

from dashboard.api.blueprint import api, api_body
from dashboard.auth import current_user
from dashboard.helpers import db_transaction
from dashboard.licenses import flagged_by_last_update, known_license
from farm.db.models import COMMERCIAL_USE
from farm.licenses import admin
from farm.licenses.admin import LicenseInfo

TAGS = ("licenses",)
_TIME = {"type": "string", "format": "date-time"}
_TERMS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "url": {"type": ["string", "null"], "maxLength": 500, "description": "Where the license text is (http or https)."},
    "text_sha256": {"type": ["string", "null"], "description": "sha256 of the license text, 64 hex digits."},
    "commercial_use": {"type": "string", "enum": list(COMMERCIAL_USE)},
    "revenue_cap_usd": {"type": ["integer", "null"],
                        "description": "revenue_capped only: commercial use is free under this annual revenue."},
    "attribution_required": {"type": "boolean"},
    "attribution_text": {"type": ["string", "null"], "maxLength": 2000,
                         "description": "What images made with it must show; required when attribution is."},
    "use_restrictions": {"type": "array", "items": {"type": "string"}, "maxItems": 50,
                         "description": "Terms passed on to whoever receives the images (exports list them)."},
    "derivatives_inherit": {"type": "boolean",
                            "description": "LoRAs, fine-tunes and merges of a model under it carry its terms."},
}
LICENSE = api.schema("License", {
    "type": "object",
    "required": ["identifier", *_TERMS, "models", "created_at", "updated_at"],
    "properties": {
        "identifier": {"type": "string", "description": "SPDX short identifier, or LicenseRef-..."},
        **_TERMS,
        "models": {"type": "integer", "description": "Registered models under it."},
        "created_at": _TIME,
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    },
})
LICENSE_LIST = api.schema("LicenseList", {
    "type": "object", "required": ["licenses"], "properties": {"licenses": {"type": "array", "items": LICENSE}},
})
LICENSE_CREATE = api.schema("LicenseCreate", {
    "type": "object", "required": ["identifier", "name", "commercial_use"], "additionalProperties": False,
    "properties": {"identifier": {"type": "string", "minLength": 1, "maxLength": 100}, **_TERMS},
})
LICENSE_CHANGES = api.schema("LicenseChanges", {
    "type": "object", "additionalProperties": False,
    "properties": {**_TERMS, "reason": {"type": ["string", "null"], "maxLength": 2000,
                                        "description": "Why; kept in the audit log and the flagged assets' note."}},
    "description": "Only the fields given change (the identifier never does).",
})
LICENSE_UPDATE = api.schema("LicenseUpdate", {
    "type": "object", "required": ["license", "changed", "models_rechecked", "flagged_assets"],
    "properties": {
        "license": LICENSE,
        "changed": {"type": "boolean", "description": "false: every value given was the current one."},
        "models_rechecked": {"type": "integer",
                             "description": "Models under it whose renders workers re-check (terms the policy "
                                            "reads changed); 0 otherwise."},
        "flagged_assets": {"type": "integer", "description": "Assets those models made, flagged for re-review."},
    },
})


def license_json(info: LicenseInfo) -> dict[str, Any]:
    data = info.to_dict()
    data["created_at"] = info.created_at.isoformat()
    data["updated_at"] = info.updated_at.isoformat() if info.updated_at else None
    return data


@api.operation("GET", "/licenses", summary="Every license, by identifier", permission="campaigns.view",
               response=LICENSE_LIST, tags=TAGS)
def list_licenses():
    with db_transaction() as db:
        return {"licenses": [license_json(info) for info in admin.list_licenses(db)]}


@api.operation("POST", "/licenses", summary="Add a license", permission="licenses.manage", request=LICENSE_CREATE,
               response=LICENSE, status=201, tags=TAGS, description="Audited as license.created.")
def create_license():
    with db_transaction() as db:
        return license_json(admin.create_license(db, current_user(), api_body())), 201


@api.operation("GET", "/licenses/<identifier>", summary="One license's terms", permission="campaigns.view",
               response=LICENSE, tags=TAGS)
def get_license(identifier: str):
    with db_transaction() as db:
        return license_json(known_license(db, identifier))


@api.operation("PATCH", "/licenses/<identifier>", summary="Change a license's terms", permission="licenses.manage",
               request=LICENSE_CHANGES, response=LICENSE_UPDATE, tags=TAGS,
               description="Audited as license.updated with before and after. Changing a term the policy reads "
                           "raises the policy version of every model under it (workers re-check queued renders) "
                           "and flags the assets they made for re-review.")
def update_license(identifier: str):
    changes = dict(api_body())
    reason = changes.pop("reason", None)
    with db_transaction() as db:
        before = known_license(db, identifier)
        after = admin.update_license(db, current_user(), identifier, changes, reason=(reason or "").strip() or None)
        effect = flagged_by_last_update(db, before, after) or {"models": 0, "flagged_assets": 0}
    return {"license": license_json(after), "changed": after.updated_at != before.updated_at,
            "models_rechecked": effect["models"], "flagged_assets": effect["flagged_assets"]}
