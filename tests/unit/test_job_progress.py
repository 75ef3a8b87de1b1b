"""farm.jobs.progress and farm.jobs.commands on the embedded farm: what the jobs pages and API
read, and live progress that returns only the renders that changed since a cursor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from farm.accounts.service import create_user
from farm.db.base import utcnow
from farm.db.models import RENDER_STATES, AuditEvent, Job, Render
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.jobs.commands import control_job
from farm.jobs.execution import Outcome
from farm.jobs.progress import (
    CHANGE_OVERLAP, Cursor, ProgressTracker, get_render, job_detail, list_jobs, list_renders, progress_for,
    read_progress,
)
from farm.jobs.reaper import reap_expired_leases
from tests.dashboard.job_helpers import make_campaign, render, render_ids, submit, worker


@pytest.fixture
def people(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        return {name: create_user(session, name=name, role=role) for name, role in
                (("ana", "campaign_manager"), ("rey", "reviewer"), ("bo", "campaign_manager"), ("ops", "ops"))}


@pytest.fixture
def job(embedded_farm, people):
    campaign_id, version_id = make_campaign(embedded_farm, people["ana"], members=[people["rey"]])
    return submit(embedded_farm, people["ana"], campaign_id, version_id, name="Hero shots")


def _read(farm, job_id, since=None):
    with transaction(farm.session_factory) as session:
        return read_progress(session, job_id, since, heartbeat_seconds=farm.settings.heartbeat_seconds)


def _set(farm, render_id, **values):
    """Move a render as a worker's statements do (the reader only sees columns)."""
    with transaction(farm.session_factory) as session:
        session.execute(update(Render).where(Render.id == render_id).values(**values))


def _lease(farm, render_id, owner="test-worker", seconds=60):
    now = utcnow()
    _set(farm, render_id, state="leased", lease_owner=owner, started_at=now, attempts=Render.attempts + 1,
         lease_expires_at=now + timedelta(seconds=seconds), progress_step=0)


# -- cursors ------------------------------------------------------------------------------------

def test_cursor_round_trip():
    at = utcnow().replace(microsecond=123000)
    for cursor in (Cursor(at), Cursor(at, (3, 41, 5)), Cursor(at, (), 2, 9), Cursor(at, (7,), 0, 10_000)):
        assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor(at, (3, 4), 1, 2).encode().endswith(".1.2:3,4")


@pytest.mark.parametrize("text", ["", "abc", "12:", "12:a", "12.3", "12.3.4.5", "12.x.4", "12:1,,2", "-5", "1" * 17, "12:" + ",".join(["1"] * 5001),
                                  None, 12])
def test_bad_cursors_name_the_field(text):
    with pytest.raises(InvalidInput) as error:
        Cursor.decode(text, "since")
    assert error.value.field == "since"


# -- reads --------------------------------------------------------------------------------------

def test_a_read_without_cursor_has_every_render_and_the_totals(embedded_farm, job):
    read = _read(embedded_farm, job)
    assert [r.index for r in read.renders] == [0, 1, 2]
    assert all(r.state == "queued" and r.percent == 0 for r in read.renders)
    totals = read.totals
    assert (totals.status, totals.renders, totals.finished, totals.percent, totals.done) == ("queued", 3, 0, 0.0, False)
    assert totals.counts == {state: 3 if state == "queued" else 0 for state in RENDER_STATES}
    assert totals.waiting_reason == "no live worker serves queue 'sd1' (model tiny-sd, sd1)"
    assert read.cursor.active_ids == ()


def test_a_read_since_a_cursor_returns_only_renders_that_changed(embedded_farm, job):
    farm = embedded_farm
    first, second, third = render_ids(farm, job)
    cursor = _read(farm, job).cursor
    assert _read(farm, job, cursor).renders == []

    _lease(farm, first)
    read = _read(farm, job, cursor)
    assert [(r.id, r.state, r.worker) for r in read.renders] == [(first, "leased", "test-worker")]
    assert read.cursor.active_ids == (first,)

    _set(farm, first, state="running", progress_step=1)  # step 1 of 2
    read = _read(farm, job, read.cursor)
    assert [(r.id, r.percent) for r in read.renders] == [(first, 50.0)]
    assert read.totals.percent == pytest.approx(100 * 0.5 / 3, abs=0.1)
    assert read.totals.counts["running"] == 1

    # The real worker finishes it (its own lease, taken over after a restart).
    assert render(worker(farm), [first]) == [Outcome.SUCCEEDED]
    read = _read(farm, job, read.cursor)
    done = {r.id: r for r in read.renders}
    assert list(done) == [first]
    assert done[first].state == "succeeded" and done[first].percent == 100
    assert done[first].asset_id and done[first].thumbnail_key and done[first].worker == "test-worker"
    assert read.cursor.active_ids == ()
    assert (read.totals.finished, read.totals.status) == (1, "running")


