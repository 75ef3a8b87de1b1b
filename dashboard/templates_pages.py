"""Prompt template pages: the list, a campaign's new template, a template with its versions, and
editing (which saves a new version; jobs keep the version they used).

The form has a table of variable rows and a Preview button: campaigns.js posts the form to
`templates.preview` and shows each row's expanded prompt and negative prompt (with the campaign's
brand style), or the error at its field, before anything is saved. Without JavaScript the same
button posts the form (action=preview) and the page comes back with the preview. Saving checks the
texts again (syntax errors, undeclared variables, default parameters) and keeps the typed values on
any error (HTTP 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from dashboard.auth import current_user, has_permission, requires
from dashboard.helpers import db_transaction
from farm.campaigns.overview import active_checkpoints, user_names, visible_templates
from farm.campaigns.service import get_campaign_info, list_campaigns
from farm.errors import InvalidInput, NotFound
from farm.render.samplers import SAMPLER_NAMES
from farm.templates.service import (
    Preview, create_campaign_template, edit_template, list_template_versions, preview, template_variables,
)

blueprint = Blueprint("templates", __name__)

ROW_FIELD = re.compile(r"rows\[(\d+)\]\.([A-Za-z_][A-Za-z0-9_]{0,63})")
MAX_FORM_ROWS = 200  # rows typed into a form's table (a batch takes more from a CSV file)
BLANK_ROWS = 3  # empty rows a new form offers
INT_PARAMS = ("steps", "width", "height")


# -- reading the form ---------------------------------------------------------------------------------

def parse_variable_names(text: str) -> list[str] | None:
    """"product, background" -> ["product", "background"]; blank -> None (declare what the texts use)."""
    names = [name for name in re.split(r"[,\s]+", text.strip()) if name]
    return names or None


def form_rows(form, columns: list[str]) -> list[dict[str, str]]:
    """The table's rows as typed (`rows[3].product` inputs), in index order, with a value for every
    column (missing inputs read as ""). Indexes removed in the browser leave no gap in the result."""
    found: dict[int, dict[str, str]] = {}
    for key in form.keys():
        match = ROW_FIELD.fullmatch(key)
        if match:
            index = int(match.group(1))
            if index >= 100_000:
                raise InvalidInput("rows", "row numbers in the form are too large")
            found.setdefault(index, {})[match.group(2)] = form.get(key, "")
    if len(found) > MAX_FORM_ROWS:
        raise InvalidInput("rows", f"at most {MAX_FORM_ROWS} rows can be typed into the table; upload a CSV file")
    return [{column: found[index].get(column, "").strip() for column in columns} for index in sorted(found)]


def default_params_from_form(form) -> dict[str, Any]:
    """The version's default parameters: blank fields are left to the campaign and the farm."""
    params: dict[str, Any] = {}
    for name in ("model", "sampler"):
        value = form.get(f"default_params.{name}", "").strip()
        if value:
            params[name] = value
    for name in INT_PARAMS:
        value = form.get(f"default_params.{name}", "").strip()
        if value:
            try:
                params[name] = int(value)
            except ValueError:
                raise InvalidInput(f"default_params.{name}", f"must be a whole number, got {value!r}") from None
    value = form.get("default_params.cfg_scale", "").strip()
    if value:
        try:
            params["cfg_scale"] = float(value)
        except ValueError:
            raise InvalidInput("default_params.cfg_scale", f"must be a number, got {value!r}") from None
    return params


def form_field(field: str) -> str:
    """The form field an error is about: "variables[2]" -> "variables"; row cells keep their name."""
    if field.startswith("rows["):
        return field
    return re.sub(r"\[\d+\]$", "", field)


