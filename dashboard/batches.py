"""The "New batch" page of a campaign: template version x variable rows x seeds x channel formats.

Rows are typed into a table (columns = the version's declared variables) or uploaded as a CSV
file (farm.templates.csv_rows; the file's rows are carried in the form afterwards, so a re-render
does not ask for the file again). "Check" plans the batch (farm.jobs.batch.plan_batch): the render
count and the GPU time estimate, saying whether it comes from this farm's history or a default.
"Submit batch" submits it with the form's submission key (farm.jobs.batch.submit_batch), so a
double click or a browser resubmission returns the job the first submission made instead of a
second job, then goes to the job's page. Every problem re-renders the form with the values typed
and the message at its field (HTTP 400); nothing is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from dashboard.auth import current_user, requires
from dashboard.campaigns import job_url
from dashboard.helpers import current_farm, db_transaction
from dashboard.templates_pages import form_rows
from farm.campaigns.formats import load_channel_formats
from farm.campaigns.overview import VersionChoice, active_checkpoints, template_version_choices
from farm.campaigns.service import get_campaign_info
from farm.errors import InvalidInput
from farm.jobs.batch import (
    BatchPlan, BatchRequest, plan_batch, rows_from_csv, rows_from_table, submit_batch,
)
from farm.queue.routing import MAX_PRIORITY
from farm.render.samplers import SAMPLER_NAMES
from farm.templates.csv_rows import VariableRows

blueprint = Blueprint("batches", __name__)

OVERRIDES = ("model", "sampler", "steps", "cfg_scale", "width", "height")
INT_FIELDS = ("steps", "width", "height")
DEFAULT_PRIORITY = 5
CSV_SAMPLE_ROWS = 10  # rows of an uploaded file shown on the page
MAX_TABLE_ROWS_FROM_CSV = 200  # "Type rows instead" moves at most this many file rows into the table
_ROW_ERROR = re.compile(r"rows\[(\d+)\](.*)")


@blueprint.app_template_filter("duration")
def duration(seconds: float) -> str:
    """0.04 -> "under 0.1 s", 12.3 -> "12.3 s", 252 -> "4 min 12 s", 7500 -> "2 h 05 min"."""
    if seconds < 0.1:
        return "under 0.1 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class BatchForm:
    """The form's values as typed, for re-rendering and for building the BatchRequest."""

    template_version_id: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)
    # Rows from an uploaded CSV file: {"filename", "columns", "rows": [[...]], "lines": [...]}.
    csv: dict[str, Any] | None = None
    seeds: str = ""
    seed_count: str = "1"
    formats: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    priority: str = str(DEFAULT_PRIORITY)
    name: str = ""

    @classmethod
    def from_request(cls, columns: list[str]) -> tuple["BatchForm", InvalidInput | None]:
        """The posted form, and the first problem reading it (its rows), if any."""
        form = request.form
        problem = None
        csv_rows = None
        if form.get("rows_source") == "csv" and form.get("rows_json"):
            try:
                csv_rows = _csv_state(form.get("rows_json", ""))
            except InvalidInput as error:
                problem = error
        try:
            rows = form_rows(form, columns)
        except InvalidInput as error:
            rows, problem = [dict.fromkeys(columns, "")], problem or error
        return cls(
            template_version_id=form.get("template_version_id", ""), rows=rows, csv=csv_rows,
            seeds=form.get("seeds", ""), seed_count=form.get("seed_count", ""),
            formats=form.getlist("formats"), params={key: form.get(key, "") for key in OVERRIDES},
            priority=form.get("priority", ""), name=form.get("name", ""),
        ), problem

    def rows_source(self) -> str:
        return "csv" if self.csv else "table"

    def used_seed_count(self) -> bool:
        return not self.seeds.strip() and bool(self.seed_count.strip())


def _csv_state(text: str) -> dict[str, Any]:
    """Rows carried from an earlier upload; the page wrote them, but the browser sends them back, so
    they are checked like any input (and again by the batch's own checks)."""
    try:
        state = json.loads(text)
    except ValueError:
        raise InvalidInput("csv", "the rows of the uploaded file were lost; upload it again") from None
    def texts(values: object, length: int | None = None) -> bool:
        return (isinstance(values, list) and all(isinstance(v, str) for v in values)
                and (length is None or len(values) == length))

    columns, rows, lines = (state.get(key) if isinstance(state, dict) else None for key in ("columns", "rows", "lines"))
    if (not texts(columns) or not isinstance(rows, list) or not all(texts(row, len(columns)) for row in rows)
            or not isinstance(lines, list) or len(lines) != len(rows)
            or not all(isinstance(line, int) and not isinstance(line, bool) for line in lines)):
        raise InvalidInput("csv", "the rows of the uploaded file were lost; upload it again")
    state["filename"] = str(state.get("filename", "rows.csv"))
    return state


