"""Campaign pages: the list, create, view, edit, archive / unarchive, and members.

Viewing needs campaigns.view and a campaign the user can see (farm.campaigns.access: any other is
a 404); every change needs campaigns.edit. Bad input re-renders the form with the values typed and
the message next to the field (HTTP 400); nothing is written.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from dashboard.auth import current_user, has_permission, requires
from dashboard.helpers import db_transaction, optional_url
from farm.campaigns.formats import load_channel_formats
from farm.campaigns.overview import active_checkpoints, campaign_counts, member_candidates, recent_jobs, user_names
from farm.campaigns.service import (
    EDITABLE_FIELDS, add_member, archive_campaign, create_campaign_as, get_campaign_info, list_campaigns,
    list_members, remove_member, unarchive_campaign, update_campaign,
)
from farm.errors import InvalidInput, NotFound
from farm.templates.service import list_templates

blueprint = Blueprint("campaigns", __name__, url_prefix="/campaigns")


# -- helpers the template and batch pages share ---------------------------------------------------

def job_url(job_id: int) -> str | None:
    return optional_url("jobs.view", job_id=job_id)


def field_errors(error: InvalidInput | None) -> dict[str, str]:
    return {error.field: error.message} if error is not None else {}


# -- the list ---------------------------------------------------------------------------------------

@blueprint.get("/")
@requires("campaigns.view")
def index():
    show_archived = request.args.get("archived") == "1"
    with db_transaction() as db:
        campaigns = list_campaigns(db, current_user(), include_archived=show_archived)
        counts = campaign_counts(db, [c.id for c in campaigns])
    return render_template("campaigns/index.html", campaigns=campaigns, counts=counts, show_archived=show_archived,
                           today=date.today())


# -- create and edit --------------------------------------------------------------------------------

def _form_values() -> dict[str, Any]:
    """The campaign fields as the form sent them (strings, a bool and a list)."""
    values: dict[str, Any] = {key: request.form.get(key, "") for key in
                              ("name", "brand", "due_date", "default_model", "style_suffix", "style_negative")}
    values["commercial_use"] = request.form.get("commercial_use") == "1"
    values["channel_formats"] = request.form.getlist("channel_formats")
    return values


def _render_form(values: dict[str, Any], *, campaign=None, error: InvalidInput | None = None, status: int = 200):
    with db_transaction() as db:
        models = active_checkpoints(db)
    return render_template("campaigns/form.html", form=values, campaign=campaign, errors=field_errors(error),
                           error=error, formats=load_channel_formats(), models=models), status


@blueprint.get("/new")
@requires("campaigns.edit")
def new():
    return _render_form({"commercial_use": True, "channel_formats": []})


@blueprint.post("/")
@requires("campaigns.edit")
def create():
    values = _form_values()
    try:
        with db_transaction() as db:
            campaign = create_campaign_as(db, current_user(), **values)
    except InvalidInput as error:
        return _render_form(values, error=error, status=400)
    flash(f"Created campaign {campaign.name}.", "success")
    return redirect(url_for("campaigns.view", campaign_id=campaign.id))


@blueprint.get("/<int:campaign_id>/edit")
@requires("campaigns.edit")
def edit(campaign_id: int):
    with db_transaction() as db:
        campaign = get_campaign_info(db, current_user(), campaign_id)
    values = {key: getattr(campaign, key) for key in EDITABLE_FIELDS}
    values["due_date"] = campaign.due_date.isoformat() if campaign.due_date else ""
    values["default_model"] = campaign.default_model or ""
    return _render_form(values, campaign=campaign)


@blueprint.post("/<int:campaign_id>/edit")
@requires("campaigns.edit")
def update(campaign_id: int):
    values = _form_values()
    user = current_user()
    try:
        with db_transaction() as db:
            campaign = update_campaign(db, user, campaign_id, values)
    except InvalidInput as error:
        with db_transaction() as db:
            campaign = get_campaign_info(db, user, campaign_id)  # NotFound (404) if it is not visible
        return _render_form(values, campaign=campaign, error=error, status=400)
    flash(f"Saved campaign {campaign.name}.", "success")
    return redirect(url_for("campaigns.view", campaign_id=campaign.id))


# -- the campaign page ------------------------------------------------------------------------------

def _render_view(campaign_id: int, *, member_error: InvalidInput | None = None, member_value: str = "",
                 status: int = 200):
    user = current_user()
    can_edit = has_permission("campaigns.edit")
    with db_transaction() as db:
        campaign = get_campaign_info(db, user, campaign_id)
        templates = list_templates(db, user, campaign_id)
        jobs = recent_jobs(db, user, campaign_id)
        members = list_members(db, user, campaign_id)
        candidates = member_candidates(db, user, campaign_id) if can_edit else []
        counts = campaign_counts(db, [campaign_id])[campaign_id]
        owner = user_names(db, [campaign.owner_id]).get(campaign.owner_id)
    known = load_channel_formats()
    formats = [known[name] for name in campaign.channel_formats if name in known]
    # Pages other areas own, linked when this app has them.
    links = {
        "gallery": optional_url("gallery.index", campaign_id=campaign_id),
        "export": optional_url("exports.campaign_zip", campaign_id=campaign_id),  # a POST: a form's action
        "jobs": optional_url("jobs.index", campaign_id=campaign_id),
    }
    return render_template(
        "campaigns/view.html", campaign=campaign, templates=templates, jobs=jobs, members=members,
        candidates=candidates, counts=counts, owner=owner, formats=formats, links=links, job_url=job_url,
        member_errors=field_errors(member_error), member_value=member_value, can_edit=can_edit,
    ), status


@blueprint.get("/<int:campaign_id>")
@requires("campaigns.view")
def view(campaign_id: int):
    return _render_view(campaign_id)


# -- archive ------------------------------------------------------------------------------------------

@blueprint.post("/<int:campaign_id>/archive")
@requires("campaigns.edit")
def archive(campaign_id: int):
    with db_transaction() as db:
        campaign = archive_campaign(db, current_user(), campaign_id)
    flash(f"Archived {campaign.name}: it stays readable but takes no new jobs.", "success")
    return redirect(url_for("campaigns.view", campaign_id=campaign_id))


@blueprint.post("/<int:campaign_id>/unarchive")
@requires("campaigns.edit")
def unarchive(campaign_id: int):
    with db_transaction() as db:
        campaign = unarchive_campaign(db, current_user(), campaign_id)
    flash(f"{campaign.name} is active again.", "success")
    return redirect(url_for("campaigns.view", campaign_id=campaign_id))


# -- members ------------------------------------------------------------------------------------------

@blueprint.post("/<int:campaign_id>/members")
@requires("campaigns.edit")
def add_member_view(campaign_id: int):
    raw = request.form.get("user_id", "").strip()
    try:
        if not raw:
            raise InvalidInput("user_id", "choose a user to add")
        try:
            member_id = int(raw)
        except ValueError:
            raise InvalidInput("user_id", f"must be a user id, got {raw!r}") from None
        with db_transaction() as db:
            try:
                added = add_member(db, current_user(), campaign_id, member_id)
            except NotFound as missing:
                if missing.what != "user":
                    raise  # the campaign: a 404 page
                raise InvalidInput("user_id", f"there is no user {member_id}") from None
            name = user_names(db, [member_id])[member_id]
    except InvalidInput as error:
        return _render_view(campaign_id, member_error=error, member_value=raw, status=400)
    flash(f"{name} is a member now." if added else f"{name} was a member already.", "success")
    return redirect(url_for("campaigns.view", campaign_id=campaign_id) + "#members")


@blueprint.post("/<int:campaign_id>/members/<int:user_id>/remove")
@requires("campaigns.edit")
def remove_member_view(campaign_id: int, user_id: int):
    with db_transaction() as db:
        removed = remove_member(db, current_user(), campaign_id, user_id)
        name = user_names(db, [user_id]).get(user_id, f"user {user_id}")
    flash(f"{name} is no longer a member." if removed else f"{name} was not a member.", "success")
    return redirect(url_for("campaigns.view", campaign_id=campaign_id) + "#members")