def test_a_render_given_back_to_the_queue_is_returned_through_the_cursor(embedded_farm, job):
    """running -> queued (a reaped lease, a retry) sets no timestamp: the cursor's ids catch it."""
    farm = embedded_farm
    first = render_ids(farm, job)[0]
    _lease(farm, first, owner="gone-worker", seconds=-1)
    with transaction(farm.session_factory) as session:  # leased long ago: outside the overlap
        session.execute(update(Render).where(Render.id == first).values(started_at=utcnow() - timedelta(hours=1)))
    cursor = _read(farm, job, Cursor(utcnow())).cursor
    assert cursor.active_ids == (first,)
    assert reap_expired_leases(farm).requeued == [first]
    read = _read(farm, job, cursor)
    assert [(r.id, r.state) for r in read.renders] == [(first, "queued")]
    assert "gone-worker stopped reporting" in read.renders[0].error
    # Without the ids it would be missed: no count moved.
    assert _read(farm, job, Cursor(cursor.at, held=0, finished=0)).renders == []


def test_the_overlap_catches_a_change_whose_timestamp_is_older_than_the_cursor(embedded_farm, job):
    """A cancel sets finished_at, then commits: a read in between must not lose those renders."""
    farm = embedded_farm
    first, second, third = render_ids(farm, job)
    now = utcnow()
    _set(farm, first, state="cancelled", finished_at=now - CHANGE_OVERLAP / 2)
    _set(farm, second, state="cancelled", finished_at=now - CHANGE_OVERLAP * 3)
    read = _read(farm, job, Cursor(now, held=0, finished=0))
    assert [r.id for r in read.renders] == [first]


def test_cancelling_ends_the_job_for_watchers(embedded_farm, people, job):
    cursor = _read(embedded_farm, job).cursor
    assert control_job(embedded_farm, people["ana"], job, "cancel") == "cancelled"
    read = _read(embedded_farm, job, cursor)
    assert sorted(r.state for r in read.renders) == ["cancelled"] * 3
    assert (read.totals.done, read.totals.percent, read.totals.waiting_reason) == (True, 100.0, None)


def test_a_cancelled_job_with_a_running_render_is_done_once_it_stops(embedded_farm, people, job):
    first = render_ids(embedded_farm, job)[0]
    _lease(embedded_farm, first)
    control_job(embedded_farm, people["ana"], job, "cancel")
    assert _read(embedded_farm, job).totals.done is False  # its render stops at its next step
    _set(embedded_farm, first, state="cancelled", finished_at=utcnow())
    assert _read(embedded_farm, job).totals.done is True


def test_the_tracker_sends_each_change_once(embedded_farm, job):
    farm = embedded_farm
    ids = render_ids(farm, job)
    tracker = ProgressTracker(farm.session_factory, job, _read(farm, job).cursor,
                              heartbeat_seconds=farm.settings.heartbeat_seconds)
    opening = tracker.poll(force=True)
    assert opening.renders == [] and opening.totals.percent == 0
    assert tracker.poll() is None

    ctx = worker(farm)
    render(ctx, ids[:1])
    update_ = tracker.poll()
    assert [(r.id, r.state) for r in update_.renders] == [(ids[0], "succeeded")]
    assert update_.totals.finished == 1 and not update_.totals.done
    # Read again inside the overlap, but already sent: nothing new.
    assert tracker.poll() is None

    render(ctx, ids[1:])
    last = tracker.poll()
    assert sorted(r.id for r in last.renders) == ids[1:]
    assert (last.totals.done, last.totals.percent, last.totals.status) == (True, 100.0, "succeeded")


# -- listing and detail -----------------------------------------------------------------------