def _csv_from_rows(filename: str, parsed: VariableRows) -> dict[str, Any]:
    return {"filename": filename, "columns": parsed.columns,
            "rows": [[row.get(column, "") for column in parsed.columns] for row in parsed.rows],
            "lines": parsed.sources}


def _int(value: str, name: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidInput(name, f"must be a whole number, got {value.strip()!r}") from None


def _seeds(text: str) -> list[int]:
    seeds = []
    for index, part in enumerate(part for part in re.split(r"[,\s]+", text.strip()) if part):
        try:
            seeds.append(int(part))
        except ValueError:
            raise InvalidInput(f"seeds[{index}]", f"'{part}' is not a whole number") from None
    return seeds


def _overrides(form: BatchForm) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in OVERRIDES:
        value = form.params.get(name, "").strip()
        if not value:
            continue
        if name in INT_FIELDS:
            params[name] = _int(value, name)
        elif name == "cfg_scale":
            try:
                params[name] = float(value)
            except ValueError:
                raise InvalidInput(name, f"must be a number, got {value!r}") from None
        else:
            params[name] = value
    return params


@dataclass
class Built:
    request: BatchRequest
    # Where each of request.rows came from: its index in the table, or its line in the CSV file.
    sources: list[int]


def _build_request(campaign_id: int, version: VersionChoice, form: BatchForm) -> Built:
    """The BatchRequest the form describes; InvalidInput naming the form field at the first problem."""
    farm, user = current_farm(), current_user()
    upload = request.files.get("csv")
    if upload is not None and upload.filename:
        with db_transaction() as db:
            parsed = rows_from_csv(db, farm.settings, user, version.version_id, upload.read())
        form.csv = _csv_from_rows(upload.filename, parsed)
    if form.csv is not None:
        rows = [dict(zip(form.csv["columns"], values)) for values in form.csv["rows"]]
        try:
            with db_transaction() as db:
                parsed = rows_from_table(db, farm.settings, user, version.version_id, rows)
        except InvalidInput as error:
            raise _csv_error(error, form.csv["lines"]) from None
        sources = [form.csv["lines"][index] for index in parsed.sources]
    else:
        with db_transaction() as db:
            parsed = rows_from_table(db, farm.settings, user, version.version_id, form.rows)
        sources = parsed.sources
    seeds = _seeds(form.seeds) if form.seeds.strip() else None
    seed_count = _int(form.seed_count, "seed_count") if form.used_seed_count() else None
    priority = _int(form.priority, "priority") if form.priority.strip() else DEFAULT_PRIORITY
    submission_key = request.form.get("submission_key") or None
    return Built(BatchRequest(
        campaign_id=campaign_id, template_version_id=version.version_id, rows=parsed.rows, seeds=seeds,
        seed_count=seed_count, formats=list(form.formats), params=_overrides(form), priority=priority,
        name=form.name.strip() or None, submission_key=submission_key,
    ), sources)


def _csv_error(error: InvalidInput, lines: list[int]) -> InvalidInput:
    match = _ROW_ERROR.fullmatch(error.field)
    if match and int(match.group(1)) < len(lines):
        column = match.group(2).lstrip(".")
        where = f"line {lines[int(match.group(1))]}" + (f", column {column}" if column else "")
        return InvalidInput("csv", f"{where}: {error.message}")
    return InvalidInput("csv", error.message) if error.field.startswith("rows") else error


def _form_error(error: InvalidInput, form: BatchForm, sources: list[int] | None) -> InvalidInput:
    """An error from the batch's checks, named by the form field to show it at."""
    name = error.field
    if name.startswith("rows") and sources is not None:
        if form.csv is not None:
            return _csv_error(error, sources)
        match = _ROW_ERROR.fullmatch(name)
        if match and int(match.group(1)) < len(sources):
            return InvalidInput(f"rows[{sources[int(match.group(1))]}]{match.group(2)}", error.message)
        return error
    if name.startswith("seeds[") or (name == "seeds" and form.used_seed_count()):
        return InvalidInput("seed_count" if form.used_seed_count() else "seeds", error.message)
    return error


# -- the page -----------------------------------------------------------------------------------------------

def _chosen(choices: list[VersionChoice], raw: str | None) -> VersionChoice | None:
    if raw:
        for choice in choices:
            if str(choice.version_id) == raw.strip():
                return choice
    return next((choice for choice in choices if choice.latest), None)


def _render(campaign, choices, version, form: BatchForm, *, error: InvalidInput | None = None,
            plan: BatchPlan | None = None, status: int = 200):
    with db_transaction() as db:
        models = active_checkpoints(db)
    settings = current_farm().settings
    errors = {error.field: error.message} if error else {}
    rows_json = json.dumps(form.csv, separators=(",", ":")) if form.csv else ""
    return render_template(
        "campaigns/batch.html", campaign=campaign, choices=choices, version=version, form=form, errors=errors,
        error=error, plan=plan, models=models, samplers=SAMPLER_NAMES, formats=load_channel_formats(),
        rows_json=rows_json, max_priority=MAX_PRIORITY, max_rows=settings.max_rows_per_job,
        max_csv_bytes=settings.max_csv_bytes, sample_rows=CSV_SAMPLE_ROWS,
    ), status


def _page_data(campaign_id: int):
    user = current_user()
    with db_transaction() as db:
        campaign = get_campaign_info(db, user, campaign_id)
        choices = template_version_choices(db, user, campaign_id)
    return campaign, choices


@blueprint.get("/campaigns/<int:campaign_id>/batches/new")
@requires("jobs.submit")
def new(campaign_id: int):
    campaign, choices = _page_data(campaign_id)
    if campaign.status != "active":
        flash(f"{campaign.name} is archived and takes no new jobs.", "error")
        return redirect(url_for("campaigns.view", campaign_id=campaign_id))
    version = _chosen(choices, request.args.get("template_version_id"))
    columns = version.variables if version else []
    form = BatchForm(template_version_id=str(version.version_id) if version else "",
                     rows=[dict.fromkeys(columns, "")], formats=list(campaign.channel_formats))
    return _render(campaign, choices, version, form)


@blueprint.post("/campaigns/<int:campaign_id>/batches/new")
@requires("jobs.submit")
def post(campaign_id: int):
    campaign, choices = _page_data(campaign_id)
    action = request.form.get("action", "check")
    version = _chosen(choices, request.form.get("template_version_id"))
    form, problem = BatchForm.from_request(version.variables if version else [])
    if problem is not None:
        return _render(campaign, choices, version, form, error=problem, status=400)
    if version is None or str(version.version_id) != form.template_version_id.strip():
        error = InvalidInput("template_version_id", "choose a template version of this campaign"
                             if choices else "this campaign has no templates yet")
        return _render(campaign, choices, version, form, error=error, status=400)
    if action in ("load", "add_row", "table"):
        return _rearrange(campaign, choices, version, form, action)
    built = None
    try:
        built = _build_request(campaign_id, version, form)
        if action == "submit":
            submitted = submit_batch(current_farm(), current_user(), built.request)
        else:
            with db_transaction() as db:
                plan = plan_batch(db, current_farm().settings, current_user(), built.request)
    except InvalidInput as error:
        return _render(campaign, choices, version, form, error=_form_error(error, form, built and built.sources),
                       status=400)
    if action != "submit":
        return _render(campaign, choices, version, form, plan=plan)
    if submitted.created:
        flash(f"Submitted job #{submitted.job_id}: {submitted.renders} render{'s' if submitted.renders != 1 else ''}.",
              "success")
    else:
        flash(f"This form was submitted already: it made job #{submitted.job_id}; no second job was made.", "info")
    return redirect(job_url(submitted.job_id) or url_for("campaigns.view", campaign_id=campaign_id))


def _rearrange(campaign, choices, version, form: BatchForm, action: str):
    """The form again after a change of version, an added row, or file rows moved into the table."""
    if action == "table" and form.csv is not None:
        form.rows = [dict(zip(form.csv["columns"], values)) for values in form.csv["rows"][:MAX_TABLE_ROWS_FROM_CSV]]
        form.csv = None
    if action == "load":
        form.rows = [{column: row.get(column, "") for column in version.variables} for row in form.rows]
        if form.csv is not None and not set(version.variables) <= set(form.csv["columns"]):
            form.csv = None  # the file lacks the new version's columns: upload one that has them
    if action == "add_row" or not form.rows:
        form.rows.append(dict.fromkeys(version.variables, ""))
    return _render(campaign, choices, version, form)
