"""Job control, the reaper, blocklisting and the worker registry, on the embedded farm."""

import dataclasses

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from farm.db.base import utcnow
from farm.db.models import Asset, Job, Render, Worker
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.jobs.control import cancel_job, pause_job, resume_job
from farm.jobs.dispatch import submit_prompt
from farm.jobs.execution import Outcome, execute_render
from farm.jobs.reaper import reap_expired_leases, sweep_orphans
from farm.queue.runtime import build_worker_context
from farm.storage import LocalFolderStorage
from farm.workers.registry import (
    WorkerIdentity, is_alive, mark_offline, record_heartbeat, register_worker, set_draining, worker_table,
)

SMALL = {"steps": 3, "width": 64, "height": 64}


def _submit(farm, count=3) -> tuple[int, list[int]]:
    job_id = submit_prompt(farm, prompt="a red shoe", seed=1, count=count, params=SMALL)
    with transaction(farm.session_factory) as session:
        return job_id, list(session.scalars(select(Render.id).where(Render.job_id == job_id).order_by(Render.index)))


def _states(farm, job_id):
    with transaction(farm.session_factory) as session:
        job = session.get(Job, job_id)
        return job.status, [r.state for r in job.renders]


def test_paused_job_renders_nothing_until_resumed(embedded_farm):
    job_id, render_ids = _submit(embedded_farm)
    ctx = build_worker_context(embedded_farm.settings, worker_name="w1")
    with transaction(embedded_farm.session_factory) as session:
        pause_job(session, job_id)
    assert [execute_render(ctx, r) for r in render_ids] == [Outcome.SKIPPED] * 3
    assert _states(embedded_farm, job_id) == ("paused", ["queued"] * 3)
    with transaction(embedded_farm.session_factory) as session:
        resume_job(session, job_id)
    assert [execute_render(ctx, r) for r in render_ids] == [Outcome.SUCCEEDED] * 3
    assert _states(embedded_farm, job_id) == ("succeeded", ["succeeded"] * 3)


def test_cancel_stops_queued_renders_and_a_running_one_at_its_next_step(embedded_farm):
    job_id, render_ids = _submit(embedded_farm)
    ctx = build_worker_context(embedded_farm.settings, worker_name="w1")
    original = ctx.engine.txt2img

    def cancel_midway(model, params, batch_count=1, progress=None):
        def on_step(step, total):
            if step == 2:
                with transaction(embedded_farm.session_factory) as session:
                    cancel_job(session, job_id)
            progress(step, total)
        return original(model, params, batch_count, on_step)

    ctx.engine.txt2img = cancel_midway
    assert execute_render(ctx, render_ids[0]) is Outcome.SKIPPED
    assert _states(embedded_farm, job_id) == ("cancelled", ["cancelled"] * 3)
    assert [execute_render(ctx, r) for r in render_ids[1:]] == [Outcome.SKIPPED] * 2
    with transaction(embedded_farm.session_factory) as session:
        assert session.scalar(select(func.count(Asset.id))) == 0


@pytest.mark.parametrize("action, status, message", [
    (resume_job, "queued", "not paused"),
    (cancel_job, "succeeded", "already"),
    (pause_job, "cancelled", "only a queued or running job"),
])
def test_job_control_refuses_the_wrong_state(embedded_farm, action, status, message):
    job_id, _ = _submit(embedded_farm, count=1)
    with transaction(embedded_farm.session_factory) as session:
        session.get(Job, job_id).status = status
    with pytest.raises(InvalidInput) as caught:
        with transaction(embedded_farm.session_factory) as session:
            action(session, job_id)
    assert caught.value.field == "job_id" and message in caught.value.message


def test_reaper_requeues_an_expired_lease_and_fails_a_render_out_of_attempts(embedded_farm):
    job_id, render_ids = _submit(embedded_farm, count=2)
    expired = utcnow() - timedelta(seconds=1)
    with transaction(embedded_farm.session_factory) as session:
        session.execute(update(Render).where(Render.id == render_ids[0]).values(
            state="running", lease_owner="dead-worker", lease_expires_at=expired, attempts=1))
        session.execute(update(Render).where(Render.id == render_ids[1]).values(
            state="running", lease_owner="dead-worker", lease_expires_at=expired,
            attempts=embedded_farm.settings.max_attempts))
    report = reap_expired_leases(embedded_farm)
    assert report.requeued == [render_ids[0]] and report.failed == [render_ids[1]]
    with transaction(embedded_farm.session_factory) as session:
        first, second = (session.get(Render, r) for r in render_ids)
        assert (first.state, first.lease_owner) == ("queued", None)
        assert "dead-worker" in first.error
        assert second.state == "failed" and "gave up" in second.error
    # the requeued render's fresh message is in the embedded broker's folder
    messages = list(embedded_farm.settings.embedded_broker_dir.glob("*.msg"))
    assert len(messages) == 3  # two from submission, one from the reaper
    assert reap_expired_leases(embedded_farm).requeued == []  # nothing left to reap


def test_a_live_lease_is_not_reaped(embedded_farm):
    _, render_ids = _submit(embedded_farm, count=1)
    with transaction(embedded_farm.session_factory) as session:
        session.execute(update(Render).where(Render.id == render_ids[0]).values(
            state="running", lease_owner="busy", lease_expires_at=utcnow() + timedelta(minutes=1)))
    assert reap_expired_leases(embedded_farm).requeued == []


def _identity(name="host-a:0"):
    return WorkerIdentity(name=name, host="host-a", gpu_index=0, gpu_name="NVIDIA H100", vram_total_bytes=80 << 30,
                          queues=["sd1"], torch_version="2.13.0", diffusers_version="0.42.1")


