"""Model registry pages: the list, one model, and for admins registering a model (as
`farm models add` does), suspending and unsuspending it, and putting it under another license
(farm.models.admin).

The add form names a path on the server inside the configured model folders (relative paths are
under {home}/models); the registry refuses anything else, pickle-based weights (.ckpt, .pt, .bin)
included, and hashes the files in full: a large checkpoint takes a few seconds. Suspending or
changing the license re-checks unfinished renders (held when the policy now refuses them,
released and queued again when it allows them) and flags the model's assets for re-review; the
page says how many of each. Bad input re-renders the page with the message at its field (400).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from dashboard.auth import current_user, has_permission, requires
from dashboard.helpers import current_farm, db_transaction
from dashboard.licenses import COMMERCIAL_USE_LABELS
from farm.db.models import ARCHITECTURES, MODEL_KINDS, MODEL_STATUSES
from farm.errors import InvalidInput
from farm.licenses.admin import list_licenses
from farm.models.admin import (ModelChange, add_model_now, list_models, set_model_license_now, show_model,
                               suspend_model_now, unsuspend_model_now)
from farm.models.lookup import form_path, model_name_by_id, unregistered_model_files

blueprint = Blueprint("models", __name__, url_prefix="/models")

ADD_FIELDS = ("path", "name", "kind", "license", "base", "source", "architecture")


def change_summary(headline: str, change: ModelChange) -> str:
    """What a suspension, release or license change did, in a sentence after `headline`."""
    parts = [f"{change.held_renders} queued render(s) held"]
    if change.released_render_ids:
        parts.append(f"{len(change.released_render_ids)} held render(s) released and queued again")
    if change.still_held_renders:
        parts.append(f"{change.still_held_renders} still held")
    parts.append(f"{change.flagged_assets} asset(s) flagged for re-review")
    return f"{headline}: " + ", ".join(parts) + "."


def _filters() -> dict[str, str | None]:
    return {name: (request.args.get(name) or "").strip() or None for name in ("kind", "status", "license")}


# -- the list -----------------------------------------------------------------------------------------

@blueprint.get("/")
@requires("campaigns.view")
def index():
    filters = _filters()
    error = None
    with db_transaction() as db:
        licenses = list_licenses(db)
        try:
            models = list_models(db, kind=filters["kind"], status=filters["status"],
                                 license_identifier=filters["license"])
        except InvalidInput as bad:
            error, models = bad, []
    return render_template("models/index.html", models=models, filters=filters, kinds=MODEL_KINDS,
                           statuses=MODEL_STATUSES, licenses=licenses, error=error,
                           errors={error.field: error.message} if error else {}), 400 if error else 200


# -- adding -------------------------------------------------------------------------------------------

def _render_add(values: dict[str, Any], error: InvalidInput | None = None, status: int = 200):
    settings = current_farm().settings
    with db_transaction() as db:
        licenses = list_licenses(db)
        checkpoints = list_models(db, kind="checkpoint")
        candidates = unregistered_model_files(db, settings)
    return render_template(
        "models/add.html", form=values, errors={error.field: error.message} if error else {}, error=error,
        kinds=MODEL_KINDS, architectures=ARCHITECTURES, licenses=licenses, checkpoints=checkpoints,
        candidates=candidates, folders=settings.allowed_model_folders, models_dir=settings.models_dir,
    ), status


@blueprint.get("/new")
@requires("models.manage")
def new():
    return _render_add({"kind": "checkpoint"})


@blueprint.post("/")
@requires("models.manage")
def create():
    values = {name: request.form.get(name, "") for name in ADD_FIELDS}
    farm = current_farm()
    try:
        if values["kind"] not in MODEL_KINDS:
            raise InvalidInput("kind", f"must be one of {', '.join(MODEL_KINDS)}")
        if not values["license"].strip():
            raise InvalidInput("license", "choose the license the model is under")
        info = add_model_now(farm, current_user(), path=form_path(farm.settings, values["path"]),
                             name=values["name"], kind=values["kind"], license_identifier=values["license"].strip(),
                             base=values["base"].strip() or None, source_url=values["source"] or None,
                             architecture=values["architecture"].strip() or None)
    except InvalidInput as error:
        return _render_add(values, error, 400)
    flash(f"Registered {info.kind} {info.name} ({info.architecture}) under {info.license}: sha256 {info.short_hash}….",
          "success")
    return redirect(url_for("models.view", model_id=info.id))


# -- one model and its changes -------------------------------------------------------------------------

def _render_view(model_id: int, *, error: InvalidInput | None = None, form: dict[str, str] | None = None,
                 status: int = 200):
    with db_transaction() as db:
        detail = show_model(db, model_name_by_id(db, model_id))
        licenses = list_licenses(db) if has_permission("models.manage") else []
    return render_template("models/view.html", detail=detail, m=detail.model, licenses=licenses,
                           labels=COMMERCIAL_USE_LABELS, error=error, form=form or {},
                           errors={error.field: error.message} if error else {},
                           can_manage=has_permission("models.manage")), status


@blueprint.get("/<int:model_id>")
@requires("campaigns.view")
def view(model_id: int):
    return _render_view(model_id)


def _name(model_id: int) -> str:
    with db_transaction() as db:
        return model_name_by_id(db, model_id)  # NotFound: 404


@blueprint.post("/<int:model_id>/suspend")
@requires("models.manage")
def suspend(model_id: int):
    form = {"reason": request.form.get("reason", "")}
    try:
        change = suspend_model_now(current_farm(), current_user(), _name(model_id), form["reason"])
    except InvalidInput as error:
        return _render_view(model_id, error=error, form=form, status=400)
    flash(change_summary(f"Suspended {change.model.name}", change), "warning")
    return redirect(url_for("models.view", model_id=model_id))


@blueprint.post("/<int:model_id>/unsuspend")
@requires("models.manage")
def unsuspend(model_id: int):
    try:
        change = unsuspend_model_now(current_farm(), current_user(), _name(model_id))
    except InvalidInput as error:
        return _render_view(model_id, error=error, status=400)
    flash(change_summary(f"{change.model.name} may render again", change), "success")
    return redirect(url_for("models.view", model_id=model_id))


@blueprint.post("/<int:model_id>/license")
@requires("models.manage")
def set_license(model_id: int):
    form = {"license": request.form.get("license", "").strip(), "license_reason": request.form.get("license_reason", "")}
    try:
        if not form["license"]:
            raise InvalidInput("license", "choose the new license")
        change = set_model_license_now(current_farm(), current_user(), _name(model_id), form["license"],
                                       form["license_reason"].strip() or None)
    except InvalidInput as error:
        return _render_view(model_id, error=error, form=form, status=400)
    flash(change_summary(f"{change.model.name} is now under {change.model.license}", change), "warning")
    return redirect(url_for("models.view", model_id=model_id))