def test_jobs_are_listed_newest_first_for_those_who_see_their_campaign(embedded_farm, people):
    farm = embedded_farm
    spring, spring_version = make_campaign(farm, people["ana"], name="Spring", members=[people["rey"]])
    autumn, autumn_version = make_campaign(farm, people["bo"], name="Autumn")
    spring_jobs = [submit(farm, people["ana"], spring, spring_version, products=["a cup"]) for _ in range(3)]
    autumn_job = submit(farm, people["bo"], autumn, autumn_version, products=["a cup", "a pot"])
    with transaction(farm.session_factory) as session:
        for name, expected in (("ana", spring_jobs[::-1]), ("rey", spring_jobs[::-1]), ("bo", [autumn_job]),
                               ("ops", [autumn_job, *spring_jobs[::-1]])):
            assert [j.id for j in list_jobs(session, people[name]).jobs] == expected, name
        page = list_jobs(session, people["ops"], limit=2)
        assert [j.id for j in page.jobs] == [autumn_job, spring_jobs[2]] and page.next_before == spring_jobs[2]
        rest = list_jobs(session, people["ops"], limit=2, before=page.next_before)
        assert [j.id for j in rest.jobs] == spring_jobs[1::-1] and rest.next_before is None
        only = list_jobs(session, people["ops"], campaign_id=autumn)
        summary = only.jobs[0]
        assert (summary.campaign, summary.renders, summary.finished_renders, summary.submitted_by,
                summary.model, summary.percent) == ("Autumn", 2, 0, "bo", "tiny-sd", 0.0)
        assert list_jobs(session, people["ops"], status="succeeded").jobs == []
        assert [j.id for j in list_jobs(session, people["ops"], status="queued", campaign_id=spring).jobs] == \
            spring_jobs[::-1]


@pytest.mark.parametrize("arguments, field", [
    ({"status": "done"}, "status"), ({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"before": 0}, "before"),
    ({"campaign_id": "1"}, "campaign_id"), ({"campaign_id": 999}, "campaign_id"),
])
def test_bad_list_arguments_name_the_field(embedded_farm, people, arguments, field):
    with transaction(embedded_farm.session_factory) as session, pytest.raises(InvalidInput) as error:
        list_jobs(session, people["ana"], **arguments)
    assert error.value.field == field


def test_filtering_by_a_campaign_one_cannot_see_says_no_such_campaign(embedded_farm, people, job):
    with transaction(embedded_farm.session_factory) as session:
        campaign_id = session.get(Job, job).campaign_id
        with pytest.raises(InvalidInput, match="no campaign"):
            list_jobs(session, people["bo"], campaign_id=campaign_id)


def test_job_detail(embedded_farm, people):
    farm = embedded_farm
    campaign_id, version_id = make_campaign(farm, people["ana"], channel_formats=["instagram_square"])
    job_id = submit(farm, people["ana"], campaign_id, version_id, products=["a cup", "a pot"], seeds=[1, 2],
                    formats=None, priority=7)
    with transaction(farm.session_factory) as session:
        detail = job_detail(session, people["ana"], job_id)
    assert (detail.template_name, detail.template_version, detail.rows, detail.seeds) == ("hero", 1, 2, 2)
    assert [(f.name, f.label, f.width, f.height) for f in detail.formats] == \
        [("instagram_square", "Instagram square post", 1080, 1080)]
    assert detail.summary.priority == 7 and detail.summary.renders == 4 and detail.license == "Apache-2.0"
    assert detail.params["steps"] == 2 and detail.totals.counts["queued"] == 4
    assert "no live worker" in detail.totals.waiting_reason
    control_job(farm, people["ana"], job_id, "pause")
    with transaction(farm.session_factory) as session:
        assert job_detail(session, people["ana"], job_id).totals.waiting_reason == "the job is paused"


