"""Live progress of a 10,000-render job on PostgreSQL: a poll costs the same few statements as
for a job of three renders and returns only the renders that may have changed (the figures in
milliseconds come from bench/job_progress.py, not from a test)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from farm.accounts.service import create_user
from farm.context import FarmContext, prepare_database
from farm.db.base import utcnow
from farm.db.models import Render
from farm.db.session import transaction
from farm.jobs.progress import ProgressTracker, read_progress
from farm.settings import load_settings
from tests.dashboard.job_helpers import make_campaign, render_ids, submit

RUNNING = 4  # one per busy GPU


@pytest.fixture
def farm(postgres_url, farm_home) -> FarmContext:
    ctx = FarmContext(load_settings({"FARM_HOME": str(farm_home), "FARM_DATABASE_URL": postgres_url,
                                     "FARM_SECRET_KEY": "k" * 40}))
    prepare_database(ctx)
    yield ctx
    ctx.db_engine.dispose()


@contextmanager
def counted(engine):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _farm_in_motion(farm, job_id: int) -> list[int]:
    """Most renders finished an hour ago, RUNNING of them running (leased an hour ago too, long
    renders), the rest queued; returns the running ids."""
    ids = render_ids(farm, job_id)
    hour_ago = utcnow() - timedelta(hours=1)
    done, running = ids[: len(ids) * 9 // 10], ids[len(ids) * 9 // 10:][:RUNNING]
    with transaction(farm.session_factory) as session:
        session.execute(update(Render).where(Render.id.in_(done))
                        .values(state="succeeded", started_at=hour_ago, finished_at=hour_ago, progress_step=2,
                                rendered_by="gpu-a:0"))
        session.execute(update(Render).where(Render.id.in_(running))
                        .values(state="running", started_at=hour_ago, progress_step=1, lease_owner="gpu-b:0",
                                lease_expires_at=utcnow() + timedelta(minutes=5)))
    return running


def _poll_cost(farm, job_id: int) -> tuple[int, int, int]:
    """(statements of a steady-state tracker poll, renders it returned, renders changed returned after one step)."""
    with transaction(farm.session_factory) as session:
        cursor = read_progress(session, job_id, None).cursor
    tracker = ProgressTracker(farm.session_factory, job_id, cursor)
    tracker.poll(force=True)
    with counted(farm.db_engine) as statements:
        with transaction(farm.session_factory) as session:
            steady = read_progress(session, job_id, cursor)
    assert tracker.poll() is None  # nothing moved: nothing to send
    running = list(cursor.active_ids)
    with transaction(farm.session_factory) as session:
        session.execute(update(Render).where(Render.id == running[0]).values(progress_step=Render.progress_step + 1))
    changed = tracker.poll()
    return len(statements), len(steady.renders), len(changed.renders)


def test_a_poll_of_a_10000_render_job_costs_what_a_poll_of_a_small_job_costs(farm):
    with transaction(farm.session_factory) as session:
        owner = create_user(session, name="ana", role="campaign_manager")
    campaign_id, version_id = make_campaign(farm, owner)
    big = submit(farm, owner, campaign_id, version_id, products=[f"product {i}" for i in range(5000)], seeds=[1, 2])
    small = submit(farm, owner, campaign_id, version_id, products=[f"item {i}" for i in range(50)])
    assert len(render_ids(farm, big)) == 10_000
    running = _farm_in_motion(farm, big)
    _farm_in_motion(farm, small)

    big_cost, small_cost = _poll_cost(farm, big), _poll_cost(farm, small)
    # The same statements, the active renders only, then the one render that moved.
    assert big_cost == small_cost == (big_cost[0], RUNNING, 1), (big_cost, small_cost)
    assert big_cost[0] <= 6, big_cost

    with transaction(farm.session_factory) as session:
        full = read_progress(session, big, None)
        assert len(full.renders) == 10_000
        totals = full.totals
        assert (totals.counts["succeeded"], totals.counts["running"], totals.counts["queued"]) == (9000, 4, 996)
        assert totals.percent == pytest.approx(100 * (9000 + RUNNING * 0.5 + 0.5) / 10_000, abs=0.1)
        assert sorted(r.id for r in full.renders if r.state == "running") == running
