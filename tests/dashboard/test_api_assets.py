"""The assets, reviews and exports API: listing with filters and cursors, one asset, images,
comparison, decisions, bulk approval (all or nothing), re-render with changes and the campaign
ZIP. Every response is checked against its declared schema (CHECK_API_RESPONSES)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from sqlalchemy import func, select

from farm.db.models import Asset, Job, Render, Review
from farm.db.session import transaction
from farm.review.service import decide
from tests.dashboard.review_world import world  # noqa: F401


def _count(world, model) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count()).select_from(model))


def get(world, role, url):
    return world.app.test_client().get(url, headers=world.api(role))


def post(world, role, url, body):
    return world.app.test_client().post(url, json=body, headers=world.api(role))


@pytest.fixture(scope="module")
def listed(world):
    campaign = world.campaign("API listing", formats=["linkedin"])
    square = world.assets(2, campaign)
    linkedin = world.assets(2, campaign, formats=["linkedin"])
    with transaction(world.farm.session_factory) as session:
        decide(session, world.users["admin"], linkedin[0], "approve")
    return campaign, square, linkedin


@pytest.fixture(scope="module")
def untouched(world):
    """An asset and a hidden one for the tests whose requests are refused: they stay as they are."""
    (asset_id,) = world.assets(1)
    (hidden,) = world.assets(1, world.hidden_campaign_id)
    yield asset_id, hidden
    assert world.state(asset_id) == world.state(hidden) == "pending"


def test_list_filters_and_pages_by_cursor(world, listed):
    campaign, square, linkedin = listed
    everything = sorted(square + linkedin, reverse=True)
    body = get(world, "reviewer", f"/api/v1/assets?campaign_id={campaign}").json
    assert [item["id"] for item in body["items"]] == everything and body["has_more"] is False
    item = body["items"][0]
    assert item["campaign_id"] == campaign and item["model_name"] == "tiny-sd" and item["caption"]
    assert item["image_url"] == f"/api/v1/assets/{item['id']}/image"
    seen, before = [], None
    while True:
        url = f"/api/v1/assets?campaign_id={campaign}&limit=3" + (f"&before={before}" if before else "")
        page = get(world, "reviewer", url).json
        seen += [i["id"] for i in page["items"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        before = page["next_cursor"]
    assert seen == everything
    newer = get(world, "reviewer", f"/api/v1/assets?campaign_id={campaign}&limit=3&after={everything[3]}").json
    assert [i["id"] for i in newer["items"]] == everything[:3]
    approved = get(world, "reviewer", f"/api/v1/assets?campaign_id={campaign}&approval_state=approved").json
    assert [i["id"] for i in approved["items"]] == [linkedin[0]]
    formats = get(world, "reviewer", f"/api/v1/assets?campaign_id={campaign}&channel_format=linkedin").json
    assert {i["id"] for i in formats["items"]} == set(linkedin)


@pytest.mark.parametrize("query, field", [
    ("approval_state=great", "approval_state"),
    ("campaign_id=abc", "campaign_id"),
    ("job_id=0", "job_id"),
    ("limit=201", "limit"),
    ("before=-1", "before"),
])
def test_list_bad_input_names_the_field(world, query, field):
    response = get(world, "reviewer", f"/api/v1/assets?{query}")
    assert response.status_code == 400 and response.json["error"]["field"] == field


def test_hidden_campaigns_are_not_found_or_left_out(world, listed, untouched):
    _, hidden = untouched
    assert get(world, "reviewer", f"/api/v1/assets?campaign_id={world.hidden_campaign_id}").status_code == 404
    ids = [i["id"] for i in get(world, "reviewer", "/api/v1/assets?limit=200").json["items"]]
    assert hidden not in ids and ids
    assert get(world, "reviewer", f"/api/v1/assets/{hidden}").status_code == 404
    assert get(world, "reviewer", f"/api/v1/assets/{hidden}/image").status_code == 404
    assert get(world, "admin", f"/api/v1/assets/{hidden}").status_code == 200


def test_detail_has_params_provenance_reviews_versions_and_images(world, listed):
    _, _, linkedin = listed
    body = get(world, "auditor", f"/api/v1/assets/{linkedin[0]}").json
    assert body["id"] == linkedin[0] and body["approval_state"] == "approved" and body["channel_format"] == "linkedin"
    assert body["params"]["steps"] == 2 and body["params"]["format"] == "linkedin"
    provenance = body["provenance"]
    assert provenance["model_name"] == "tiny-sd" and len(provenance["model_sha256"]) == 64
    assert provenance["model_short_hash"] == provenance["model_sha256"][:10]
    assert provenance["license_identifier"] == "Apache-2.0" and provenance["rendered_by"] == "test-worker"
    assert provenance["template_name"] == "product shot" and provenance["template_version"] == 1
    assert [(r["reviewer"], r["decision"]) for r in body["reviews"]] == [("admin-review", "approve")]
    assert [(v["asset_id"], v["version"], v["is_requested"]) for v in body["versions"]] == [(linkedin[0], 1, True)]
    image = get(world, "auditor", body["image_url"])
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data[:8] == b"\x89PNG\r\n\x1a\n"
    with transaction(world.farm.session_factory) as session:
        assert image.data == world.farm.storage.get(session.get(Asset, linkedin[0]).storage_key)
    thumbnail = get(world, "auditor", body["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/webp"


def test_decisions_are_recorded_with_the_token_user(world):
    a, b = world.assets(2)
    response = post(world, "reviewer", f"/api/v1/assets/{a}/reviews", {"decision": "request_changes",
                                                                       "comment": "brighter"})
    assert response.status_code == 201
    body = response.json
    assert (body["asset_id"], body["decision"], body["comment"], body["approval_state"]) == (
        a, "request_changes", "brighter", "changes_requested")
    assert body["reviewer"] == "reviewer-review" and body["reviewer_id"] == world.users["reviewer"].id
    assert world.state(a) == "changes_requested"
    assert post(world, "campaign_manager", f"/api/v1/assets/{b}/reviews", {"decision": "approve"}).status_code == 201
    assert world.state(b) == "approved"


@pytest.mark.parametrize("body, field", [
    ({"decision": "request_changes"}, "comment"),
    ({"decision": "request_changes", "comment": "  "}, "comment"),
    ({"decision": "approved"}, "decision"),
    ({}, "decision"),
    ({"decision": "approve", "comment": 5}, "comment"),
    ({"decision": "approve", "extra": 1}, "extra"),
])
def test_bad_decisions_name_the_field_and_change_nothing(world, untouched, body, field):
    asset_id, _ = untouched
    reviews = _count(world, Review)
    response = post(world, "reviewer", f"/api/v1/assets/{asset_id}/reviews", body)
    assert response.status_code == 400 and response.json["error"]["field"] == field
    assert _count(world, Review) == reviews and world.state(asset_id) == "pending"


def test_decision_refusals(world, untouched):
    asset_id, hidden = untouched
    assert post(world, "ops", f"/api/v1/assets/{asset_id}/reviews", {"decision": "approve"}).status_code == 403
    assert post(world, "auditor", f"/api/v1/assets/{asset_id}/reviews", {"decision": "approve"}).status_code == 403
    assert post(world, "reviewer", f"/api/v1/assets/{hidden}/reviews", {"decision": "approve"}).status_code == 404
    anonymous = world.app.test_client().post(f"/api/v1/assets/{asset_id}/reviews", json={"decision": "approve"})
    assert anonymous.status_code == 401
    assert world.state(asset_id) == "pending" and world.state(hidden) == "pending"


def test_bulk_approve_all_or_nothing(world, untouched):
    ids = world.assets(3)
    _, hidden = untouched
    reviews = _count(world, Review)
    for asset_ids in ([*ids, hidden], [*ids, 999999]):
        response = post(world, "reviewer", "/api/v1/reviews/bulk-approve", {"asset_ids": asset_ids})
        assert response.status_code == 400 and response.json["error"]["field"] == "asset_ids"
        assert "nothing was approved" in response.json["error"]["message"]
    for body, field in [({"asset_ids": []}, "asset_ids"), ({"asset_ids": ["1"]}, "asset_ids[0]"), ({}, "asset_ids"),
                        ({"asset_ids": ids, "comment": 3}, "comment")]:
        response = post(world, "reviewer", "/api/v1/reviews/bulk-approve", body)
        assert response.status_code == 400 and response.json["error"]["field"] == field
    assert _count(world, Review) == reviews and all(world.state(i) == "pending" for i in ids)
    assert post(world, "ops", "/api/v1/reviews/bulk-approve", {"asset_ids": ids}).status_code == 403
    done = post(world, "reviewer", "/api/v1/reviews/bulk-approve", {"asset_ids": ids + ids[:1], "comment": "ok"})
    assert done.status_code == 201 and done.json["approved"] == 3
    assert [r["asset_id"] for r in done.json["reviews"]] == ids
    assert all(world.state(i) == "approved" for i in ids)


def test_rerender_makes_a_linked_job_once_per_submission_key(world):
    (source,) = world.assets(1)
    jobs = _count(world, Job)
    body = {"changes": {"seed": 99, "prompt": "shoe on sand, dusk"}, "submission_key": "api-key-1"}
    first = post(world, "reviewer", f"/api/v1/assets/{source}/rerender", body)
    again = post(world, "reviewer", f"/api/v1/assets/{source}/rerender", body)
    assert first.status_code == again.status_code == 201
    assert first.json == again.json and first.json["parent_asset_id"] == source
    assert _count(world, Job) == jobs + 1
    with transaction(world.farm.session_factory) as session:
        render = session.scalars(select(Render).where(Render.job_id == first.json["job_id"])).one()
        assert render.parent_asset_id == source and render.params["seed"] == 99
    (child,) = world.maker.run([render.id])
    versions = get(world, "reviewer", f"/api/v1/assets/{child}").json["versions"]
    assert [(v["asset_id"], v["version"]) for v in versions] == [(source, 1), (child, 2)]
    compared = get(world, "reviewer", f"/api/v1/assets/compare?a={source}&b={child}").json
    assert compared["differences"] == ["prompt", "seed"]
    rows = {row["name"]: row for row in compared["rows"]}
    assert (rows["seed"]["a"], rows["seed"]["b"], rows["seed"]["differs"]) == (1, 99, True)
    assert compared["a"]["asset_id"] == source and compared["b"]["version"] == 2


@pytest.mark.parametrize("body, field", [
    ({"changes": {"steps": 0}}, "changes.steps"),
    ({"changes": {"sampler": "Euler z"}}, "changes.sampler"),
    ({"changes": {"width": 128}}, "changes.width"),
    ({"changes": {}}, "changes"),
    ({"changes": {"seed": 1}}, "changes"),  # the same as the source
    ({"changes": "seed=2"}, "changes"),
    ({}, "changes"),
    ({"changes": {"seed": 2}, "submission_key": ""}, "submission_key"),
    ({"changes": {"seed": 2}, "priority": 11}, "priority"),
])
def test_bad_rerender_names_the_field_and_writes_nothing(world, untouched, body, field):
    source, _ = untouched
    jobs = _count(world, Job)
    response = post(world, "reviewer", f"/api/v1/assets/{source}/rerender", body)
    assert response.status_code == 400 and response.json["error"]["field"] == field, response.json
    assert _count(world, Job) == jobs


def test_rerender_refusals(world, untouched):
    source, hidden = untouched
    jobs = _count(world, Job)
    assert post(world, "ops", f"/api/v1/assets/{source}/rerender", {"changes": {"seed": 5}}).status_code == 403
    assert post(world, "reviewer", f"/api/v1/assets/{hidden}/rerender", {"changes": {"seed": 5}}).status_code == 404
    assert _count(world, Job) == jobs


@pytest.mark.parametrize("query, field", [("a=1", "b"), ("b=1", "a"), ("a=x&b=1", "a")])
def test_compare_bad_input(world, listed, query, field):
    response = get(world, "reviewer", f"/api/v1/assets/compare?{query}")
    assert response.status_code == 400 and response.json["error"]["field"] == field


def test_export_answers_the_zip(world, listed):
    campaign, _, linkedin = listed
    response = post(world, "campaign_manager", f"/api/v1/campaigns/{campaign}/export", None)
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert "attachment; filename=API-listing-" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    manifest = json.loads(archive.read("manifest.json"))
    assert [row["asset_id"] for row in manifest["assets"]] == [linkedin[0]]
    assert archive.read(manifest["assets"][0]["file"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "manifest.csv" in archive.namelist()


def test_export_refusals(world):
    campaign = world.campaign("API nothing approved")
    world.assets(1, campaign)
    empty = post(world, "campaign_manager", f"/api/v1/campaigns/{campaign}/export", None)
    assert empty.status_code == 400 and empty.json["error"]["field"] == "campaign"
    assert "no approved assets" in empty.json["error"]["message"]
    assert post(world, "reviewer", f"/api/v1/campaigns/{campaign}/export", None).status_code == 403
    hidden = post(world, "campaign_manager", f"/api/v1/campaigns/{world.hidden_campaign_id}/export", None)
    assert hidden.status_code == 404 and hidden.json["error"]["message"]


def test_openapi_documents_the_file_answers(world):
    paths = world.app.test_client().get("/api/v1/openapi.json").json["paths"]
    export = paths["/api/v1/campaigns/{campaign_id}/export"]["post"]
    assert "application/zip" in export["responses"]["200"]["content"]
    assert export["x-permission"] == "exports.create"
    assert "image/png" in paths["/api/v1/assets/{asset_id}/image"]["get"]["responses"]["200"]["content"]
    assert paths["/api/v1/assets/{asset_id}/reviews"]["post"]["x-permission"] == "review.decide"
