"""A worker started before its database exists, then before it is migrated, waits for it and
then registers and renders."""

import uuid

import psycopg
import pytest
import redis

from farm.context import FarmContext
from farm.db.models import Worker
from farm.db.session import transaction
from farm.jobs.dispatch import submit_prompt
from farm.jobs.queries import job_progress
from farm.settings import load_settings
from tests.fixtures.processes import farm_environ, farm_process, run_farm, wait_until

pytestmark = pytest.mark.integration


def test_worker_waits_for_an_unreachable_database_then_works(farm_home, postgres_admin_url, redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    name = f"farm_test_{uuid.uuid4().hex[:12]}"
    database_url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    settings = {"FARM_HOME": str(farm_home), "FARM_DATABASE_URL": database_url, "FARM_BROKER_URL": redis_url,
                "FARM_HEARTBEAT_SECONDS": "1"}
    env = farm_environ(**settings)
    log = tmp_path / "worker.log"
    try:
        with farm_process("worker", "--name", "early:0", env=env, log_path=log) as worker:
            # The database does not exist yet: the worker says so and keeps trying.
            wait_until(lambda: log.read_text().count("database unreachable") >= 2, 60,
                       "the worker to report the unreachable database twice")
            assert worker.poll() is None, log.read_text()
            assert "Traceback" not in log.read_text()

            with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            # There, but empty: the worker waits for the migration rather than crash on it.
            wait_until(lambda: "run `farm db upgrade`" in log.read_text(), 60,
                       "the worker to ask for the migration")
            assert worker.poll() is None and "Traceback" not in log.read_text(), log.read_text()
            upgraded = run_farm("db", "upgrade", env=env)
            assert upgraded.returncode == 0, upgraded.stderr
            ctx = FarmContext(load_settings(settings))
            try:
                def registered():
                    with transaction(ctx.session_factory) as session:
                        return session.query(Worker).filter_by(name="early:0", status="online").one_or_none()

                wait_until(registered, 90, "the worker to register once the database is there")
                job_id = submit_prompt(ctx, prompt="a blue kettle", seed=5, count=2,
                                       params={"steps": 2, "width": 64, "height": 64})
                wait_until(lambda: job_progress(ctx.session_factory, job_id).finished, 120, "the job to finish")
                assert job_progress(ctx.session_factory, job_id).status == "succeeded"
            finally:
                ctx.db_engine.dispose()
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_second_worker_with_a_live_name_waits_out_the_old_beats_then_stops(farm_home, postgres_url, redis_url,
                                                                             tmp_path):
    env = farm_environ(FARM_HOME=str(farm_home), FARM_DATABASE_URL=postgres_url, FARM_BROKER_URL=redis_url,
                       FARM_HEARTBEAT_SECONDS="1")
    assert run_farm("db", "upgrade", env=env).returncode == 0
    ctx = FarmContext(load_settings({k: v for k, v in env.items() if k.startswith("FARM_")}))
    try:
        with farm_process("worker", "--name", "dup:0", env=env, log_path=tmp_path / "first.log") as first:
            def online():
                with transaction(ctx.session_factory) as session:
                    return session.query(Worker).filter_by(name="dup:0", status="online").one_or_none()

            wait_until(online, 90, "the first worker to register")
            # The first still heartbeats: the second waits out the beats a dead one would miss,
            # then stops with the reason, rather than taking over a live worker's name.
            second = run_farm("worker", "--name", "dup:0", env=env, timeout=120)
            assert second.returncode == 2, second.stderr
            assert "waiting in case that was this worker before a restart" in second.stderr
            assert "error: --name: worker dup:0 is already running" in second.stderr
            assert first.poll() is None
    finally:
        ctx.db_engine.dispose()
