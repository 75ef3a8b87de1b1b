"""Dispatch on real services: Postgres, Redis or RabbitMQ, a SeaweedFS S3 server and real worker processes."""

import os
import signal

import pytest
import redis
from sqlalchemy import func, select

from farm.db.models import Asset, Job, Render
from farm.db.session import transaction
from farm.jobs.dispatch import submit_prompt
from farm.jobs.reaper import sweep_orphans
from tests.fixtures.farms import distributed_settings, job_status, migrated_farm, renders_of
from tests.fixtures.processes import farm_environ, farm_process, run_farm, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request):
    """Each dispatch test runs on both brokers the farm supports: they differ in priorities,
    redelivery of unacknowledged messages and remote control."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()  # no messages left over from an earlier test
        return url
    # A vhost of the test's own: no queue declared by another test (with other arguments, or
    # with messages still in it) can interfere.
    return request.getfixturevalue("rabbitmq_vhost_url")


@pytest.fixture
def distributed(farm_home, postgres_url, broker_url, s3_server, s3_bucket):
    """Settings for a farm on Postgres + the broker + S3, migrated; yields (settings dict, context)."""
    settings = distributed_settings(farm_home, postgres_url, broker_url, s3_server, s3_bucket)
    ctx = migrated_farm(settings)
    yield settings, ctx
    ctx.db_engine.dispose()


def test_twenty_renders_across_two_workers_survive_a_kill_9_exactly_once(distributed, tmp_path):
    settings, ctx = distributed
    env = farm_environ(**settings)
    job_id = submit_prompt(ctx, prompt="a red shoe on sand", seed=100, count=20,
                           params={"steps": 12, "width": 128, "height": 128})
    with farm_process("worker", "--name", "box:a", env=env, log_path=tmp_path / "a.log") as worker_a, \
            farm_process("worker", "--name", "box:b", env=env, log_path=tmp_path / "b.log"), \
            farm_process("reaper", "--interval", "1", env=env, log_path=tmp_path / "reaper.log"):
        def box_a_mid_render_after_finishing_one():
            renders = renders_of(ctx, job_id)
            if not any(r.rendered_by == "box:a" for r in renders):
                return None
            return next((r for r in renders if r.state == "running" and r.lease_owner == "box:a"), None)

        victim = wait_until(box_a_mid_render_after_finishing_one, 120, "worker box:a to be mid-render",
                            interval=0.05)
        os.kill(worker_a.pid, signal.SIGKILL)
        wait_until(lambda: job_status(ctx, job_id) in ("succeeded", "failed"), 240, "the job to finish")
        assert job_status(ctx, job_id) == "succeeded", (tmp_path / "b.log").read_text()[-3000:]

    renders = renders_of(ctx, job_id)
    assert [r.state for r in renders] == ["succeeded"] * 20
    killed = next(r for r in renders if r.id == victim.id)
    # The kill costs the victim exactly one more attempt. (An earlier attempt may have lost its
    # lease already: a first render that loads the model reports no progress for a while.)
    assert killed.rendered_by == "box:b" and killed.attempts == victim.attempts + 1
    assert f"requeued [{victim.id}]" in (tmp_path / "reaper.log").read_text()  # the reaper gave it back
    assert {r.rendered_by for r in renders} == {"box:a", "box:b"}
    with transaction(ctx.session_factory) as session:
        assets = session.scalars(select(Asset)).all()
        assert len(assets) == 20 and len({a.render_id for a in assets}) == 20
        referenced = {a.storage_key for a in assets} | {a.thumbnail_key for a in assets}
    # The killed worker may have left an object without a row; after the sweep only the 20
    # images and their 20 thumbnails remain.
    sweep_orphans(ctx, grace_seconds=0)
    assert set(ctx.storage.list_keys()) == referenced and len(referenced) == 40


@pytest.fixture
def one_worker(distributed, tmp_path):
    settings, ctx = distributed
    with farm_process("worker", "--name", "box:solo", env=farm_environ(**settings),
                      log_path=tmp_path / "worker.log"):
        yield settings, ctx


def test_high_priority_job_overtakes_a_backlog(one_worker):
    _, ctx = one_worker
    backlog = submit_prompt(ctx, prompt="backlog", seed=1, count=12, priority=0,
                            params={"steps": 8, "width": 128, "height": 128})
    wait_until(lambda: any(r.state == "running" for r in renders_of(ctx, backlog)), 120, "the backlog to start")
    urgent = submit_prompt(ctx, prompt="urgent", seed=1, count=1, priority=9,
                           params={"steps": 8, "width": 128, "height": 128})
    wait_until(lambda: job_status(ctx, urgent) == "succeeded", 120, "the urgent job")
    urgent_start = renders_of(ctx, urgent)[0].started_at
    still_waiting = [r for r in renders_of(ctx, backlog) if r.started_at is None or r.started_at > urgent_start]
    assert len(still_waiting) >= 8  # it went ahead of most of the backlog


def test_pause_resume_and_cancel_with_a_real_worker(one_worker):
    settings, ctx = one_worker
    env = farm_environ(**settings)
    slow = {"steps": 20, "width": 256, "height": 256}  # about a second each, so commands land mid-job
    job_id = submit_prompt(ctx, prompt="paused", seed=1, count=8, params=slow)
    assert run_farm("jobs", "pause", str(job_id), env=env).returncode == 0
    done_at_pause = sum(r.state == "succeeded" for r in renders_of(ctx, job_id))
    wait_until(lambda: not any(r.state in ("leased", "running") for r in renders_of(ctx, job_id)), 60,
               "the running render to end")
    settled = [r.state for r in renders_of(ctx, job_id)]
    assert settled.count("queued") >= 8 - done_at_pause - 1
    resumed = run_farm("jobs", "resume", str(job_id), env=env)
    assert resumed.returncode == 0 and "queued again" in resumed.stdout
    wait_until(lambda: job_status(ctx, job_id) == "succeeded", 120, "the resumed job")

    doomed = submit_prompt(ctx, prompt="doomed", seed=1, count=8, params=slow)
    wait_until(lambda: any(r.state == "running" for r in renders_of(ctx, doomed)), 60, "a render to start")
    cancelled = run_farm("jobs", "cancel", str(doomed), env=env)
    assert cancelled.returncode == 0
    wait_until(lambda: not any(r.state in ("leased", "running") for r in renders_of(ctx, doomed)), 60,
               "the running render to stop")
    states = [r.state for r in renders_of(ctx, doomed)]
    assert job_status(ctx, doomed) == "cancelled"
    assert "queued" not in states and states.count("cancelled") >= 4
    with transaction(ctx.session_factory) as session:
        after_cancel = session.scalar(select(func.count(Render.id)).where(
            Render.job_id == doomed, Render.started_at > session.get(Job, doomed).finished_at))
    assert after_cancel == 0  # no render of the job started after the cancel


def test_workers_register_and_can_be_drained(one_worker):
    import json

    settings, ctx = one_worker
    env = farm_environ(**settings)
    shown = wait_until(lambda: json.loads(run_farm("workers", "--json", env=env).stdout), 60, "registration")
    solo = next(w for w in shown if w["name"] == "box:solo")
    assert solo["status"] == "online" and solo["heartbeat_age_seconds"] < 5
    assert solo["torch_version"].startswith("2.13") and solo["queues"] == ["sd1", "sd2", "sdxl", "upscale"]
    first = submit_prompt(ctx, prompt="warm up", seed=1, count=1, params={"steps": 2, "width": 64, "height": 64})
    wait_until(lambda: job_status(ctx, first) == "succeeded", 120, "a first render")
    wait_until(lambda: json.loads(run_farm("workers", "--json", env=env).stdout)[0]["warm_models"] == ["tiny-sd"],
               30, "the warm model to be reported")

    assert run_farm("worker", "drain", "box:solo", env=env).returncode == 0
    wait_until(lambda: json.loads(run_farm("workers", "--json", env=env).stdout)[0]["status"] == "draining",
               30, "the drain to be seen")
    import time
    time.sleep(3)  # the heartbeat has told the worker; it cancels its consumers
    held = submit_prompt(ctx, prompt="held", seed=1, count=1, params={"steps": 2, "width": 64, "height": 64})
    time.sleep(5)
    assert renders_of(ctx, held)[0].state == "queued"  # a draining worker takes nothing new
    assert run_farm("worker", "drain", "nobody:0", env=env).returncode == 2


def test_a_worker_that_keeps_failing_is_kept_off_the_job_and_the_other_finishes_it(distributed, tmp_path):
    from farm.db.models import JobWorkerFailure

    settings, ctx = distributed
    rules = {"FARM_BLOCKLIST_AFTER": "2", "FARM_MAX_ATTEMPTS": "5"}
    good_env = farm_environ(**settings, **rules)
    # This worker's S3 secret is wrong: every image it makes fails to upload.
    bad_env = farm_environ(**{**settings, "FARM_S3_SECRET_ACCESS_KEY": "wrong-secret"}, **rules)
    small = {"steps": 4, "width": 64, "height": 64}
    job_id = None

    def bad_failures():
        with transaction(ctx.session_factory) as session:
            return session.scalar(select(JobWorkerFailure.failures).where(
                JobWorkerFailure.job_id == job_id, JobWorkerFailure.worker_name == "box:bad")) or 0

    # A job fails outright once every live worker that serves it is kept off it, so the healthy
    # worker must be live while the broken one fails. It is kept busy meanwhile, on a render that
    # would take minutes, so that only the broken one takes the job's renders: no race on who
    # fails what.
    busy = submit_prompt(ctx, prompt="keeps box:good busy", seed=1, count=1,
                         params={"steps": 150, "width": 512, "height": 512})
    # One CPU thread for box:good, so that its long render leaves a core to box:bad.
    with farm_process("worker", "--name", "box:good", env={**good_env, "OMP_NUM_THREADS": "1"},
                      log_path=tmp_path / "good.log"):
        wait_until(lambda: renders_of(ctx, busy)[0].state == "running", 120, "box:good to be busy")
        job_id = submit_prompt(ctx, prompt="blocklist", seed=1, count=6, params=small)
        with farm_process("worker", "--name", "box:bad", env=bad_env, log_path=tmp_path / "bad.log"):
            wait_until(lambda: bad_failures() >= 2, 120, "box:bad to be blocklisted")
            assert renders_of(ctx, busy)[0].state == "running"  # so far box:bad alone took the job's renders
            # Free box:good: it finishes the job while box:bad keeps handing messages back.
            assert run_farm("jobs", "cancel", str(busy), env=good_env).returncode == 0
            wait_until(lambda: job_status(ctx, job_id) in ("succeeded", "failed"), 240, "the job to finish")
    assert job_status(ctx, job_id) == "succeeded"
    renders = renders_of(ctx, job_id)
    assert {r.rendered_by for r in renders} == {"box:good"}
    with transaction(ctx.session_factory) as session:
        failures = session.scalars(select(JobWorkerFailure).where(JobWorkerFailure.job_id == job_id)).all()
    assert [(f.worker_name, f.failures) for f in failures] == [("box:bad", 2)]
    assert "SignatureDoesNotMatch" in failures[0].last_error or "Forbidden" in failures[0].last_error \
        or "AccessDenied" in failures[0].last_error, failures[0].last_error
