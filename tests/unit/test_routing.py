"""Routing on the embedded farm: pool queues, warm-model-first, stranded renders, dead brokers,
and the job that fails when every worker serving it is blocklisted."""

import dataclasses
from datetime import timedelta

from sqlalchemy import select, update

from farm.context import FarmContext
from farm.db.base import utcnow
from farm.db.models import Job, Render
from farm.db.session import transaction
from farm.jobs.dispatch import submit_prompt
from farm.jobs.execution import Outcome, execute_render
from farm.jobs.reaper import resend_stranded
from farm.queue.routing import known_queues, queue_depth, shared_queue, worker_queue
from farm.queue.runtime import build_worker_context
from farm.storage import LocalFolderStorage, StorageUnavailable
from farm.workers.registry import WorkerIdentity, record_heartbeat, register_worker, set_draining

SMALL = {"steps": 2, "width": 64, "height": 64}


def _register(farm, name, queues=("sd1",), warm=()):
    with transaction(farm.session_factory) as session:
        register_worker(session, WorkerIdentity(
            name=name, host=name.split(":")[0], gpu_index=0, gpu_name="NVIDIA H100", vram_total_bytes=80 << 30,
            queues=list(queues), torch_version="2.13.0", diffusers_version="0.42.1"),
            heartbeat_seconds=farm.settings.heartbeat_seconds)
        record_heartbeat(session, name, warm_models=list(warm), vram_used_bytes=None)


def _submit(farm, count):
    return submit_prompt(farm, prompt="a red shoe", seed=1, count=count, params=SMALL)


def _renders(farm, job_id):
    with transaction(farm.session_factory) as session:
        return session.scalars(select(Render).where(Render.job_id == job_id).order_by(Render.index)).all()


def test_queue_routes_send_a_model_or_an_architecture_to_a_pool(embedded_farm):
    settings = embedded_farm.settings.model_copy(update={"queue_routes": {"sdxl": "big-gpus", "tiny-sd": "cpu"}})
    assert shared_queue(settings, kind="txt2img", model_name="tiny-sd", architecture="sd1") == "cpu"
    assert shared_queue(settings, kind="txt2img", model_name="other", architecture="sdxl") == "big-gpus"
    assert shared_queue(settings, kind="txt2img", model_name="other", architecture="sd2") == "sd2"
    assert shared_queue(settings, kind="upscale", model_name="lanczos", architecture="upscaler") == "upscale"
    assert known_queues(settings) == ("sd1", "sd2", "sdxl", "upscale", "big-gpus", "cpu")

    routed = FarmContext(settings)  # the same database, routed differently
    try:
        job_id = _submit(routed, 2)
        renders = _renders(routed, job_id)
        assert [r.queue for r in renders] == ["cpu", "cpu"]
        assert all(r.last_enqueued_at is not None for r in renders)
        assert queue_depth(routed.celery, "cpu") == 2  # the messages really are in the broker
    finally:
        routed.db_engine.dispose()


def test_renders_go_first_to_a_live_worker_holding_their_model_warm(embedded_farm):
    _register(embedded_farm, "box-a:0", warm=["tiny-sd"])
    _register(embedded_farm, "box-b:0", warm=[])
    _register(embedded_farm, "box-c:0", queues=["sdxl"], warm=["tiny-sd"])  # does not serve sd1
    depth = embedded_farm.settings.warm_queue_depth
    job_id = _submit(embedded_farm, depth + 2)
    queues = [r.queue for r in _renders(embedded_farm, job_id)]
    # The warm worker gets as many as its own queue may hold; the rest wait for anyone.
    assert queues == [worker_queue("box-a:0")] * depth + ["sd1", "sd1"]
    assert queue_depth(embedded_farm.celery, worker_queue("box-a:0")) == depth

    later = _submit(embedded_farm, 1)  # box-a's own queue is full
    assert [r.queue for r in _renders(embedded_farm, later)] == ["sd1"]
    with transaction(embedded_farm.session_factory) as session:
        set_draining(session, "box-a:0", True)
        record_heartbeat(session, "box-b:0", warm_models=["tiny-sd"], vram_used_bytes=None)
    drained = _submit(embedded_farm, 1)  # a draining worker gets nothing; box-b is warm now
    assert [r.queue for r in _renders(embedded_farm, drained)] == [worker_queue("box-b:0")]


def test_warm_routing_can_be_turned_off(embedded_farm):
    _register(embedded_farm, "box-a:0", warm=["tiny-sd"])
    cold = FarmContext(embedded_farm.settings.model_copy(update={"warm_queue_depth": 0}))
    try:
        assert [r.queue for r in _renders(cold, _submit(cold, 2))] == ["sd1", "sd1"]
    finally:
        cold.db_engine.dispose()


def _age(farm, render_id, **values):
    with transaction(farm.session_factory) as session:
        session.execute(update(Render).where(Render.id == render_id).values(**values))


