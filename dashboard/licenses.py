"""License registry pages: the list, one license (its terms, the models under it), and for admins
adding and editing licenses (farm.licenses.admin, which validates every field and audits each
change with its before and after).

Anyone signed in may read the terms: campaign managers choose models by them. Changing them needs
licenses.manage. Bad input re-renders the form with what was typed and the message at its field
(HTTP 400); nothing is written. Editing terms the policy reads re-checks the models under the
license and flags the assets they made for re-review; the page says how many.

(`/licenses/new` is the add form: an identifier spelled `new` would be shadowed by it, which no
SPDX or LicenseRef- identifier in use is.)
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from dashboard.auth import current_user, has_permission, requires
from dashboard.helpers import db_transaction
from farm.audit.browse import EventFilters, list_events
from farm.db.models import COMMERCIAL_USE
from farm.errors import InvalidInput, NotFound
from farm.licenses.admin import create_license, list_licenses, show_license, update_license
from farm.models.admin import list_models

blueprint = Blueprint("licenses", __name__, url_prefix="/licenses")

TEXT_FIELDS = ("name", "url", "text_sha256", "commercial_use", "revenue_cap_usd", "attribution_text")
LICENSE_TEXT_MAX_BYTES = 2 * 1024 * 1024
COMMERCIAL_USE_LABELS = {
    "allowed": "allowed",
    "revenue_capped": "allowed under a revenue cap",
    "forbidden": "forbidden",
    "separate_license_required": "needs a separate license",
}


def commercial_use_choices() -> list[tuple[str, str]]:
    return [(value, COMMERCIAL_USE_LABELS.get(value, value)) for value in COMMERCIAL_USE]


# -- the form ---------------------------------------------------------------------------------------

def form_values() -> dict[str, Any]:
    """What the form sent, as text (kept to fill the form again)."""
    values: dict[str, Any] = {name: request.form.get(name, "") for name in ("identifier", "reason", *TEXT_FIELDS)}
    values["attribution_required"] = request.form.get("attribution_required") == "1"
    values["derivatives_inherit"] = request.form.get("derivatives_inherit") == "1"
    values["use_restrictions"] = request.form.get("use_restrictions", "")
    return values


def _restriction_lines(text: str) -> list[tuple[int, str]]:
    """(line number, restriction) for every non-blank line."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def license_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The fields farm.licenses.admin takes, from the form's values (and an uploaded license text:
    its sha256 is recorded, the file is not kept)."""
    fields: dict[str, Any] = {name: values[name] for name in TEXT_FIELDS}
    fields["attribution_required"] = values["attribution_required"]
    fields["derivatives_inherit"] = values["derivatives_inherit"]
    fields["use_restrictions"] = [line for _, line in _restriction_lines(values["use_restrictions"])]
    upload = request.files.get("text_file")
    if upload is not None and upload.filename:
        data = upload.stream.read(LICENSE_TEXT_MAX_BYTES + 1)
        if len(data) > LICENSE_TEXT_MAX_BYTES:
            raise InvalidInput("text_file", f"a license text of at most {LICENSE_TEXT_MAX_BYTES // (1024 * 1024)} MiB")
        if not data:
            raise InvalidInput("text_file", "the file is empty")
        fields["text_sha256"] = hashlib.sha256(data).hexdigest()
        values["text_sha256"] = fields["text_sha256"]
    return fields


def at_form_field(error: InvalidInput, values: dict[str, Any]) -> InvalidInput:
    """An error about one restriction (`use_restrictions[2]`) belongs to the textarea, by line."""
    if error.field.startswith("use_restrictions["):
        index = int(error.field[len("use_restrictions["):].split("]", 1)[0])
        lines = _restriction_lines(values["use_restrictions"])
        line = lines[index][0] if index < len(lines) else index + 1
        return InvalidInput("use_restrictions", f"line {line}: {error.message}")
    return error


def _render_form(values: dict[str, Any], *, license_=None, error: InvalidInput | None = None, status: int = 200):
    return render_template("licenses/form.html", form=values, license=license_,
                           errors={error.field: error.message} if error else {}, error=error,
                           commercial_use_choices=commercial_use_choices()), status


def _values_of(info) -> dict[str, Any]:
    return {"identifier": info.identifier, "name": info.name, "url": info.url or "",
            "text_sha256": info.text_sha256 or "", "commercial_use": info.commercial_use,
            "revenue_cap_usd": "" if info.revenue_cap_usd is None else str(info.revenue_cap_usd),
            "attribution_required": info.attribution_required, "attribution_text": info.attribution_text or "",
            "use_restrictions": "\n".join(info.use_restrictions), "derivatives_inherit": info.derivatives_inherit,
            "reason": ""}


def known_license(db, identifier: str):
    """The license's info; NotFound (404) for an identifier no license has."""
    try:
        return show_license(db, identifier)
    except InvalidInput as error:
        if error.field != "license":
            raise
        raise NotFound("license", identifier) from None