def test_renders_are_paged_by_index_and_filtered_by_state(embedded_farm, people):
    farm = embedded_farm
    campaign_id, version_id = make_campaign(farm, people["ana"])
    job_id = submit(farm, people["ana"], campaign_id, version_id, products=["a", "b", "c", "d", "e"])
    ids = render_ids(farm, job_id)
    _set(farm, ids[3], state="failed", error="RuntimeError: out of memory", finished_at=utcnow())
    with transaction(farm.session_factory) as session:
        page = list_renders(session, people["ana"], job_id, limit=2)
        assert [r.index for r in page.renders] == [0, 1] and page.next_after == 1
        page = list_renders(session, people["ana"], job_id, after=page.next_after, limit=2)
        assert [r.index for r in page.renders] == [2, 3] and page.next_after == 3
        page = list_renders(session, people["ana"], job_id, after=3, limit=2)
        assert [r.index for r in page.renders] == [4] and page.next_after is None
        failed = list_renders(session, people["ana"], job_id, state="failed").renders
        assert [(r.id, r.error) for r in failed] == [(ids[3], "RuntimeError: out of memory")]
        one = get_render(session, people["ana"], ids[0])
        assert (one.prompt, one.seed, one.width, one.height, one.job_id) == \
            ("a on a wooden table", 1, 64, 64, job_id)
        for call, field in ((lambda: list_renders(session, people["ana"], job_id, after=-2), "after"),
                            (lambda: list_renders(session, people["ana"], job_id, state="done"), "state"),
                            (lambda: list_renders(session, people["ana"], job_id, limit=0), "limit")):
            with pytest.raises(InvalidInput) as error:
                call()
            assert error.value.field == field


def test_a_job_of_an_invisible_campaign_is_not_found(embedded_farm, people, job):
    render_id = render_ids(embedded_farm, job)[0]
    with transaction(embedded_farm.session_factory) as session:
        for call in (lambda: job_detail(session, people["bo"], job),
                     lambda: list_renders(session, people["bo"], job),
                     lambda: progress_for(session, people["bo"], job, None),
                     lambda: get_render(session, people["bo"], render_id),
                     lambda: job_detail(session, people["ana"], 999_999)):
            with pytest.raises(NotFound):
                call()
    with pytest.raises(NotFound):
        control_job(embedded_farm, people["bo"], job, "cancel")
    with transaction(embedded_farm.session_factory) as session:
        assert session.get(Job, job).status == "queued"


# -- control ----------------------------------------------------------------------------------

def test_pause_resume_and_cancel_as_a_user_are_audited_and_resume_queues_again(embedded_farm, people, job):
    farm = embedded_farm
    assert control_job(farm, people["rey"], job, "pause") == "paused"
    with pytest.raises(InvalidInput) as error:
        control_job(farm, people["rey"], job, "pause")
    assert error.value.field == "job_id"
    before = utcnow()
    assert control_job(farm, people["ana"], job, "resume") == "queued"
    with transaction(farm.session_factory) as session:
        sent = session.scalars(select(Render.last_enqueued_at).where(Render.job_id == job)).all()
        assert all(at is not None and at >= before for at in sent)
    assert control_job(farm, people["ana"], job, "cancel") == "cancelled"
    with transaction(farm.session_factory) as session:
        events = session.execute(select(AuditEvent.action, AuditEvent.actor_name)
                                 .where(AuditEvent.entity_type == "job").order_by(AuditEvent.id)).all()
    assert [tuple(e) for e in events][-3:] == [("job.paused", "rey"), ("job.resumed", "ana"),
                                               ("job.cancelled", "ana")]


def test_held_renders_set_no_timestamp_so_a_changed_held_count_returns_every_render(embedded_farm, job):
    farm = embedded_farm
    first, second, third = render_ids(farm, job)
    cursor = _read(farm, job).cursor
    assert cursor.held == 0 and Cursor.decode(cursor.encode()).encode() == cursor.encode()
    _set(farm, first, state="held", hold_reason="model tiny-sd is suspended")
    _set(farm, second, state="held", hold_reason="model tiny-sd is suspended")
    read = _read(farm, job, cursor)
    assert [(r.index, r.state) for r in read.renders] == [(0, "held"), (1, "held"), (2, "queued")]
    assert read.renders[0].hold_reason == "model tiny-sd is suspended"
    assert "2 held: model tiny-sd is suspended" in read.totals.waiting_reason
    assert read.cursor.held == 2
    assert _read(farm, job, read.cursor).renders == []  # the same count: only changes again
    _set(farm, first, state="queued", hold_reason=None)
    assert [r.index for r in _read(farm, job, read.cursor).renders] == [0, 1, 2]
