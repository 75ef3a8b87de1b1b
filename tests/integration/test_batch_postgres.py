"""Batch submission on a real Postgres: a submission key makes one job, even under a race."""

import threading
import time

import psycopg
import pytest
from sqlalchemy import func, select

from farm.accounts.service import create_user
from farm.audit.log import verify_chain
from farm.campaigns.service import create_campaign_as
from farm.context import FarmContext, prepare_database
from farm.db.models import AuditEvent, Job, Render
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, _write_job, plan_batch, submit_batch
from farm.settings import load_settings
from farm.templates.service import create_campaign_template
from tests.conftest import embedded_environ

pytestmark = pytest.mark.integration

ROWS = [{"product": "shoe", "background": "sand"}, {"product": "bag", "background": "snow"}]


@pytest.fixture
def farm(farm_home, postgres_url):
    ctx = FarmContext(load_settings(embedded_environ(farm_home, FARM_DATABASE_URL=postgres_url)))
    prepare_database(ctx)
    with transaction(ctx.session_factory) as session:
        manager = create_user(session, name="ana", role="campaign_manager")
        campaign_id = create_campaign_as(session, manager, name="Spring", brand="Acme",
                                         channel_formats=["instagram_square", "linkedin"]).id
        version_id = create_campaign_template(session, manager, campaign_id, name="hero",
                                              body="{{ product }} on {{ background }}",
                                              variables=["product", "background"],
                                              default_params={"steps": 2, "width": 64, "height": 64}).id
    yield ctx, manager, BatchRequest(campaign_id=campaign_id, template_version_id=version_id, rows=ROWS, seeds=[1, 2])
    ctx.db_engine.dispose()


def _totals(ctx):
    with transaction(ctx.session_factory) as session:
        jobs = session.scalar(select(func.count(Job.id)))
        renders = session.scalar(select(func.count(Render.id)))
        submitted = session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "job.submitted"))
        assert verify_chain(session) == []
    return jobs, renders, submitted


def _in_threads(count, call):
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(number):
        try:
            barrier.wait()
            results[number] = call()
        except Exception as error:  # reported below, with the thread's own traceback
            errors.append(error)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_threads_submitting_the_same_key_make_one_job(farm):
    ctx, manager, request = farm
    for round_number in range(3):
        key = f"form-{round_number}"
        results = _in_threads(3, lambda: submit_batch(ctx, manager, BatchRequest(**{
            **request.__dict__, "submission_key": key})))
        assert len({r.job_id for r in results}) == 1
        assert sorted(r.created for r in results) == [False, False, True]
        assert {r.renders for r in results} == {2 * 2 * 2}
    assert _totals(ctx) == (3, 3 * 8, 3)


def _waiting_on_a_lock(database_url: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0] > 0


def test_a_submission_racing_an_uncommitted_one_returns_it_through_the_unique_constraint(farm):
    """The second submission passes the "already submitted?" check while the first is still
    uncommitted; its insert then waits on the unique index, fails when the first commits, and
    finds the first job instead of failing or making a second one."""
    ctx, manager, request = farm
    keyed = BatchRequest(**{**request.__dict__, "submission_key": "form-race"})
    second = {}
    with transaction(ctx.session_factory) as session:
        job, _, _ = _write_job(session, ctx, manager, keyed)
        first_id = job.id
        racer = threading.Thread(target=lambda: second.update(result=submit_batch(ctx, manager, keyed)))
        racer.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(ctx.settings.database_url):
            assert racer.is_alive() and time.monotonic() < deadline, "the second submission never waited"
            time.sleep(0.05)
    racer.join(30)
    assert (second["result"].job_id, second["result"].created) == (first_id, False)
    assert _totals(ctx) == (1, 8, 1)


def test_plan_on_postgres_writes_nothing(farm):
    ctx, manager, request = farm
    with transaction(ctx.session_factory) as session:
        plan = plan_batch(session, ctx.settings, manager, request)
    assert plan.renders == 8 and [f.name for f in plan.formats] == ["instagram_square", "linkedin"]
    assert _totals(ctx) == (0, 0, 0)
