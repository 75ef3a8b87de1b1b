"""API for auditors (audit.view: admins and auditors): the audit log's events (filtered, newest
first, keyset pages), one event, verifying the hash chain, the license reports, and the log of a
date range as CSV or JSON. Reports and exports first write pending render events to the log."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from typing import Any

from dashboard.api.blueprint import api, api_query
from dashboard.audit import download
from dashboard.auth import current_user
from dashboard.helpers import db_transaction
from farm.audit import reports
from farm.audit.browse import (DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, EventFilters, EventRecord, get_event, list_events,
                               parse_anchors, verify_log)
from farm.campaigns.access import require_visible_campaign
from farm.licenses.policy import RULES

TAGS = ("audit",)
_DATE = {"type": "string", "format": "date", "description": "YYYY-MM-DD (UTC day)."}
_RANGE = {"from": {**_DATE, "description": "First day (YYYY-MM-DD, UTC)."},
          "to": {**_DATE, "description": "Last day (YYYY-MM-DD, UTC), included."}}
_OBJECT_OR_NULL = {"type": ["object", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}

EVENT = api.schema("AuditEvent", {
    "type": "object",
    "required": ["id", "occurred_at", "actor_id", "actor_name", "action", "entity_type", "entity_id", "before",
                 "after", "prev_hash", "hash"],
    "properties": {
        "id": {"type": "integer"}, "occurred_at": _TIME, "actor_id": {"type": ["integer", "null"]},
        "actor_name": {"type": "string", "description": "The user's name, or `system`."},
        "action": {"type": "string"}, "entity_type": {"type": "string"}, "entity_id": {"type": ["string", "null"]},
        "before": _OBJECT_OR_NULL, "after": _OBJECT_OR_NULL,
        "prev_hash": {"type": "string", "description": "The hash of the event before it."},
        "hash": {"type": "string", "description": "sha256 of this event's content and prev_hash."},
    },
})
EVENT_LIST = api.schema("AuditEventList", {
    "type": "object", "required": ["events", "next_before"],
    "properties": {"events": {"type": "array", "items": EVENT},
                   "next_before": {"type": ["integer", "null"],
                                   "description": "Pass as `before` for the next (older) page; null on the last."}},
})
_PROBLEM = {"type": "object", "required": ["event_id", "problem"],
            "properties": {"event_id": {"type": "integer"}, "problem": {"type": "string"}}}
VERIFICATION = api.schema("AuditVerification", {
    "type": "object",
    "required": ["ok", "events", "head", "head_event_id", "first_bad_event", "problem_count", "problems", "anchors"],
    "properties": {
        "ok": {"type": "boolean"},
        "events": {"type": "integer"},
        "head": {"type": ["string", "null"], "description": "ID:HASH of the last event: keep it outside the farm "
                                                            "and pass it as an anchor later."},
        "head_event_id": {"type": ["integer", "null"]},
        "first_bad_event": {"anyOf": [_PROBLEM, {"type": "null"}]},
        "problem_count": {"type": "integer"},
        "problems": {"type": "array", "items": _PROBLEM, "description": "The first 50, oldest first."},
        "anchors": {"type": "array", "items": {"type": "string"}},
    },
})
_STRINGS = {"type": "array", "items": {"type": "string"}}
MODEL_USAGE = api.schema("ModelUsageReport", {
    "type": "object", "required": ["models"],
    "properties": {"models": {"type": "array", "items": {
        "type": "object",
        "required": ["model", "kind", "sha256", "short_hash", "status", "license", "rendered_under", "assets",
                     "approved_assets", "assets_needing_rereview", "campaigns", "commercial_campaigns",
                     "first_asset_at", "last_asset_at"],
        "properties": {"model": {"type": "string"}, "kind": {"type": "string"}, "sha256": {"type": "string"},
                       "short_hash": {"type": "string"}, "status": {"type": "string"},
                       "license": {"type": "string", "description": "As registered now."},
                       "rendered_under": {**_STRINGS, "description": "Licenses its assets were made under."},
                       "assets": {"type": "integer"}, "approved_assets": {"type": "integer"},
                       "assets_needing_rereview": {"type": "integer"}, "campaigns": {"type": "integer"},
                       "commercial_campaigns": {"type": "integer"},
                       "first_asset_at": _OPTIONAL_TIME, "last_asset_at": _OPTIONAL_TIME}}}},
})
LICENSE_USAGE = api.schema("LicenseUsageReport", {
    "type": "object", "required": ["licenses"],
    "properties": {"licenses": {"type": "array", "items": {
        "type": "object",
        "required": ["license", "name", "commercial_use", "models_registered", "models_rendered", "assets",
                     "approved_assets", "campaigns", "commercial_campaigns"],
        "properties": {"license": {"type": "string"}, "name": {"type": "string"},
                       "commercial_use": {"type": "string"}, "models_registered": _STRINGS,
                       "models_rendered": _STRINGS, "assets": {"type": "integer"},
                       "approved_assets": {"type": "integer"}, "campaigns": {"type": "integer"},
                       "commercial_campaigns": {"type": "integer"}}}}},
})
CAMPAIGN_REPORT = api.schema("CampaignLicenseReport", {
    "type": "object",
    "required": ["campaign", "campaign_id", "commercial", "assets", "approved_assets", "assets_needing_rereview",
                 "assets_predating_license_chains", "licenses", "refusals"],
    "properties": {
        "campaign": {"type": "string"}, "campaign_id": {"type": "integer"}, "commercial": {"type": "boolean"},
        "assets": {"type": "integer"}, "approved_assets": {"type": "integer"},
        "assets_needing_rereview": {"type": "integer"}, "assets_predating_license_chains": {"type": "integer"},
        "refusals": {"type": "integer"},
        "licenses": {"type": "array", "items": {
            "type": "object",
            "required": ["license", "models", "assets", "approved_assets", "attributions", "use_restrictions"],
            "properties": {"license": {"type": "string"}, "models": _STRINGS, "assets": {"type": "integer"},
                           "approved_assets": {"type": "integer"},
                           "attributions": {**_STRINGS, "description": "Texts the campaign's images must show."},
                           "use_restrictions": {**_STRINGS, "description": "Terms to pass on with them."}}}},
    },
})
REFUSALS = api.schema("PolicyRefusalReport", {
    "type": "object", "required": ["refusals"],
    "properties": {"refusals": {"type": "array", "items": {
        "type": "object",
        "required": ["event_id", "occurred_at", "actor", "stage", "campaign", "campaign_id", "commercial", "model",
                     "license", "rule", "message", "job_id", "render_id"],
        "properties": {"event_id": {"type": "integer"}, "occurred_at": _TIME, "actor": {"type": "string"},
                       "stage": {"type": "string"}, "campaign": {"type": "string"},
                       "campaign_id": {"type": ["integer", "null"]}, "commercial": {"type": "boolean"},
                       "model": {"type": "string"}, "license": {"type": "string"},
                       "rule": {"type": "string", "enum": list(RULES)}, "message": {"type": "string"},
                       "job_id": {"type": ["integer", "null"]}, "render_id": {"type": ["integer", "null"]}}}}},
})
EXPORT = api.schema("AuditExport", {
    "type": "object", "required": ["from", "to", "exported_at", "events", "head"],
    "properties": {"from": {"type": "string"}, "to": {"type": "string"}, "exported_at": _TIME,
                   "events": {"type": "array", "items": EVENT},
                   "head": {"type": ["object", "null"], "description": "The chain's head when exported: its "
                                                                      "`anchor` is what verify takes later."}},
})


def jsonable(value: Any) -> Any:
    """Dataclasses, dates and times as JSON values (times in ISO 8601)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def event_json(event: EventRecord) -> dict[str, Any]:
    return jsonable(event)


