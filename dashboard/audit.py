"""Auditor pages (admins and auditors): the audit log with filters and keyset paging, one event,
verifying the hash chain, the license reports (usage per model and per license, a campaign's
license report, the policy's refusals) and downloading the log for a date range as CSV or JSON.

Everything here reads; nothing changes (so every route is a GET and needs no CSRF token). The
reports and the export first write pending render events to the log (farm.audit.reports), so
they see it complete. A bad filter re-renders the page with the message at its field (HTTP 400).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, render_template, request, url_for

from dashboard.auth import current_user, requires
from dashboard.helpers import db_transaction
from farm.audit import reports
from farm.audit.browse import (ENTITY_TYPES, EventFilters, get_event, known_actions, list_events, parse_anchors,
                               verify_log)
from farm.campaigns.service import list_campaigns
from farm.errors import InvalidInput
from farm.licenses.policy import RULES

blueprint = Blueprint("audit", __name__, url_prefix="/audit")

REPORTS = (("models", "Per model"), ("licenses", "Per license"), ("campaign", "Per campaign"),
           ("refusals", "Refusals"))
EXPORT_MIMETYPES = {"csv": "text/csv", "json": "application/json"}
FILTER_FIELDS = ("from", "to", "action", "entity_type", "entity_id", "actor")


def _errors(error: InvalidInput | None) -> dict[str, str]:
    return {error.field: error.message} if error else {}


# -- the log ------------------------------------------------------------------------------------------

def _render_index(*, export_form: dict[str, str] | None = None, export_error: InvalidInput | None = None,
                  status: int = 200):
    values = {name: request.args.get(name, "") for name in FILTER_FIELDS}
    error = None
    with db_transaction() as db:
        actions = known_actions(db)
        try:
            filters = EventFilters.from_values(values)
            page = list_events(db, filters, before=request.args.get("before") or None)
        except InvalidInput as bad:
            error, page, filters = bad, None, None
    if error is not None and status == 200:
        status = 400
    today = datetime.now(timezone.utc).date().isoformat()
    return render_template(
        "audit/index.html", page=page, values=values, filters=filters, error=error, errors=_errors(error),
        actions=actions, entity_types=ENTITY_TYPES, newest_url=_page_url(filters, None) if filters else None,
        next_url=_page_url(filters, page.next_before) if page and page.next_before else None,
        export_form=export_form or {"from": today[:8] + "01", "to": today, "format": "csv"},
        export_error=export_error, export_errors=_errors(export_error), reports=REPORTS,
    ), status


def _page_url(filters: EventFilters, before: int | None) -> str:
    args: dict[str, Any] = dict(filters.active())
    if before is not None:
        args["before"] = before
    return url_for("audit.index", **args)


@blueprint.get("/")
@requires("audit.view")
def index():
    return _render_index()


@blueprint.get("/events/<int:event_id>")
@requires("audit.view")
def event(event_id: int):
    with db_transaction() as db:
        record = get_event(db, event_id)  # NotFound: 404
    return render_template("audit/event.html", event=record)


@blueprint.get("/verify")
@requires("audit.view")
def verify():
    anchor_text = request.args.get("anchor", "")
    error = None
    result = None
    try:
        anchors = parse_anchors(anchor_text)
        with db_transaction() as db:
            result = verify_log(db, anchors)
    except InvalidInput as bad:
        error = bad
    return render_template("audit/verify.html", result=result, anchor_text=anchor_text, error=error,
                           errors=_errors(error), reports=REPORTS), 400 if error else 200


@blueprint.get("/export")
@requires("audit.view")
def export():
    form = {name: request.args.get(name, "") for name in ("from", "to", "format")}
    try:
        for field in ("from", "to"):
            if not form[field].strip():
                raise InvalidInput(field, "is required: the export covers a date range (YYYY-MM-DD, UTC)")
        if form["format"] not in EXPORT_MIMETYPES:
            raise InvalidInput("format", f"must be one of {', '.join(EXPORT_MIMETYPES)}")
        # Checked with the log's own field names before anything is read.
        EventFilters.from_values({"from": form["from"], "to": form["to"]})
        with db_transaction() as db:
            body = reports.export_events(db, form["from"].strip(), form["to"].strip(), form["format"])
    except InvalidInput as error:
        return _render_index(export_form=form, export_error=error, status=400)
    return download(body, form["format"], f"audit-{form['from'].strip()}-to-{form['to'].strip()}")


def download(body: str, fmt: str, stem: str) -> Response:
    response = Response(body, mimetype=EXPORT_MIMETYPES[fmt])
    if fmt == "csv":
        response.charset = "utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{stem}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    return response


# -- reports ------------------------------------------------------------------------------------------

def _range() -> tuple[dict[str, str], InvalidInput | None]:
    values = {"from": request.args.get("from", "").strip(), "to": request.args.get("to", "").strip()}
    try:
        EventFilters.from_values(values)
    except InvalidInput as error:
        return values, error
    return values, None


def _render_report(kind: str, template: str, rows: Any, values: dict[str, str], error: InvalidInput | None,
                   **context: Any):
    return render_template(f"audit/{template}", kind=kind, rows=rows, values=values, error=error,
                           errors=_errors(error), reports=REPORTS, **context), 400 if error else 200


@blueprint.get("/reports/models")
@requires("audit.view")
def model_report():
    values, error = _range()
    rows = []
    if error is None:
        with db_transaction() as db:
            rows = reports.model_usage(db, values["from"], values["to"])
    return _render_report("models", "report_models.html", rows, values, error)


@blueprint.get("/reports/licenses")
@requires("audit.view")
def license_report():
    values, error = _range()
    rows = []
    if error is None:
        with db_transaction() as db:
            rows = reports.license_usage(db, values["from"], values["to"])
    return _render_report("licenses", "report_licenses.html", rows, values, error)


@blueprint.get("/reports/campaign")
@requires("audit.view")
def campaign_report():
    values, error = _range()
    values["campaign_id"] = request.args.get("campaign_id", "").strip()
    report = None
    with db_transaction() as db:
        campaigns = list_campaigns(db, current_user(), include_archived=True)
        if error is None and values["campaign_id"]:
            try:
                if not values["campaign_id"].isdigit():
                    raise InvalidInput("campaign_id", f"'{values['campaign_id']}' is not a campaign id")
                report = reports.campaign_license_report(db, int(values["campaign_id"]), values["from"],
                                                         values["to"])
            except InvalidInput as bad:
                error = InvalidInput("campaign_id", bad.message) if bad.field == "campaign" else bad
    return _render_report("campaign", "report_campaign.html", report, values, error, campaigns=campaigns)


@blueprint.get("/reports/refusals")
@requires("audit.view")
def refusal_report():
    values, error = _range()
    values["rule"] = request.args.get("rule", "").strip()
    rows = []
    if error is None and values["rule"] and values["rule"] not in RULES:
        error = InvalidInput("rule", f"must be one of {', '.join(RULES)}")
    if error is None:
        with db_transaction() as db:
            rows = reports.list_refusals(db, values["from"], values["to"], rule=values["rule"] or None)
    return _render_report("refusals", "report_refusals.html", list(reversed(rows)), values, error, rules=RULES)
