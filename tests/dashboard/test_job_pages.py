"""The jobs pages with the Flask test client: the list (filters, paging, bad input), a job's page
(header, renders, controls), pause / resume / cancel (CSRF, permissions, wrong status), the JSON
progress and the event stream (in process; tests/integration/test_job_events_live.py runs it under
the real servers)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from farm.db.base import utcnow
from farm.db.models import Job, Render
from farm.db.session import transaction
from farm.jobs import progress as progress_module
from farm.jobs.control import cancel_job
from tests.dashboard.conftest import add_user, csrf_token, farm_of, make_app, sign_in
from tests.dashboard.job_helpers import make_campaign, render, render_ids, submit, worker


@dataclass
class Setup:
    farm: object
    manager: object
    reviewer: object
    outsider: object
    campaign_id: int
    version_id: int
    job_id: int


@pytest.fixture
def setup(app) -> Setup:
    farm = farm_of(app.test_client())
    manager = add_user(farm, "campaign_manager", name="ana")
    reviewer = add_user(farm, "reviewer", name="rey")
    outsider = add_user(farm, "campaign_manager", name="bo")
    campaign_id, version_id = make_campaign(farm, manager, name="Spring launch", members=[reviewer])
    job_id = submit(farm, manager, campaign_id, version_id, name="Hero shots", priority=7)
    return Setup(farm, manager, reviewer, outsider, campaign_id, version_id, job_id)


def _client(app, user):
    client = app.test_client()
    assert sign_in(client, user.name).status_code == 302
    return client


def _status(farm, job_id) -> str:
    with transaction(farm.session_factory) as session:
        return session.get(Job, job_id).status


def _events(body: str) -> list[dict]:
    """The `progress` events of an event-stream body, parsed."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if fields.get("event") == "progress":
            events.append({"id": fields["id"], **json.loads(fields["data"])})
    return events


# -- the jobs list ----------------------------------------------------------------------------

def test_the_list_shows_visible_jobs_with_progress(app, setup):
    render(worker(setup.farm), render_ids(setup.farm, setup.job_id)[:1])
    page = _client(app, setup.reviewer).get("/jobs/")
    assert page.status_code == 200
    html = page.text
    assert f'href="/jobs/{setup.job_id}"' in html and "Hero shots" in html and "Spring launch" in html
    assert 'aria-valuenow="33" aria-valuetext="33.3%"' in html and "1 / 3 renders" in html
    assert '<span class="badge state-running">running</span>' in html
    assert ">ana<" in html and "<td>7</td>" in html
    assert 'href="/static/jobs.css"' in html and '<label for="filter-status">' in html
    assert f'href="/jobs/{setup.job_id}"' not in _client(app, setup.outsider).get("/jobs/").text


def test_the_list_filters_by_campaign_and_status_and_pages(app, setup, monkeypatch):
    other_campaign, other_version = make_campaign(setup.farm, setup.manager, name="Autumn")
    others = [submit(setup.farm, setup.manager, other_campaign, other_version, products=["a hat"]) for _ in range(3)]
    with transaction(setup.farm.session_factory) as session:
        cancel_job(session, others[0])
    client = _client(app, setup.manager)

    def listed(url):
        page = client.get(url)
        assert page.status_code == 200, page.text
        return [int(i) for i in re.findall(r'<tr data-job-id="(\d+)"', page.text)], page.text

    assert listed("/jobs/")[0] == [*others[::-1], setup.job_id]
    assert listed(f"/jobs/?campaign_id={setup.campaign_id}")[0] == [setup.job_id]
    assert listed("/jobs/?status=cancelled")[0] == [others[0]]
    ids, html = listed(f"/jobs/?campaign_id={other_campaign}&status=queued")
    assert ids == others[:0:-1]
    assert f'<option value="{other_campaign}" selected>Autumn</option>' in html
    assert listed("/jobs/?status=failed")[0] == [] and "match these filters" in listed("/jobs/?status=failed")[1]

    monkeypatch.setattr(progress_module, "JOBS_PAGE_SIZE", 2)
    ids, html = listed("/jobs/")
    assert ids == [others[2], others[1]]
    older = re.search(r'href="(/jobs/\?before=\d+)" rel="next"', html).group(1)
    ids, html = listed(older)
    assert ids == [others[0], setup.job_id] and "Newest" in html and 'rel="next"' not in html