# -- pages ------------------------------------------------------------------------------------------

@blueprint.get("/")
@requires("campaigns.view")
def index():
    with db_transaction() as db:
        licenses = list_licenses(db)
    return render_template("licenses/index.html", licenses=licenses, labels=COMMERCIAL_USE_LABELS)


@blueprint.get("/new")
@requires("licenses.manage")
def new():
    return _render_form({"commercial_use": "allowed", "derivatives_inherit": True, "attribution_required": False})


@blueprint.post("/")
@requires("licenses.manage")
def create():
    values = form_values()
    try:
        fields = license_fields(values)
        with db_transaction() as db:
            info = create_license(db, current_user(), {"identifier": values["identifier"], **fields})
    except InvalidInput as error:
        return _render_form(values, error=at_form_field(error, values), status=400)
    flash(f"Added license {info.identifier}.", "success")
    return redirect(url_for("licenses.view", identifier=info.identifier))


@blueprint.get("/<identifier>")
@requires("campaigns.view")
def view(identifier: str):
    with db_transaction() as db:
        info = known_license(db, identifier)
        models = list_models(db, license_identifier=info.identifier)
    return render_template("licenses/view.html", license=info, models=models, labels=COMMERCIAL_USE_LABELS,
                           can_manage=has_permission("licenses.manage"))


@blueprint.get("/<identifier>/edit")
@requires("licenses.manage")
def edit(identifier: str):
    with db_transaction() as db:
        info = known_license(db, identifier)
    return _render_form(_values_of(info), license_=info)


@blueprint.post("/<identifier>/edit")
@requires("licenses.manage")
def update(identifier: str):
    values = form_values()
    with db_transaction() as db:
        before = known_license(db, identifier)
    values["identifier"] = before.identifier
    try:
        fields = license_fields(values)
        with db_transaction() as db:
            after = update_license(db, current_user(), identifier, fields, reason=values["reason"].strip() or None)
            flagged = flagged_by_last_update(db, before, after)
    except InvalidInput as error:
        return _render_form(values, license_=before, error=at_form_field(error, values), status=400)
    if after.updated_at == before.updated_at:
        flash(f"Nothing changed in {after.identifier}.", "info")
    elif flagged is None:
        flash(f"Saved {after.identifier}.", "success")
    else:
        flash(f"Saved {after.identifier}. Its terms changed: {flagged['models']} model(s) under it are re-checked "
              f"by workers and {flagged['flagged_assets']} asset(s) they made are flagged for re-review.", "warning")
    return redirect(url_for("licenses.view", identifier=after.identifier))


def flagged_by_last_update(db, before, after) -> dict[str, int] | None:
    """What the update just written did to models and assets, from its own audit event (the
    service reports it there); None when no term the policy reads changed."""
    if after.updated_at == before.updated_at:
        return None
    page = list_events(db, EventFilters(action="license.updated", entity_type="license", entity_id=after.identifier),
                       limit=1)
    event = page.events[0] if page.events else None
    if event is None or "flagged_assets" not in (event.after or {}):
        return None
    return {"models": len(event.after.get("models") or []), "flagged_assets": event.after["flagged_assets"]}
