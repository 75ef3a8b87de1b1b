"""The asset page (image, parameters, provenance, reviews, versions, review actions, re-render
with changes) and the side-by-side comparison of two assets.

Review decisions post to the review blueprint (dashboard/review.py), which renders this page
again with the error at the comment field when a decision is refused.
"""

from __future__ import annotations

from typing import Any, Mapping

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from dashboard.auth import current_user, requires
from dashboard.helpers import current_farm, db_transaction, optional_url
from farm.assets.detail import asset_detail
from farm.assets.versions import HIDDEN_PARAMS, PARAM_ORDER
from farm.assets.versions import compare as compare_assets
from farm.errors import InvalidInput
from farm.render.samplers import SAMPLER_NAMES
from farm.review.rerender import CHANGEABLE_PARAMS, submit_rerender

blueprint = Blueprint("assets", __name__, url_prefix="/assets")

MAX_SUBMISSION_KEY = 64


def job_url(job_id: int) -> str:
    """The job's page once the jobs pages exist (jobs.view), else the gallery of its assets."""
    return optional_url("jobs.view", job_id=job_id) or url_for("gallery.index", job_id=job_id)


def campaign_url(campaign_id: int) -> str:
    return optional_url("campaigns.view", campaign_id=campaign_id) or url_for("gallery.index", campaign_id=campaign_id)


def rerender_defaults(params: Mapping[str, Any]) -> dict[str, str]:
    """The re-render form prefilled from the source render, as the text a form field holds."""
    return {name: "" if params.get(name) is None else str(params.get(name)) for name in CHANGEABLE_PARAMS}


def ordered_params(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The render's parameters, the usual ones first (as the comparison orders them)."""
    names = [n for n in PARAM_ORDER if n in params]
    names += sorted(set(params) - set(names) - HIDDEN_PARAMS)
    return [(name, params[name]) for name in names]


def render_asset_page(asset_id: int, *, review_form: Mapping[str, str] | None = None,
                      review_error: InvalidInput | None = None, rerender_form: Mapping[str, str] | None = None,
                      rerender_error: InvalidInput | None = None, status: int = 200):
    """The asset page; a refused review or re-render comes back here with the user's values and
    the error at its field (HTTP 400). NotFound (404) for an asset the user cannot see."""
    with db_transaction() as db:
        detail = asset_detail(db, current_user(), asset_id)
    current = next((v for v in detail.versions if v.is_requested), None)
    others = [v for v in detail.versions if not v.is_requested]
    return render_template(
        "assets/view.html", asset=detail, p=detail.provenance, params=ordered_params(detail.params), current=current, others=others,
        review_form=review_form or {}, review_error=review_error,
        rerender_form={**rerender_defaults(detail.params), **(rerender_form or {})}, rerender_error=rerender_error,
        samplers=SAMPLER_NAMES, job_url=job_url, campaign_url=campaign_url,
        next_url=url_for("assets.view", asset_id=detail.asset_id),
    ), status


@blueprint.get("/<int:asset_id>")
@requires("campaigns.view")
def view(asset_id: int):
    return render_asset_page(asset_id)


@blueprint.get("/compare")
@requires("campaigns.view")
def compare():
    a, b = request.args.get("a", ""), request.args.get("b", "")
    try:
        with db_transaction() as db:
            comparison = compare_assets(db, current_user(), a, b)
    except InvalidInput as error:
        return render_template("assets/compare.html", comparison=None, error=error, a=a, b=b), 400
    return render_template("assets/compare.html", comparison=comparison, error=None, a=a, b=b)


def _submission_key(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > MAX_SUBMISSION_KEY or not value.isprintable():
        raise InvalidInput("submission_key", "is not a key this form made; reload the page and try again")
    return value


@blueprint.post("/<int:asset_id>/rerender")
@requires("review.decide")
def rerender(asset_id: int):
    # Only the fields sent: a form missing one keeps the source's value for it.
    form = {name: request.form[name] for name in CHANGEABLE_PARAMS if name in request.form}
    try:
        key = _submission_key(request.form.get("submission_key"))
        job_id = submit_rerender(current_farm(), current_user(), asset_id, form, submission_key=key)
    except InvalidInput as error:
        return render_asset_page(asset_id, rerender_form=form, rerender_error=error, status=400)
    flash(f"Re-render submitted as job {job_id}: the new version appears under Versions once it is rendered.",
          "success")
    if "jobs.view" in current_app.view_functions:
        return redirect(job_url(job_id))
    return redirect(url_for("assets.view", asset_id=asset_id))
