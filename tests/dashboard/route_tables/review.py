"""Route-access rows for the review area: gallery, asset page, comparison, re-render, review
queue, decisions, bulk approval, exports, and the assets / reviews / exports API.

Targets: a campaign every role's user is a member of, with two assets rendered on the tiny model
(64x64, 2 steps) through the worker's code path; the first is approved so that an export has
something to send. The forms are chosen to change nothing: a request for changes without a
comment, an empty re-render, an empty bulk selection (each answers 400 to the roles allowed).
"""

from __future__ import annotations

from sqlalchemy import select

from farm.campaigns.service import add_member, create_campaign_as
from farm.db.models import ROLES, Render
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, submit_batch
from farm.review.service import decide
from farm.templates.service import create_campaign_template
from tests.dashboard.route_tables import Route
from tests.fixtures.assets import AssetMaker

ASSET = "/assets/{review_asset_id}"
API_ASSET = "/api/v1/assets/{review_asset_id}"

ROUTES = [
    Route("/gallery/", "GET", "/gallery/?campaign_id={review_campaign_id}", "campaigns.view"),
    Route("/assets/<int:asset_id>", "GET", ASSET, "campaigns.view"),
    Route("/assets/compare", "GET", "/assets/compare?a={review_asset_id}&b={review_other_asset_id}",
          "campaigns.view"),
    Route("/assets/<int:asset_id>/rerender", "POST", ASSET + "/rerender", "review.decide"),
    Route("/review/", "GET", "/review/?campaign_id={review_campaign_id}", "review.decide"),
    Route("/review/assets/<int:asset_id>", "POST", "/review/assets/{review_other_asset_id}", "review.decide",
          {"decision": "request_changes", "comment": ""}),
    Route("/review/bulk-approve", "POST", "/review/bulk-approve", "review.decide"),
    Route("/exports/", "GET", "/exports/", "exports.create"),
    Route("/exports/campaigns/<int:campaign_id>", "POST", "/exports/campaigns/{review_campaign_id}",
          "exports.create"),
    Route("/api/v1/assets", "GET", "/api/v1/assets?campaign_id={review_campaign_id}", "campaigns.view"),
    Route("/api/v1/assets/<int:asset_id>", "GET", API_ASSET, "campaigns.view"),
    Route("/api/v1/assets/<int:asset_id>/image", "GET", API_ASSET + "/image", "campaigns.view"),
    Route("/api/v1/assets/<int:asset_id>/thumbnail", "GET", API_ASSET + "/thumbnail", "campaigns.view"),
    Route("/api/v1/assets/compare", "GET", "/api/v1/assets/compare?a={review_asset_id}&b={review_other_asset_id}",
          "campaigns.view"),
    Route("/api/v1/assets/<int:asset_id>/rerender", "POST", API_ASSET + "/rerender", "review.decide"),
    Route("/api/v1/assets/<int:asset_id>/reviews", "POST", API_ASSET + "/reviews", "review.decide"),
    Route("/api/v1/reviews/bulk-approve", "POST", "/api/v1/reviews/bulk-approve", "review.decide"),
    Route("/api/v1/campaigns/<int:campaign_id>/export", "POST", "/api/v1/campaigns/{review_campaign_id}/export",
          "exports.create"),
]


def targets(farm, role_users) -> dict:
    owner = role_users["campaign_manager"]
    with transaction(farm.session_factory) as session:
        campaign_id = create_campaign_as(session, owner, name="Review access", brand="Acme").id
        for role in ROLES:
            if role_users[role].id != owner.id:
                add_member(session, owner, campaign_id, role_users[role].id)
        version_id = create_campaign_template(
            session, owner, campaign_id, name="review-access", body="{{ product }} on a table",
            variables=["product"], default_params={"model": "tiny-sd", "steps": 2, "width": 64, "height": 64}).id
    job_id = submit_batch(farm, owner, BatchRequest(
        campaign_id=campaign_id, template_version_id=version_id, rows=[{"product": "a cup"}], seeds=[1, 2],
        formats=[])).job_id
    with transaction(farm.session_factory) as session:
        render_ids = list(session.scalars(select(Render.id).where(Render.job_id == job_id).order_by(Render.index)))
    first, second = AssetMaker(farm).run(render_ids)
    with transaction(farm.session_factory) as session:
        decide(session, owner, first, "approve")
    return {"review_campaign_id": campaign_id, "review_asset_id": first, "review_other_asset_id": second}
