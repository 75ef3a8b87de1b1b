"""API: a campaign's prompt templates, their versions (editing adds one), and the preview that
expands a saved version or unsaved texts for variable rows before anything is submitted."""

from __future__ import annotations

from dashboard.api.blueprint import api, api_body
from dashboard.auth import current_user
from dashboard.helpers import db_transaction
from farm.templates import service
from farm.templates.service import DEFAULT_PARAM_NAMES

TAGS = ("templates",)

DEFAULT_PARAMS = {
    "type": "object", "additionalProperties": False,
    "description": "Defaults a batch may override: " + ", ".join(DEFAULT_PARAM_NAMES) + ".",
    "properties": {
        "model": {"type": "string"}, "sampler": {"type": "string"}, "steps": {"type": "integer"},
        "cfg_scale": {"type": "number"}, "width": {"type": "integer"}, "height": {"type": "integer"},
    },
}
VARIABLES = {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 50,
             "description": "The columns every variable row gives; null or absent: the names the texts use."}
TEMPLATE_VERSION = api.schema("TemplateVersion", {
    "type": "object",
    "required": ["id", "template_id", "template_name", "campaign_id", "version", "body", "negative_body",
                 "variables", "default_params", "created_by_id", "created_at"],
    "properties": {
        "id": {"type": "integer", "description": "The version's id: what a batch's template_version_id names."},
        "template_id": {"type": "integer"},
        "template_name": {"type": "string"},
        "campaign_id": {"type": ["integer", "null"]},
        "version": {"type": "integer"},
        "body": {"type": "string"},
        "negative_body": {"type": "string"},
        "variables": {"type": "array", "items": {"type": "string"}},
        "default_params": {"type": "object"},
        "created_by_id": {"type": ["integer", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
    },
})
TEMPLATE_SUMMARY = api.schema("TemplateSummary", {
    "type": "object",
    "required": ["id", "campaign_id", "name", "latest_version", "latest_version_id", "created_at"],
    "properties": {
        "id": {"type": "integer"}, "campaign_id": {"type": ["integer", "null"]}, "name": {"type": "string"},
        "latest_version": {"type": "integer"}, "latest_version_id": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
    },
})
TEMPLATE_LIST = api.schema("TemplateList", {
    "type": "object", "required": ["templates"],
    "properties": {"templates": {"type": "array", "items": TEMPLATE_SUMMARY}},
})
TEMPLATE = api.schema("Template", {
    "type": "object", "required": ["id", "campaign_id", "name", "latest_version", "versions"],
    "properties": {
        "id": {"type": "integer"}, "campaign_id": {"type": ["integer", "null"]}, "name": {"type": "string"},
        "latest_version": {"type": "integer"},
        "versions": {"type": "array", "items": TEMPLATE_VERSION, "description": "Oldest first."},
    },
})
VERSION_FIELDS = {
    "body": {"type": "string", "minLength": 1, "maxLength": 10_000,
             "description": "Sandboxed Jinja text, e.g. `{{ product }} on {{ background }}`."},
    "negative_body": {"type": "string", "maxLength": 10_000},
    "variables": VARIABLES,
    "default_params": DEFAULT_PARAMS,
}
TEMPLATE_CREATE = api.schema("TemplateCreate", {
    "type": "object", "required": ["name", "body"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}, **VERSION_FIELDS},
})
VERSION_CREATE = api.schema("TemplateVersionCreate", {
    "type": "object", "required": ["body"], "additionalProperties": False, "properties": VERSION_FIELDS,
})
VARIABLE_ROW = {"type": "object", "additionalProperties": {"type": ["string", "number"]},
                "description": "Variable name -> value."}
PREVIEW_REQUEST = api.schema("TemplatePreviewRequest", {
    "type": "object", "required": ["rows"], "additionalProperties": False,
    "description": "Give template_version_id (a saved version of this campaign) or body (unsaved texts).",
    "properties": {
        "rows": {"type": "array", "items": VARIABLE_ROW, "maxItems": 1000},
        "template_version_id": {"type": "integer"},
        "body": {"type": "string", "maxLength": 10_000},
        "negative_body": {"type": "string", "maxLength": 10_000},
        "variables": VARIABLES,
    },
})
PREVIEW = api.schema("TemplatePreview", {
    "type": "object", "required": ["ok", "rows"],
    "properties": {
        "ok": {"type": "boolean", "description": "Every row expands."},
        "rows": {"type": "array", "items": {
            "type": "object", "required": ["index", "prompt", "negative_prompt", "errors"],
            "properties": {
                "index": {"type": "integer"},
                "prompt": {"type": ["string", "null"], "description": "With the campaign's style suffix."},
                "negative_prompt": {"type": ["string", "null"], "description": "With the campaign's style negative."},
                "errors": {"type": "array", "items": {
                    "type": "object", "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                }},
            },
        }},
    },
})


@api.operation("GET", "/campaigns/<int:campaign_id>/templates", summary="A campaign's templates, by name",
               permission="campaigns.view", response=TEMPLATE_LIST, tags=TAGS)
def list_templates(campaign_id: int):
    with db_transaction() as db:
        return {"templates": [t.to_dict() for t in service.list_templates(db, current_user(), campaign_id)]}


@api.operation("POST", "/campaigns/<int:campaign_id>/templates", summary="Create a template and its version 1",
               permission="templates.edit", request=TEMPLATE_CREATE, response=TEMPLATE_VERSION, status=201,
               tags=TAGS, description="Syntax errors and variables the texts use but do not declare are refused "
                                      "(field `body` or `negative_body`, with the line).")
def create_template(campaign_id: int):
    with db_transaction() as db:
        version = service.create_campaign_template(db, current_user(), campaign_id, **api_body())
    return version.to_dict(), 201


@api.operation("GET", "/templates/<int:template_id>", summary="A template with every version",
               permission="campaigns.view", response=TEMPLATE, tags=TAGS)
def get_template(template_id: int):
    with db_transaction() as db:
        versions = service.list_template_versions(db, current_user(), template_id)
    latest = versions[-1]
    return {"id": template_id, "campaign_id": latest.campaign_id, "name": latest.template_name,
            "latest_version": latest.version, "versions": [v.to_dict() for v in versions]}


@api.operation("POST", "/templates/<int:template_id>/versions", summary="Save an edit as the next version",
               permission="templates.edit", request=VERSION_CREATE, response=TEMPLATE_VERSION, status=201, tags=TAGS,
               description="Earlier versions, and the jobs that used them, are unchanged.")
def create_template_version(template_id: int):
    with db_transaction() as db:
        version = service.edit_template(db, current_user(), template_id, **api_body())
    return version.to_dict(), 201


@api.operation("POST", "/campaigns/<int:campaign_id>/templates/preview",
               summary="Expand a template for variable rows, with the campaign's brand style; writes nothing",
               permission="templates.edit", request=PREVIEW_REQUEST, response=PREVIEW, tags=TAGS,
               description="Problems with the texts are a 400 naming `body`, `negative_body` or `variables[i]`; "
                           "problems with a row are reported on that row (`rows[2].background`).")
def preview_template(campaign_id: int):
    body = api_body()
    with db_transaction() as db:
        result = service.preview(db, current_user(), campaign_id, rows=body["rows"],
                         template_version_id=body.get("template_version_id"), body=body.get("body"),
                         negative_body=body.get("negative_body") or "", variables=body.get("variables"))
    return result.to_dict()