def test_worker_registry_heartbeat_drain_and_offline(embedded_farm):
    factory = embedded_farm.session_factory
    with transaction(factory) as session:
        register_worker(session, _identity(), heartbeat_seconds=10)
    with pytest.raises(InvalidInput) as caught:
        with transaction(factory) as session:
            register_worker(session, _identity(), heartbeat_seconds=10)
    assert caught.value.field == "name" and "already running" in caught.value.message
    with transaction(factory) as session:
        assert record_heartbeat(session, "host-a:0", warm_models=["tiny-sd"], vram_used_bytes=1 << 30) == "online"
        set_draining(session, "host-a:0", True)
        assert record_heartbeat(session, "host-a:0", warm_models=["tiny-sd"], vram_used_bytes=None) == "draining"
        row = worker_table(session, heartbeat_seconds=10)[0]
        assert (row["name"], row["status"], row["warm_models"]) == ("host-a:0", "draining", ["tiny-sd"])
        mark_offline(session, "host-a:0")
    with transaction(factory) as session:  # an offline name may register again
        register_worker(session, _identity(), heartbeat_seconds=10)


def test_a_silent_worker_counts_as_gone(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        worker = register_worker(session, _identity(), heartbeat_seconds=10)
        worker.heartbeat_at = utcnow() - timedelta(seconds=31)
        assert not is_alive(worker, heartbeat_seconds=10)
        assert worker_table(session, heartbeat_seconds=10)[0]["status"] == "lost"
        register_worker(session, _identity(), heartbeat_seconds=10)  # its name is free again
        assert session.scalar(select(func.count(Worker.id))) == 1


def test_draining_worker_hands_messages_back_without_leasing(embedded_farm):
    _, render_ids = _submit(embedded_farm, count=1)
    ctx = build_worker_context(embedded_farm.settings, worker_name="w1")
    ctx.draining.set()
    assert execute_render(ctx, render_ids[0]) is Outcome.HANDED_BACK
    with transaction(embedded_farm.session_factory) as session:
        assert session.get(Render, render_ids[0]).attempts == 0


def test_sweep_deletes_only_old_objects_without_an_asset(embedded_farm):
    _, render_ids = _submit(embedded_farm, count=1)
    ctx = build_worker_context(embedded_farm.settings, worker_name="w1")
    assert execute_render(ctx, render_ids[0]) is Outcome.SUCCEEDED
    storage = embedded_farm.storage
    storage.put("images/00/00/orphan.png", b"left by a worker that died", "image/png")
    assert sweep_orphans(embedded_farm) == []  # younger than the grace period
    assert sweep_orphans(embedded_farm, grace_seconds=0) == ["images/00/00/orphan.png"]
    with transaction(embedded_farm.session_factory) as session:
        asset = session.scalars(select(Asset)).one()
    assert storage.exists(asset.storage_key) and storage.exists(asset.thumbnail_key)
    assert not storage.exists("images/00/00/orphan.png")


class _BrokenStorage(LocalFolderStorage):
    def put(self, key, data, content_type):
        raise OSError("this worker's storage credentials are wrong")


def test_a_worker_that_keeps_failing_a_job_is_kept_off_it(embedded_farm, tmp_path):
    _, render_ids = _submit(embedded_farm, count=3)
    base = build_worker_context(embedded_farm.settings, worker_name="broken")
    broken = dataclasses.replace(base, storage=_BrokenStorage(tmp_path / "x"), blocklist_after=2, max_attempts=5)
    healthy = build_worker_context(embedded_farm.settings, worker_name="healthy")
    assert execute_render(broken, render_ids[0]) is Outcome.RETRY
    assert execute_render(broken, render_ids[1]) is Outcome.RETRY
    assert execute_render(broken, render_ids[2]) is Outcome.BLOCKLISTED  # kept off, nothing leased
    with transaction(embedded_farm.session_factory) as session:
        assert session.get(Render, render_ids[2]).attempts == 0
    assert [execute_render(healthy, r) for r in render_ids] == [Outcome.SUCCEEDED] * 3
    with transaction(embedded_farm.session_factory) as session:
        assert {r.rendered_by for r in session.scalars(select(Render))} == {"healthy"}
    # another job is a fresh start for the broken worker
    _, other = _submit(embedded_farm, count=1)
    assert execute_render(broken, other[0]) is Outcome.RETRY


def test_job_says_why_its_renders_wait(embedded_farm):
    from farm.jobs.queries import job_report

    job_id, _ = _submit(embedded_farm, count=1)
    report = job_report(embedded_farm.session_factory, job_id)
    assert report["waiting_reason"] == "no live worker serves queue 'sd1' (model tiny-sd, sd1)"
    with transaction(embedded_farm.session_factory) as session:
        register_worker(session, dataclasses.replace(_identity(), queues=["sdxl"]), heartbeat_seconds=10)
    assert "no live worker serves queue 'sd1'" in job_report(embedded_farm.session_factory, job_id)["waiting_reason"]
    with transaction(embedded_farm.session_factory) as session:
        register_worker(session, dataclasses.replace(_identity("host-b:0"), queues=["sd1"]), heartbeat_seconds=10)
    assert job_report(embedded_farm.session_factory, job_id)["waiting_reason"] is None
    with transaction(embedded_farm.session_factory) as session:
        set_draining(session, "host-b:0", True)
    assert "draining" in job_report(embedded_farm.session_factory, job_id)["waiting_reason"]
    with transaction(embedded_farm.session_factory) as session:
        pause_job(session, job_id)
    assert job_report(embedded_farm.session_factory, job_id)["waiting_reason"] == "the job is paused"