BAD_FILTERS = [
    ("status=done", "status", "must be one of"),
    ("campaign_id=abc", "campaign_id", "must be a whole number"),
    ("campaign_id=0", "campaign_id", "must be at least 1"),
    ("campaign_id=99999", "campaign_id", "no campaign 99999 that you can see"),
    ("before=-3", "before", "must be at least 1"),
]


def test_bad_filters_are_shown_at_their_field(app, setup):
    client = _client(app, setup.manager)
    for query, field, message in BAD_FILTERS:
        page = client.get(f"/jobs/?{query}")
        assert page.status_code == 400, query
        assert re.search(rf'<span class="field-error"[^>]*role="alert">{field}: [^<]*{message}', page.text), query
    kept = client.get("/jobs/?status=done").text
    assert '<option value="done" selected>done</option>' in kept  # the value is kept


def test_a_campaign_the_user_cannot_see_is_no_filter(app, setup):
    page = _client(app, setup.outsider).get(f"/jobs/?campaign_id={setup.campaign_id}")
    assert page.status_code == 400 and "Spring launch" not in page.text


# -- a job's page -----------------------------------------------------------------------------

def test_the_job_page_shows_the_job_its_renders_and_why_it_waits(app, setup):
    first = render_ids(setup.farm, setup.job_id)[0]
    render(worker(setup.farm), [first])
    with transaction(setup.farm.session_factory) as session:
        session.execute(update(Render).where(Render.job_id == setup.job_id, Render.index == 2)
                        .values(error="RuntimeError: CUDA out of memory", attempts=1))
    page = _client(app, setup.manager).get(f"/jobs/{setup.job_id}")
    assert page.status_code == 200
    html = page.text
    for expected in ("Hero shots", "Spring launch", "hero", "v1", "tiny-sd", "Apache-2.0", "Priority",
                     'data-testid="job-status">running<', "1 / 3 renders finished · 33.3%",
                     'data-count-state="succeeded">succeeded <b>1</b>', 'data-count-state="queued">queued <b>2</b>',
                     "no live worker serves queue &#39;sd1&#39;", "RuntimeError: CUDA out of memory",
                     'src="/static/jobs.js"', f'data-events-url="/jobs/{setup.job_id}/events"'):
        assert expected in html, expected
    assert re.search(r'data-testid="job-progress"[^>]*aria-valuenow="33" aria-valuetext="33.3%"', html)
    rows = re.findall(r'<tr data-render-id="(\d+)" data-state="(\w+)"', html)
    assert [state for _, state in rows] == ["succeeded", "queued", "queued"]
    assert "a cup on a wooden table" in html and "<td>1</td>" in html  # prompt and seed
    thumbnail = re.search(r'<a href="([^"]+)"><img src="(/objects/thumbnails/[^"]+)"', html)
    assert thumbnail, "the finished render links its thumbnail"
    asset_page = "assets.view" in app.view_functions
    assert thumbnail.group(1).startswith("/assets/" if asset_page else "/objects/images/")
    assert client_get_ok(app, setup.manager, thumbnail.group(2))
    # The controls a running job offers: pause and cancel shown, resume hidden.
    assert re.search(r'data-control="pause"\s+data-statuses="queued running">', html)
    assert re.search(r'data-control="resume"\s+data-statuses="paused" hidden>', html)


def client_get_ok(app, user, url) -> bool:
    return _client(app, user).get(url).status_code == 200


def test_the_renders_table_is_paged(app, setup, monkeypatch):
    monkeypatch.setattr(progress_module, "RENDERS_PAGE_SIZE", 2)
    client = _client(app, setup.manager)
    first = client.get(f"/jobs/{setup.job_id}").text
    assert len(re.findall(r'data-testid="render-row"', first)) == 2
    assert f'href="/jobs/{setup.job_id}?after=1" rel="next"' in first
    second = client.get(f"/jobs/{setup.job_id}?after=1").text
    assert len(re.findall(r'data-testid="render-row"', second)) == 1 and "First renders" in second
    bad = client.get(f"/jobs/{setup.job_id}?after=x")
    assert bad.status_code == 400 and "after: must be a whole number" in bad.text


def test_reviewers_see_no_controls(app, setup):
    html = _client(app, setup.reviewer).get(f"/jobs/{setup.job_id}").text
    assert 'data-testid="job-controls"' not in html and "Hero shots" in html


def test_a_job_of_a_campaign_one_cannot_see_is_not_found(app, setup):
    client = _client(app, setup.outsider)
    for path in ("", "/progress.json", "/events"):
        assert client.get(f"/jobs/{setup.job_id}{path}").status_code == 404, path
        assert client.get(f"/jobs/999999{path}").status_code == 404, path


