"""Review: the queue of pending assets (keyboard-driven, static/review.js), decisions and bulk
approval. Every decision is farm.review.service's: a Review row with reviewer and time, audited.

A decision form posts here from the asset page or the queue. Without JavaScript it redirects to
`next` (or shows the asset page again with the error at the comment field, HTTP 400); review.js
sends the same form with `Accept: application/json` and gets JSON back, so the queue moves on
without reloading.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from dashboard.assets import render_asset_page
from dashboard.auth import current_user, requires, safe_next
from dashboard.gallery import load_page, paging_links
from dashboard.helpers import db_transaction
from farm.assets.gallery import filter_choices
from farm.errors import InvalidInput
from farm.review import service as reviews

blueprint = Blueprint("review", __name__, url_prefix="/review")

QUEUE_PAGE_SIZE = 24
QUEUE_FILTERS = ("campaign_id", "job_id")
DECISION_LABELS = {"approve": "Approved", "reject": "Rejected", "request_changes": "Changes requested on"}


def _wants_json() -> bool:
    """review.js asks for JSON (Accept: application/json); browsers' own forms accept text/html."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _json_error(error: InvalidInput, status: int = 400):
    response = jsonify({"error": {"field": error.field, "message": error.message}})
    response.status_code = status
    return response


def render_queue(*, bulk_error: InvalidInput | None = None, selected: list[str] | None = None, status: int = 200):
    user = current_user()
    args = {name: request.args.get(name, "") for name in QUEUE_FILTERS}
    error = page = None
    links: dict = {}
    with db_transaction() as db:
        choices = filter_choices(db, user)
        try:
            _, page, before, limit = load_page(db, user, request.args, fixed={"approval_state": "pending"},
                                               default_limit=QUEUE_PAGE_SIZE)
        except InvalidInput as bad:
            error, status = bad, 400
        else:
            links = paging_links("review.index", request.args, page, before, limit, QUEUE_PAGE_SIZE)
    return render_template(
        "review/index.html", page=page, choices=choices, values=args, error=error, links=links,
        bulk_error=bulk_error, selected=set(selected or []), max_comment=reviews.MAX_COMMENT_LENGTH,
        campaign_names={c.value: c.label for c in choices.campaigns},
        here=request.full_path if request.query_string else request.path,
    ), status


@blueprint.get("/")
@requires("review.decide")
def index():
    return render_queue()


@blueprint.post("/assets/<int:asset_id>")
@requires("review.decide")
def decide(asset_id: int):
    decision = request.form.get("decision", "")
    comment = request.form.get("comment", "")
    back = safe_next(request.form.get("next") or url_for("assets.view", asset_id=asset_id))
    try:
        with db_transaction() as db:
            record = reviews.decide(db, current_user(), asset_id, decision, comment)
    except InvalidInput as error:
        if _wants_json():
            return _json_error(error)
        return render_asset_page(asset_id, review_form={"comment": comment, "next": request.form.get("next", "")},
                                 review_error=error, status=400)
    if _wants_json():
        return jsonify({"asset_id": record.asset_id, "decision": record.decision,
                        "approval_state": reviews.APPROVAL_STATE_AFTER[record.decision], "comment": record.comment,
                        "reviewer": record.reviewer_name, "created_at": record.created_at.isoformat()})
    flash(f"{DECISION_LABELS[record.decision]} asset {asset_id}.", "success")
    return redirect(back)


@blueprint.post("/bulk-approve")
@requires("review.decide")
def bulk_approve():
    """Approve the checked assets, all or none. The form posts to this URL with the queue's own
    query string, so a refusal shows the same queue again with the selection kept."""
    asset_ids = request.form.getlist("asset_ids")
    try:
        with db_transaction() as db:
            records = reviews.bulk_approve(db, current_user(), asset_ids)
    except InvalidInput as error:
        return render_queue(bulk_error=error, selected=asset_ids, status=400)
    flash(f"Approved {len(records)} asset{'' if len(records) == 1 else 's'}.", "success")
    return redirect(safe_next(request.form.get("next") or url_for("review.index", **{
        name: request.args[name] for name in QUEUE_FILTERS if request.args.get(name)})))
