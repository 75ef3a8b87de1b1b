"""The reaper: gives renders back to the queue when the worker holding them is gone, sends
renders again whose message was lost, and sweeps objects that no asset refers to out of storage.

A worker renews its lease on a render with every progress report. A lease that has expired
means the worker died (or hangs); the render goes back to `queued` and a fresh message is sent.
A render that has used up its attempts this way is failed instead, so a render that crashes
every worker that touches it cannot cycle forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from farm.context import FarmContext
from farm.db.base import utcnow
from farm.db.models import Asset, Job, Render, Worker
from farm.db.session import transaction
from farm.jobs.service import refresh_job_status
from farm.queue.routing import WORKER_QUEUE_PREFIX, queue_depth, send_renders, worker_queue
from farm.workers.registry import is_alive


@dataclass(frozen=True)
class ReapReport:
    requeued: list[int]
    failed: list[int]


def reap_expired_leases(ctx: FarmContext) -> ReapReport:
    now = utcnow()
    requeue: list[int] = []
    failed: list[int] = []
    with transaction(ctx.session_factory) as session:
        rows = session.scalars(
            select(Render)
            .where(Render.state.in_(("leased", "running")), Render.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        ).all()
        for render in rows:
            lost = f"worker {render.lease_owner} stopped reporting (lease expired)"
            if render.attempts >= ctx.settings.max_attempts:
                render.state, render.finished_at = "failed", now
                render.error = f"{lost}; gave up after {render.attempts} attempts"
                failed.append(render.id)
            else:
                render.state = "queued"
                render.error = lost
                requeue.append(render.id)
            render.lease_owner = None
            render.lease_expires_at = None
            session.flush()
            refresh_job_status(session, render.job_id)
    send_renders(ctx.celery, ctx.session_factory, requeue)
    return ReapReport(requeued=requeue, failed=failed)


def resend_stranded(ctx: FarmContext) -> list[int]:
    """Send again the queued renders whose message is gone; return their ids.

    A render is stranded when it has waited `stranded_after_seconds` since its last message and
    - it never got one (the broker was down right after the job was committed), or
    - its message went to the own queue of a worker that is no longer live and online, or
    - its queue is empty in the broker (a broker restarted without persistence lost it).
    A render that merely waits behind a long backlog is left alone: its queue is not empty.
    Sending one twice is harmless anyway: the lease lets only one message do the work.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=ctx.settings.stranded_after_seconds)
    with transaction(ctx.session_factory) as session:
        waiting = session.execute(
            select(Render.id, Render.queue, Render.last_enqueued_at)
            .join(Job, Render.job_id == Job.id)
            .where(Render.state == "queued", Job.status.not_in(("paused", "cancelled")),
                   func.coalesce(Render.last_enqueued_at, Render.queued_at) < cutoff)
        ).all()
        if not waiting:
            return []
        taking_work = {worker_queue(w.name) for w in session.scalars(select(Worker).where(Worker.status == "online"))
                       if is_alive(w, ctx.settings.heartbeat_seconds, now)}
    depths: dict[str, int] = {}

    def lost(queue: str | None, sent_at) -> bool:
        if sent_at is None or queue is None:
            return True
        if queue.startswith(WORKER_QUEUE_PREFIX) and queue not in taking_work:
            return True
        if queue not in depths:
            depths[queue] = queue_depth(ctx.celery, queue)
        return depths[queue] == 0

    stranded = [render_id for render_id, queue, sent_at in waiting if lost(queue, sent_at)]
    send_renders(ctx.celery, ctx.session_factory, stranded)
    return stranded


SWEEP_BATCH = 500


def sweep_orphans(ctx: FarmContext, grace_seconds: int | None = None) -> list[str]:
    """Delete stored objects that no asset refers to and that are older than the grace period.

    Workers write the object first and the asset row second, so a worker that dies in between
    (or whose result lost a race) leaves an orphan; the grace period keeps the sweep away from
    writes whose row is still on its way.
    """
    grace = timedelta(seconds=ctx.settings.orphan_grace_seconds if grace_seconds is None else grace_seconds)
    cutoff = utcnow() - grace
    old_keys = [o.key for o in ctx.storage.list_objects() if o.modified_at < cutoff]
    deleted = []
    for start in range(0, len(old_keys), SWEEP_BATCH):
        batch = old_keys[start:start + SWEEP_BATCH]
        with transaction(ctx.session_factory) as session:
            referenced = set(session.scalars(select(Asset.storage_key).where(Asset.storage_key.in_(batch))))
            referenced |= set(session.scalars(select(Asset.thumbnail_key).where(Asset.thumbnail_key.in_(batch))))
        for key in batch:
            if key not in referenced:
                ctx.storage.delete(key)
                deleted.append(key)
    return deleted
