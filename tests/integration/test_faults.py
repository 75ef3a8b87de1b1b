"""Services failing in the middle of a job: the object store and the broker go away and come back.

Real Postgres, real brokers, a real S3 server and real `farm worker` / `farm reaper` processes.
The server that fails is always one of the test's own (the shared ones serve other tests).
Whatever fails, the job must end with exactly one asset per render and nothing else in storage.
"""

import uuid

import pytest
from sqlalchemy import select

from farm.db.models import JobWorkerFailure
from farm.db.session import transaction
from farm.jobs.dispatch import submit_prompt
from tests.fixtures.farms import (assert_stored_exactly_once, distributed_settings, job_finished, job_status,
                                  migrated_farm, renders_of)
from tests.fixtures.processes import farm_environ, farm_process, wait_until

pytestmark = pytest.mark.integration

# Small and quick: well under a second a render once a worker has loaded the model. The outages
# start right after the first images are stored, so plenty of the job is still to do.
PARAMS = {"steps": 8, "width": 128, "height": 128}


def _log_tails(*paths) -> str:
    return "\n".join(f"--- {p.name} ---\n{p.read_text()[-3000:]}" for p in paths if p.exists())


def _failures_of(ctx, job_id: int, worker: str) -> int:
    with transaction(ctx.session_factory) as session:
        return session.scalar(select(JobWorkerFailure.failures).where(
            JobWorkerFailure.job_id == job_id, JobWorkerFailure.worker_name == worker)) or 0


def test_an_object_store_outage_mid_job_is_retried_and_loses_or_duplicates_nothing(
        farm_home, postgres_url, private_redis, private_s3_server, tmp_path):
    s3 = private_s3_server.info
    bucket = f"outage-{uuid.uuid4().hex[:16]}"
    s3.client().create_bucket(Bucket=bucket)
    # One attempt per render: an outage must not spend any. (A Redis of its own, so that nothing
    # else that uses Redis can touch the retry messages this test waits on.)
    settings = distributed_settings(farm_home, postgres_url, private_redis.url, s3, bucket, FARM_MAX_ATTEMPTS="1")
    ctx = migrated_farm(settings)
    count = 6
    job_id = submit_prompt(ctx, prompt="a kite over dunes", seed=7, count=count, params=PARAMS)
    logs = (tmp_path / "worker.log",)

    # No reaper runs here: the only way back into the queue for a failed render is the worker's
    # own retry with backoff.
    with farm_process("worker", "--name", "box:s3", env=farm_environ(**settings), log_path=logs[0]):
        wait_until(lambda: any(r.state == "succeeded" for r in renders_of(ctx, job_id)), 180,
                   "a first image to be stored", interval=0.05)
        stored_before = set(ctx.storage.list_keys())
        private_s3_server.kill()
        # Each render now meets the outage once boto3's own retries give up (about a second),
        # and goes back to the queue with the reason, to wait for the store. An outage is not
        # the worker's fault: it spends no attempt and counts nothing towards the blocklist, so
        # the store stays down here until more renders have met it than blocklist_after (3) and
        # max_attempts allow: what an outage of some seconds costs a busy worker.
        seen_waiting: dict[int, str] = {}

        def outage_met_by_enough_renders():
            seen_waiting.update({r.id: r.error for r in renders_of(ctx, job_id)
                                 if r.state == "queued" and r.error})
            return len(seen_waiting) > ctx.settings.blocklist_after

        wait_until(outage_met_by_enough_renders, 120, "renders to meet the S3 outage")
        for error in seen_waiting.values():  # they wait because S3 was unreachable, nothing else
            assert error.startswith("waiting for a service: StorageUnavailable"), error
            assert f'Could not connect to the endpoint URL: "{s3.endpoint_url}/' in error, error
        assert _failures_of(ctx, job_id, "box:s3") == 0  # nothing held against the worker
        private_s3_server.start()  # same ports, same data
        wait_until(lambda: job_finished(ctx, job_id), 240, "the job to finish")
        assert job_status(ctx, job_id) == "succeeded", _log_tails(*logs)

    for render in renders_of(ctx, job_id):
        if render.id in seen_waiting:  # done after the outage, by the same worker, on its first attempt
            assert render.attempts == 1 and render.error is None and render.rendered_by == "box:s3"
    # What was stored before the outage survived the restart, and no render was stored twice.
    assert stored_before <= set(ctx.storage.list_keys())
    assert_stored_exactly_once(ctx, job_id, count)
    ctx.db_engine.dispose()


def test_a_broker_restart_mid_job_loses_no_render(farm_home, postgres_url, private_redis, s3_server, s3_bucket,
                                                   tmp_path):
    # The minimum: the reaper sends a queued render again once its queue has been empty in the
    # broker this long, which is how renders whose messages died with the broker come back.
    settings = distributed_settings(farm_home, postgres_url, private_redis.url, s3_server, s3_bucket,
                                    FARM_STRANDED_AFTER_SECONDS="2")
    ctx = migrated_farm(settings)
    env = farm_environ(**settings)
    count = 10
    job_id = submit_prompt(ctx, prompt="a lantern in fog", seed=21, count=count, params=PARAMS)
    logs = tuple(tmp_path / name for name in ("a.log", "b.log", "reaper.log"))

    with farm_process("worker", "--name", "box:a", env=env, log_path=logs[0]) as worker_a, \
            farm_process("worker", "--name", "box:b", env=env, log_path=logs[1]) as worker_b, \
            farm_process("reaper", "--interval", "1", env=env, log_path=logs[2]) as reaper:
        wait_until(lambda: sum(r.state == "succeeded" for r in renders_of(ctx, job_id)) >= 2, 180,
                   "two images to be made", interval=0.05)
        private_redis.kill()
        # Messages for these renders were in Redis (each worker holds at most the one it runs):
        # they are gone now, with nothing on disk to bring them back.
        waiting = [r.id for r in renders_of(ctx, job_id) if r.state == "queued"]
        assert waiting, "the job finished before the broker went down: nothing was lost"
        # Keep the broker down until both workers have finished what they held, so they find it
        # gone (and must reconnect) when they acknowledge and ask for more.
        wait_until(lambda: not any(r.state in ("leased", "running") for r in renders_of(ctx, job_id)), 60,
                   "the renders in flight to end")
        private_redis.start()  # same port, empty
        wait_until(lambda: job_finished(ctx, job_id), 240, "the job to finish", interval=0.5)
        assert job_status(ctx, job_id) == "succeeded", _log_tails(*logs)
        # Nobody gave up on the broker: the workers reconnected by themselves, the reaper kept going.
        assert [p.poll() for p in (worker_a, worker_b, reaper)] == [None] * 3, _log_tails(*logs)
    # The reaper found renders whose messages were lost, and sent them again.
    assert "sent again (message lost)" in logs[2].read_text(), _log_tails(*logs)

    assert_stored_exactly_once(ctx, job_id, count)
    ctx.db_engine.dispose()