@dataclass
class TemplateForm:
    """What the template form holds: the typed values, and the columns of its rows table."""

    name: str
    variables: str
    body: str
    negative_body: str
    params: dict[str, str]
    rows: list[dict[str, str]]
    columns: list[str]

    @classmethod
    def from_request(cls, *, add_row: bool = False) -> "TemplateForm":
        form = request.form
        body, negative = form.get("body", ""), form.get("negative_body", "")
        variables = form.get("variables", "")
        columns = guess_columns(variables, body, negative)
        rows = form_rows(form, columns)
        if add_row or not rows:
            rows.append(dict.fromkeys(columns, ""))
        return cls(name=form.get("name", ""), variables=variables, body=body, negative_body=negative,
                   params={name: form.get(f"default_params.{name}", "") for name in
                           ("model", "sampler", "cfg_scale", *INT_PARAMS)},
                   rows=rows, columns=columns)

    @classmethod
    def blank(cls) -> "TemplateForm":
        return cls(name="", variables="", body="", negative_body="", params={}, rows=[{} for _ in range(BLANK_ROWS)],
                   columns=[])

    @classmethod
    def from_version(cls, version) -> "TemplateForm":
        columns = list(version.variables)
        params = {key: "" if value is None else str(value) for key, value in version.default_params.items()}
        return cls(name=version.template_name, variables=", ".join(columns), body=version.body,
                   negative_body=version.negative_body, params=params,
                   rows=[dict.fromkeys(columns, "") for _ in range(BLANK_ROWS)], columns=columns)

    def preview_rows(self) -> tuple[list[int], list[dict[str, str]]]:
        """The rows with any value typed (blank rows are not previewed), with their table indexes."""
        kept = [(index, row) for index, row in enumerate(self.rows) if any(row.values())]
        return [index for index, _ in kept], [row for _, row in kept]


def guess_columns(variables: str, body: str, negative_body: str) -> list[str]:
    """The rows table's columns: the declared names, or else the names the texts use (if they parse)."""
    declared = parse_variable_names(variables)
    if declared:
        return list(dict.fromkeys(declared))
    try:
        return sorted(template_variables(body) | template_variables(negative_body, "negative_body"))
    except InvalidInput:
        return []


def run_preview(campaign_id: int, form: TemplateForm) -> dict[str, Any]:
    """The preview as JSON-ready data, rows numbered as in the form's table; InvalidInput for the texts."""
    indexes, rows = form.preview_rows()
    with db_transaction() as db:
        result: Preview = preview(db, current_user(), campaign_id, rows=rows, body=form.body,
                                  negative_body=form.negative_body, variables=parse_variable_names(form.variables))
    out_rows = []
    for row in result.rows:
        data = row.to_dict()
        table_index = indexes[row.index]
        data["index"] = table_index
        data["errors"] = [{"field": re.sub(r"^rows\[\d+\]", f"rows[{table_index}]", e["field"]),
                           "message": e["message"]} for e in data["errors"]]
        out_rows.append(data)
    return {"ok": result.ok, "variables": form.columns, "rows": out_rows}


# -- the list -------------------------------------------------------------------------------------------

@blueprint.get("/templates/")
@requires("campaigns.view")
def index():
    show_archived = request.args.get("archived") == "1"
    user = current_user()
    with db_transaction() as db:
        templates = visible_templates(db, user, include_archived=show_archived)
        campaigns = list_campaigns(db, user) if has_permission("templates.edit") else []
    return render_template("templates/index.html", templates=templates, campaigns=campaigns,
                           show_archived=show_archived)


# -- new template, new version ----------------------------------------------------------------------------

def _render_form(campaign_id: int, form: TemplateForm, *, template=None, versions=None, error: InvalidInput | None = None,
                 preview_result: dict | None = None, status: int = 200):
    user = current_user()
    with db_transaction() as db:
        campaign = get_campaign_info(db, user, campaign_id)
        models = active_checkpoints(db)
    errors = {form_field(error.field): error.message} if error else {}
    if preview_result:
        for row in preview_result["rows"]:
            for row_error in row["errors"]:
                errors.setdefault(row_error["field"], row_error["message"])
    return render_template("templates/form.html", campaign=campaign, form=form, template=template,
                           versions=versions, errors=errors, error=error, preview=preview_result,
                           models=models, samplers=SAMPLER_NAMES), status