def _range() -> tuple[str | None, str | None]:
    query = api_query()
    EventFilters.from_values({"from": query.get("from"), "to": query.get("to")})  # a bad range names its field
    return query.get("from"), query.get("to")


@api.operation("GET", "/audit/events", summary="Audit events, newest first, filtered, one page at a time",
               permission="audit.view", response=EVENT_LIST, tags=TAGS,
               query={**_RANGE,
                      "action": {"type": "string", "description": "An action, or a prefix ending in .* (model.*)."},
                      "entity_type": {"type": "string"}, "entity_id": {"type": "string"},
                      "actor": {"type": "string", "description": "The actor's name (a user's, or system)."},
                      "before": {"type": "integer", "minimum": 1,
                                 "description": "An event id: the events older than it (a page's next_before)."},
                      "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                                "default": DEFAULT_PAGE_SIZE}})
def list_audit_events():
    query = api_query()
    filters = EventFilters.from_values(query)
    with db_transaction() as db:
        page = list_events(db, filters, before=query.get("before"), limit=query["limit"])
    return {"events": [event_json(event) for event in page.events], "next_before": page.next_before}


@api.operation("GET", "/audit/events/<int:event_id>", summary="One audit event", permission="audit.view",
               response=EVENT, tags=TAGS)
def get_audit_event(event_id: int):
    with db_transaction() as db:
        return event_json(get_event(db, event_id))


@api.operation("GET", "/audit/verify", summary="Verify the audit log's hash chain", permission="audit.view",
               response=VERIFICATION, tags=TAGS,
               query={"anchor": {"type": "string", "description": "Heads kept earlier (ID:HASH), separated by "
                                                                  "spaces or commas: each must still be there."}},
               description="Walks the whole log. ok=false names the first bad event: edited (its content does "
                           "not match its hash), deleted, moved or inserted (it does not follow the event before "
                           "it), or an anchor's event changed or gone.")
def verify_audit_log():
    anchors = parse_anchors(api_query().get("anchor"))
    with db_transaction() as db:
        return verify_log(db, anchors).to_dict()


@api.operation("GET", "/audit/reports/models", summary="Usage per model", permission="audit.view",
               response=MODEL_USAGE, tags=TAGS, query=_RANGE)
def model_usage_report():
    since, until = _range()
    with db_transaction() as db:
        return {"models": jsonable(reports.model_usage(db, since, until))}


@api.operation("GET", "/audit/reports/licenses", summary="Usage per license", permission="audit.view",
               response=LICENSE_USAGE, tags=TAGS, query=_RANGE)
def license_usage_report():
    since, until = _range()
    with db_transaction() as db:
        return {"licenses": jsonable(reports.license_usage(db, since, until))}


@api.operation("GET", "/audit/reports/campaigns/<int:campaign_id>", summary="A campaign's license report",
               permission="audit.view", response=CAMPAIGN_REPORT, tags=TAGS, query=_RANGE)
def campaign_license_report(campaign_id: int):
    since, until = _range()
    with db_transaction() as db:
        require_visible_campaign(db, current_user(), campaign_id)  # 404 for an unknown campaign
        return jsonable(reports.campaign_license_report(db, campaign_id, since, until))


@api.operation("GET", "/audit/reports/refusals", summary="The license policy's refusals, oldest first",
               permission="audit.view", response=REFUSALS, tags=TAGS,
               query={**_RANGE, "rule": {"type": "string", "enum": list(RULES)},
                      "campaign_id": {"type": "integer", "minimum": 1}})
def refusal_report():
    since, until = _range()
    query = api_query()
    with db_transaction() as db:
        rows = reports.list_refusals(db, since, until, campaign_id=query.get("campaign_id"), rule=query.get("rule"))
    return {"refusals": jsonable(rows)}


def _export(fmt: str):
    since, until = _range()
    with db_transaction() as db:
        body = reports.export_events(db, since, until, fmt)
    return download(body, fmt, f"audit-{since}-to-{until}")


_EXPORT_NOTE = "Every event of the range, oldest first, with its hashes; both days are required."


@api.operation("GET", "/audit/export.csv", summary="The audit log of a date range as CSV", permission="audit.view",
               response={"type": "string", "format": "binary"}, content_type="text/csv", tags=TAGS,
               query=_RANGE, required_query=("from", "to"),
               description=_EXPORT_NOTE + " `before` and `after` are JSON text.")
def export_audit_csv():
    return _export("csv")


@api.operation("GET", "/audit/export.json", summary="The audit log of a date range as JSON", permission="audit.view",
               response=EXPORT, tags=TAGS, query=_RANGE, required_query=("from", "to"),
               description=_EXPORT_NOTE + " `head` holds the chain's head to verify against later.")
def export_audit_json():
    return _export("json")