def test_the_reaper_sends_again_only_renders_whose_message_is_lost(embedded_farm):
    long_ago = utcnow() - timedelta(hours=1)
    job_id = _submit(embedded_farm, 4)
    never_sent, in_dead_worker_queue, waiting, fresh = [r.id for r in _renders(embedded_farm, job_id)]
    _age(embedded_farm, never_sent, queue=None, last_enqueued_at=None, queued_at=long_ago)
    _age(embedded_farm, in_dead_worker_queue, queue=worker_queue("gone:0"), last_enqueued_at=long_ago)
    _age(embedded_farm, waiting, last_enqueued_at=long_ago)  # its message still waits in sd1
    assert queue_depth(embedded_farm.celery, "sd1") == 4
    assert sorted(resend_stranded(embedded_farm)) == sorted([never_sent, in_dead_worker_queue])

    with embedded_farm.celery.connection_for_write() as connection:
        connection.default_channel.queue_purge("sd1")  # a broker restart without persistence
    _age(embedded_farm, never_sent, last_enqueued_at=long_ago)
    _age(embedded_farm, in_dead_worker_queue, last_enqueued_at=long_ago)
    _age(embedded_farm, waiting, last_enqueued_at=long_ago)
    assert sorted(resend_stranded(embedded_farm)) == sorted([never_sent, in_dead_worker_queue, waiting])
    assert fresh not in resend_stranded(embedded_farm)  # sent a moment ago: not yet suspicious
    assert queue_depth(embedded_farm.celery, "sd1") == 3
    renders = {r.id: r for r in _renders(embedded_farm, job_id)}
    assert renders[in_dead_worker_queue].queue == "sd1"
    assert all(r.last_enqueued_at > long_ago for r in renders.values())


def test_a_job_submitted_while_the_broker_is_down_is_kept_for_the_reaper(embedded_farm):
    down = FarmContext(embedded_farm.settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"}))
    try:
        job_id = _submit(down, 2)  # no exception: the job is safe in the database
        assert [(r.state, r.last_enqueued_at) for r in _renders(down, job_id)] == [("queued", None)] * 2
    finally:
        down.db_engine.dispose()


class _BrokenStorage(LocalFolderStorage):
    def put(self, key, data, content_type):
        raise OSError("this worker's storage credentials are wrong")


def _broken_worker(farm, tmp_path, name):
    _register(farm, name)
    return dataclasses.replace(build_worker_context(farm.settings, worker_name=name),
                               storage=_BrokenStorage(tmp_path / name), blocklist_after=1, max_attempts=5)


def test_a_job_fails_when_every_live_worker_serving_it_is_blocklisted(embedded_farm, tmp_path):
    job_id = _submit(embedded_farm, 3)
    first, second, third = [r.id for r in _renders(embedded_farm, job_id)]
    broken = _broken_worker(embedded_farm, tmp_path, "box-a:0")
    assert execute_render(broken, first) is Outcome.RETRY
    _register(embedded_farm, "box-b:0")  # a live worker that may still take the job
    assert execute_render(broken, second) is Outcome.BLOCKLISTED
    other = _broken_worker(embedded_farm, tmp_path, "box-c:0")
    with transaction(embedded_farm.session_factory) as session:
        set_draining(session, "box-b:0", True)  # no longer takes work
    assert execute_render(other, second) is Outcome.RETRY  # box-c fails too, and is blocklisted
    assert execute_render(broken, third) is Outcome.FAILED
    with transaction(embedded_farm.session_factory) as session:
        job = session.get(Job, job_id)
        assert job.status == "failed"
        assert [r.state for r in job.renders] == ["failed"] * 3
        message = job.renders[2].error
    assert "every live worker serving queue 'sd1' failed this job 1 times" in message
    assert "box-a:0, box-c:0" in message and "storage credentials are wrong" in message


class _StoreDown(LocalFolderStorage):
    def put(self, key, data, content_type):
        raise StorageUnavailable("s3://bucket at http://127.0.0.1:1 cannot be reached: connection refused")


def test_an_object_store_outage_spends_no_attempt_and_blocklists_nobody(embedded_farm, tmp_path):
    job_id = _submit(embedded_farm, 2)
    first, second = [r.id for r in _renders(embedded_farm, job_id)]
    _register(embedded_farm, "box-a:0")
    down = dataclasses.replace(build_worker_context(embedded_farm.settings, worker_name="box-a:0"),
                               storage=_StoreDown(tmp_path / "down"), blocklist_after=1, max_attempts=1)
    for _ in range(3):  # more outages than attempts and blocklist allow
        assert execute_render(down, first) is Outcome.OUTAGE
    render = _renders(embedded_farm, job_id)[0]
    assert (render.state, render.attempts) == ("queued", 0)
    assert render.error.startswith("waiting for a service: StorageUnavailable")
    # The store is back: the same worker renders both, nothing was held against it.
    up = build_worker_context(embedded_farm.settings, worker_name="box-a:0")
    assert [execute_render(up, r) for r in (first, second)] == [Outcome.SUCCEEDED] * 2
    with transaction(embedded_farm.session_factory) as session:
        assert session.get(Job, job_id).status == "succeeded"
