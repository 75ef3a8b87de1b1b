"""Review through the pages: the pending queue, decisions (form and review.js's JSON), comment
required at the field, bulk approve all-or-nothing, visibility, permission and stale forms."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from farm.db.models import AuditEvent, Review
from farm.db.session import transaction
from tests.dashboard.conftest import csrf_token
from tests.dashboard.review_world import world  # noqa: F401

QUEUE_ITEM = re.compile(r'<li class="review-item" data-asset-id="(\d+)"')


def _reviews(world, asset_id=None) -> list[Review]:
    with transaction(world.farm.session_factory) as session:
        query = select(Review).order_by(Review.id)
        if asset_id is not None:
            query = query.where(Review.asset_id == asset_id)
        return list(session.scalars(query))


def _review_count(world) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count()).select_from(Review))


def _decide(client, asset_id, decision, comment="", **fields):
    return client.post(f"/review/assets/{asset_id}", data={"csrf_token": csrf_token(client), "decision": decision,
                                                          "comment": comment, **fields})


@pytest.fixture(scope="module")
def untouched(world):
    """An asset for the tests whose requests are refused: it stays pending."""
    (asset_id,) = world.assets(1)
    yield asset_id
    assert world.state(asset_id) == "pending"


def test_queue_lists_pending_assets_with_actions_shortcuts_and_selection(world):
    campaign = world.campaign("Queue campaign")
    ids = world.assets(3, campaign)
    client = world.client("reviewer")
    response = client.get(f"/review/?campaign_id={campaign}")
    assert response.status_code == 200
    page = response.text
    assert [int(i) for i in QUEUE_ITEM.findall(page)] == sorted(ids, reverse=True)
    for asset_id in ids:
        assert f'data-testid="approve-{asset_id}"' in page and f'data-testid="request-changes-{asset_id}"' in page
        assert f'id="select-{asset_id}"' in page and f'<label for="comment-{asset_id}">Comment</label>' in page
    assert 'data-testid="bulk-approve"' in page and "Approve selected" in page
    assert '<script src="/static/review.js"></script>' in page and 'id="shortcut-help"' in page
    assert "<kbd>A</kbd>" in page and "<kbd>?</kbd>" in page
    # A decided asset leaves the queue.
    assert _decide(client, ids[0], "reject", "off brand").status_code == 302
    assert ids[0] not in [int(i) for i in QUEUE_ITEM.findall(client.get(f"/review/?campaign_id={campaign}").text)]
    # Filtered by job.
    job_queue = client.get(f"/review/?job_id=999999").text
    assert "Nothing waiting for review" in job_queue


def test_the_queue_script_is_served(world):
    script = world.client("reviewer").get("/static/review.js")
    assert script.status_code == 200 and b"requestSubmit" in script.data and b"request_changes" in script.data
    script.close()


@pytest.mark.parametrize("decision, comment, state", [
    ("approve", "", "approved"),
    ("reject", "wrong colours", "rejected"),
    ("request_changes", "  make the shoe red  ", "changes_requested"),
])
def test_a_decision_is_recorded_with_reviewer_and_time_then_back_to_next(world, decision, comment, state):
    (asset_id,) = world.assets(1)
    client = world.client("reviewer")
    response = _decide(client, asset_id, decision, comment, next="/review/?campaign_id=1")
    assert response.status_code == 302 and response.headers["Location"] == "/review/?campaign_id=1"
    assert world.state(asset_id) == state
    (review,) = _reviews(world, asset_id)
    assert (review.reviewer_id, review.decision, review.comment) == (world.users["reviewer"].id, decision, comment.strip())
    assert review.created_at is not None
    history = client.get(f"/assets/{asset_id}").text.split('data-testid="review-history"')[1]
    assert "reviewer-review" in history and f'class="badge state-{state}"' in history


def test_decision_without_next_goes_back_to_the_asset_and_flashes(world):
    (asset_id,) = world.assets(1)
    client = world.client("campaign_manager")
    response = _decide(client, asset_id, "approve")
    assert response.headers["Location"] == f"/assets/{asset_id}"
    page = client.get(response.headers["Location"]).text
    assert f"Approved asset {asset_id}." in page
    assert 'data-testid="approval-state">approved<' in page


def test_an_outside_next_is_not_followed(world):
    (asset_id,) = world.assets(1)
    response = _decide(world.client("reviewer"), asset_id, "approve", next="https://evil.example/")
    assert response.headers["Location"] == "/"


def test_request_changes_without_a_comment_is_shown_at_the_field(world):
    (asset_id,) = world.assets(1)
    client = world.client("reviewer")
    before = _review_count(world)
    response = _decide(client, asset_id, "request_changes", "   ", next="/review/")
    assert response.status_code == 400
    page = response.text
    assert 'id="comment-error"' in page and "a comment is required to request changes" in page
    assert 'aria-invalid="true"' in page
    assert 'name="next" value="/review/"' in page  # the form keeps where to go after
    assert _review_count(world) == before and world.state(asset_id) == "pending"


@pytest.mark.parametrize("decision, comment, field", [
    ("approved", "", "decision"),
    ("", "", "decision"),
    ("approve", "x" * 2001, "comment"),
])
def test_other_bad_decisions_change_nothing(world, untouched, decision, comment, field):
    asset_id = untouched
    before = _review_count(world)
    response = _decide(world.client("reviewer"), asset_id, decision, comment)
    assert response.status_code == 400
    assert (f'id="{field}-error"' in response.text) or (f"{field}: " in response.text)
    assert _review_count(world) == before and world.state(asset_id) == "pending"


def test_review_js_gets_json_back(world):
    """What static/review.js does: the same form with Accept: application/json and X-CSRF-Token."""
    a, b = world.assets(2)
    client = world.client("reviewer")
    headers = {"Accept": "application/json", "X-CSRF-Token": csrf_token(client)}
    ok = client.post(f"/review/assets/{a}", data={"decision": "approve", "comment": "great"}, headers=headers)
    assert ok.status_code == 200 and ok.is_json
    assert ok.json["approval_state"] == "approved" and ok.json["reviewer"] == "reviewer-review"
    assert ok.json["asset_id"] == a and ok.json["comment"] == "great" and ok.json["created_at"]
    refused = client.post(f"/review/assets/{b}", data={"decision": "request_changes"}, headers=headers)
    assert refused.status_code == 400
    assert refused.json["error"]["field"] == "comment" and "comment is required" in refused.json["error"]["message"]
    assert world.state(b) == "pending"
    # Without the CSRF header, fetch() is refused like any stale form.
    stale = client.post(f"/review/assets/{b}", data={"decision": "approve"}, headers={"Accept": "application/json"})
    assert stale.status_code == 400 and world.state(b) == "pending"


def test_an_asset_of_an_invisible_campaign_is_not_found(world):
    (hidden,) = world.assets(1, world.hidden_campaign_id)
    before = _review_count(world)
    for role in ("reviewer", "campaign_manager", "outsider"):
        assert _decide(world.client(role), hidden, "approve").status_code == 404
    assert _review_count(world) == before and world.state(hidden) == "pending"
    assert _decide(world.client("admin"), hidden, "approve").status_code == 302


@pytest.mark.parametrize("role", ["ops", "auditor"])
def test_roles_without_review_decide_are_refused(world, untouched, role):
    asset_id = untouched
    client = world.client(role)
    assert _decide(client, asset_id, "approve").status_code == 403
    assert client.get("/review/").status_code == 403
    bulk = client.post("/review/bulk-approve", data={"csrf_token": csrf_token(client), "asset_ids": [asset_id]})
    assert bulk.status_code == 403
    assert world.state(asset_id) == "pending" and _reviews(world, asset_id) == []


def test_a_stale_form_changes_nothing(world, untouched):
    asset_id = untouched
    client = world.client("reviewer")
    for token in ("", "not-the-token"):
        response = client.post(f"/review/assets/{asset_id}", data={"csrf_token": token, "decision": "approve"})
        assert response.status_code == 400 and "stale" in response.text
        bulk = client.post("/review/bulk-approve", data={"csrf_token": token, "asset_ids": [asset_id]})
        assert bulk.status_code == 400
    # A form from another session is stale in this one.
    other = world.fresh_client("reviewer")
    response = client.post(f"/review/assets/{asset_id}", data={"csrf_token": csrf_token(other), "decision": "approve"})
    assert response.status_code == 400
    assert world.state(asset_id) == "pending" and _reviews(world, asset_id) == []


def test_bulk_approve_approves_every_selected_asset(world):
    campaign = world.campaign("Bulk campaign")
    ids = world.assets(3, campaign)
    client = world.client("reviewer")
    response = client.post(f"/review/bulk-approve?campaign_id={campaign}",
                           data={"csrf_token": csrf_token(client), "asset_ids": [str(i) for i in ids[:2]],
                                 "next": f"/review/?campaign_id={campaign}"})
    assert response.status_code == 302 and response.headers["Location"] == f"/review/?campaign_id={campaign}"
    assert [world.state(i) for i in ids] == ["approved", "approved", "pending"]
    page = client.get(response.headers["Location"]).text
    assert "Approved 2 assets." in page
    assert [int(i) for i in QUEUE_ITEM.findall(page)] == [ids[2]]
    with transaction(world.farm.session_factory) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "asset.reviewed",
                                                          AuditEvent.entity_id.in_([str(i) for i in ids]))).all()
    assert sorted(int(e.entity_id) for e in events) == sorted(ids[:2])


def test_bulk_approve_is_all_or_nothing_and_keeps_the_selection(world):
    campaign = world.campaign("Bulk refused")
    ids = world.assets(2, campaign)
    (hidden,) = world.assets(1, world.hidden_campaign_id)
    client = world.client("reviewer")
    before = _review_count(world)
    for selection in ([*map(str, ids), str(hidden)], [*map(str, ids), "999999"], [*map(str, ids), "seven"], []):
        response = client.post(f"/review/bulk-approve?campaign_id={campaign}",
                               data={"csrf_token": csrf_token(client), "asset_ids": selection})
        assert response.status_code == 400, selection
        page = response.text
        assert 'data-testid="bulk-error"' in page
        assert "nothing was approved" in page or "choose at least one asset" in page or "must be an asset id" in page
        for asset_id in ids:
            checked = re.search(rf'id="select-{asset_id}"\s*(checked)?>', page)
            assert checked and bool(checked.group(1)) == (str(asset_id) in selection)
    assert _review_count(world) == before
    assert [world.state(i) for i in ids] == ["pending", "pending"] and world.state(hidden) == "pending"


def test_queue_with_bad_filters_names_the_field(world):
    response = world.client("reviewer").get("/review/?job_id=abc")
    assert response.status_code == 400 and 'id="job_id-error"' in response.text
    assert world.client("reviewer").get(f"/review/?campaign_id={world.hidden_campaign_id}").status_code == 404
