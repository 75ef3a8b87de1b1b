"""The reaper: gives renders back to the queue when the worker holding them is gone, and
sweeps objects that no asset refers to out of storage.

A worker renews its lease on a render with every progress report. A lease that has expired
means the worker died (or hangs); the render goes back to `queued` and a fresh message is sent.
A render that has used up its attempts this way is failed instead, so a render that crashes
every worker that touches it cannot cycle forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from farm.context import FarmContext
from farm.db.base import utcnow
from farm.db.models import Asset, Job, RegisteredModel, Render
from farm.db.session import transaction
from farm.jobs.service import refresh_job_status
from farm.queue.app import enqueue_render


@dataclass(frozen=True)
class ReapReport:
    requeued: list[int]
    failed: list[int]


def reap_expired_leases(ctx: FarmContext) -> ReapReport:
    now = utcnow()
    requeue: list[tuple[int, str, int]] = []
    failed: list[int] = []
    with transaction(ctx.session_factory) as session:
        rows = session.execute(
            select(Render, RegisteredModel.architecture, Job.priority)
            .join(RegisteredModel, Render.model_id == RegisteredModel.id)
            .join(Job, Render.job_id == Job.id)
            .where(Render.state.in_(("leased", "running")), Render.lease_expires_at < now)
            .with_for_update(of=Render, skip_locked=True)
        ).all()
        for render, architecture, priority in rows:
            lost = f"worker {render.lease_owner} stopped reporting (lease expired)"
            if render.attempts >= ctx.settings.max_attempts:
                render.state, render.finished_at = "failed", now
                render.error = f"{lost}; gave up after {render.attempts} attempts"
                failed.append(render.id)
            else:
                render.state = "queued"
                render.error = lost
                requeue.append((render.id, architecture, priority))
            render.lease_owner = None
            render.lease_expires_at = None
            session.flush()
            refresh_job_status(session, render.job_id)
    for render_id, architecture, priority in requeue:
        enqueue_render(ctx.celery, render_id, architecture, priority)
    return ReapReport(requeued=[r[0] for r in requeue], failed=failed)


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