def _handle_form(campaign_id: int, form: TemplateForm, save, *, template=None, versions=None):
    """Preview, add a row, or save (calling `save()`); any problem re-renders the form (400)."""
    action = request.form.get("action", "save")
    if action == "add_row":
        return _render_form(campaign_id, form, template=template, versions=versions)
    try:
        if action == "preview":
            result = run_preview(campaign_id, form)
            return _render_form(campaign_id, form, template=template, versions=versions, preview_result=result)
        return save()
    except InvalidInput as error:
        return _render_form(campaign_id, form, template=template, versions=versions, error=error, status=400)


@blueprint.get("/campaigns/<int:campaign_id>/templates/new")
@requires("templates.edit")
def new(campaign_id: int):
    return _render_form(campaign_id, TemplateForm.blank())


@blueprint.post("/campaigns/<int:campaign_id>/templates/new")
@requires("templates.edit")
def create(campaign_id: int):
    form = TemplateForm.from_request(add_row=request.form.get("action") == "add_row")

    def save():
        params = default_params_from_form(request.form)
        with db_transaction() as db:
            version = create_campaign_template(
                db, current_user(), campaign_id, name=form.name, body=form.body, negative_body=form.negative_body,
                variables=parse_variable_names(form.variables), default_params=params)
        flash(f"Created template {version.template_name} (version 1).", "success")
        return redirect(url_for("templates.view", template_id=version.template_id))

    return _handle_form(campaign_id, form, save)


@blueprint.post("/campaigns/<int:campaign_id>/templates/preview")
@requires("templates.edit")
def preview_json(campaign_id: int):
    """The preview for campaigns.js: {"ok", "variables", "rows": [...]} or {"error": {field, message}}."""
    try:
        return jsonify(run_preview(campaign_id, TemplateForm.from_request()))
    except InvalidInput as error:
        return jsonify({"error": {"field": form_field(error.field), "message": error.message}}), 400
    except NotFound as error:
        return jsonify({"error": {"message": f"No {error.what} {error.key}."}}), 404


def _versions(template_id: int):
    with db_transaction() as db:
        versions = list_template_versions(db, current_user(), template_id)
        authors = user_names(db, [v.created_by_id for v in versions])
    return versions, authors


@blueprint.get("/templates/<int:template_id>")
@requires("campaigns.view")
def view(template_id: int):
    versions, authors = _versions(template_id)
    latest = versions[-1]
    with db_transaction() as db:
        campaign = get_campaign_info(db, current_user(), latest.campaign_id)
    return render_template("templates/view.html", template=latest, versions=list(reversed(versions)),
                           authors=authors, campaign=campaign)


@blueprint.get("/templates/<int:template_id>/edit")
@requires("templates.edit")
def edit(template_id: int):
    versions, _ = _versions(template_id)
    latest = versions[-1]
    return _render_form(latest.campaign_id, TemplateForm.from_version(latest), template=latest, versions=versions)


@blueprint.post("/templates/<int:template_id>/edit")
@requires("templates.edit")
def save_version(template_id: int):
    versions, _ = _versions(template_id)
    latest = versions[-1]
    form = TemplateForm.from_request(add_row=request.form.get("action") == "add_row")
    form.name = latest.template_name

    def save():
        params = default_params_from_form(request.form)
        with db_transaction() as db:
            version = edit_template(db, current_user(), template_id, body=form.body, negative_body=form.negative_body,
                                    variables=parse_variable_names(form.variables), default_params=params)
        flash(f"Saved {version.template_name} version {version.version}; earlier versions and their jobs are "
              "unchanged.", "success")
        return redirect(url_for("templates.view", template_id=template_id))

    return _handle_form(latest.campaign_id, form, save, template=latest, versions=versions)