def test_controlling_a_job_one_cannot_see_is_not_found_and_changes_nothing(app, setup):
    client = _client(app, setup.outsider)
    response = client.post(f"/jobs/{setup.job_id}/cancel", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 404
    assert _status(setup.farm, setup.job_id) == "queued"


# -- pause / resume / cancel ------------------------------------------------------------------

def test_pause_resume_cancel_through_the_forms(app, setup):
    client = _client(app, setup.manager)
    token = csrf_token(client)
    paused = client.post(f"/jobs/{setup.job_id}/pause", data={"csrf_token": token})
    assert paused.status_code == 303 and paused.headers["Location"] == f"/jobs/{setup.job_id}"
    assert _status(setup.farm, setup.job_id) == "paused"
    page = client.get(f"/jobs/{setup.job_id}").text
    assert f"Job {setup.job_id} paused; it is paused now." in page and "the job is paused" in page
    assert re.search(r'data-control="resume"\s+data-statuses="paused">', page)

    assert client.post(f"/jobs/{setup.job_id}/resume", data={"csrf_token": token}).status_code == 303
    assert _status(setup.farm, setup.job_id) == "queued"
    assert client.post(f"/jobs/{setup.job_id}/cancel", data={"csrf_token": token}).status_code == 303
    assert _status(setup.farm, setup.job_id) == "cancelled"
    with transaction(setup.farm.session_factory) as session:
        states = session.scalars(select(Render.state).where(Render.job_id == setup.job_id)).all()
    assert states == ["cancelled"] * 3

    again = client.post(f"/jobs/{setup.job_id}/cancel", data={"csrf_token": token})
    assert again.status_code == 400
    assert re.search(r'<p class="error" role="alert">job_id: job \d+ is cancelled already</p>', again.text)
    assert 'data-testid="job-progress"' in again.text  # the job's page, with the error at the controls


def test_a_control_without_the_csrf_token_changes_nothing(app, setup):
    client = _client(app, setup.manager)
    for action in ("pause", "resume", "cancel"):
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(f"/jobs/{setup.job_id}/{action}", data=data)
            assert response.status_code == 400 and "This form is stale" in response.text, action
    assert _status(setup.farm, setup.job_id) == "queued"


def test_roles_without_jobs_control_are_refused(app, setup):
    client = _client(app, setup.reviewer)
    response = client.post(f"/jobs/{setup.job_id}/pause", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 403
    assert _status(setup.farm, setup.job_id) == "queued"


# -- live progress ----------------------------------------------------------------------------

def test_progress_json_sends_every_render_then_only_changes(app, setup):
    client = _client(app, setup.manager)
    full = client.get(f"/jobs/{setup.job_id}/progress.json")
    assert full.status_code == 200 and full.headers["Cache-Control"] == "no-store"
    assert [r["index"] for r in full.json["renders"]] == [0, 1, 2]
    assert full.json["job"]["percent"] == 0 and full.json["job"]["done"] is False
    assert full.json["job"]["counts"]["queued"] == 3
    cursor = full.json["cursor"]
    assert client.get(f"/jobs/{setup.job_id}/progress.json?since={cursor}").json["renders"] == []

    first = render_ids(setup.farm, setup.job_id)[0]
    render(worker(setup.farm), [first])
    changed = client.get(f"/jobs/{setup.job_id}/progress.json", query_string={"since": cursor}).json
    assert [(r["id"], r["state"], r["percent"]) for r in changed["renders"]] == [(first, "succeeded", 100.0)]
    assert changed["renders"][0]["thumbnail_url"].startswith("/objects/thumbnails/")
    assert changed["job"]["finished"] == 1 and changed["job"]["percent"] == pytest.approx(33.3)

    bad = client.get(f"/jobs/{setup.job_id}/progress.json?since=yesterday")
    assert bad.status_code == 400 and "since: is not a progress cursor" in bad.text


def test_the_page_cursor_lets_the_live_view_continue_from_what_the_page_showed(app, setup):
    client = _client(app, setup.manager)
    cursor = re.search(r'data-cursor="([^"]+)"', client.get(f"/jobs/{setup.job_id}").text).group(1)
    assert client.get(f"/jobs/{setup.job_id}/progress.json?since={cursor}").json["renders"] == []


def test_the_stream_of_a_finished_job_is_one_event(app, setup):
    with transaction(setup.farm.session_factory) as session:
        cancel_job(session, setup.job_id)
    response = _client(app, setup.manager).get(f"/jobs/{setup.job_id}/events")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Accel-Buffering"] == "no"
    assert response.text.startswith("retry: 2000\n\n")
    (event,) = _events(response.text)
    assert event["job"]["done"] is True and event["job"]["percent"] == 100
    assert sorted(r["state"] for r in event["renders"]) == ["cancelled"] * 3
    assert event["id"] == event["cursor"]


@pytest.fixture
def fast_stream_app(embedded_farm):
    return make_app(embedded_farm, JOB_EVENTS_POLL_SECONDS=0.02, JOB_EVENTS_HEARTBEAT_SECONDS=0.05,
                    JOB_EVENT_STREAMS=1)


def test_the_stream_sends_changes_as_they_happen_and_ends_when_the_job_is_done(fast_stream_app):
    app = fast_stream_app
    farm = farm_of(app.test_client())
    manager = add_user(farm, "campaign_manager", name="ana")
    campaign_id, version_id = make_campaign(farm, manager)
    job_id = submit(farm, manager, campaign_id, version_id)
    ids = render_ids(farm, job_id)
    ctx = worker(farm)
    client = _client(app, manager)

    response = client.get(f"/jobs/{job_id}/events", buffered=False)
    assert response.status_code == 200
    chunks = iter(response.response)
    opening = next(chunks).decode()
    (first,) = _events(opening)
    assert [r["state"] for r in first["renders"]] == ["queued"] * 3  # no cursor: every render
    seen = [first]
    for render_id in ids:
        render(ctx, [render_id])
        while True:  # until the event that carries this render (heartbeats in between)
            chunk = next(chunks).decode()
            events = _events(chunk)
            seen += events
            if any(r["id"] == render_id for e in events for r in e["renders"]):
                break
    assert list(chunks) == []  # the stream ended after the job's last render
    response.close()
    assert [e["job"]["finished"] for e in seen] == [0, 1, 2, 3]
    assert [[r["id"] for r in e["renders"]] for e in seen[1:]] == [[i] for i in ids]  # only what changed
    assert seen[-1]["job"]["done"] is True and seen[-1]["job"]["percent"] == 100
    assert seen[-1]["job"]["status"] == "succeeded"

    # A reconnecting EventSource sends the id of the last event it got and continues from there:
    # the renders finished since. (Renders changed within CHANGE_OVERLAP before it would come
    # again, harmlessly; render 0 is moved out of that window to show the cut.)
    long_ago = utcnow() - timedelta(hours=1)
    with transaction(farm.session_factory) as session:
        session.execute(update(Render).where(Render.id == ids[0]).values(started_at=long_ago, finished_at=long_ago))
    again = client.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": seen[1]["id"]})
    (resumed,) = _events(again.text)
    assert sorted(r["id"] for r in resumed["renders"]) == ids[1:]


def test_a_quiet_stream_sends_heartbeats(fast_stream_app):
    app = fast_stream_app
    farm = farm_of(app.test_client())
    manager = add_user(farm, "campaign_manager", name="ana")
    job_id = submit(farm, manager, *make_campaign(farm, manager))
    response = _client(app, manager).get(f"/jobs/{job_id}/events", buffered=False)
    chunks = iter(response.response)
    assert _events(next(chunks).decode())[0]["job"]["done"] is False
    assert next(chunks).decode() == ": keep-alive\n\n"  # nothing changed within the heartbeat interval
    response.close()


def test_streams_beyond_the_limit_are_refused_so_the_page_polls(fast_stream_app):
    app = fast_stream_app  # JOB_EVENT_STREAMS=1
    farm = farm_of(app.test_client())
    manager = add_user(farm, "campaign_manager", name="ana")
    campaign_id, version_id = make_campaign(farm, manager)
    job_id = submit(farm, manager, campaign_id, version_id)
    client = _client(app, manager)
    holding = client.get(f"/jobs/{job_id}/events", buffered=False)
    assert holding.status_code == 200
    refused = client.get(f"/jobs/{job_id}/events", buffered=False)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert client.get(f"/jobs/{job_id}/progress.json").status_code == 200  # the fallback still answers
    holding.close()  # the client went away, before the body was read at all: its slot is free again
    again = client.get(f"/jobs/{job_id}/events", buffered=False)
    assert again.status_code == 200
    again.close()
