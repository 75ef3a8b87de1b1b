"""The reaper: gives renders back to the queue when the worker holding them is gone.

A worker renews its lease on a render with every progress report. A lease that has expired
means the worker died (or hangs); the render goes back to `queued` and a fresh message is sent.
A render that has used up its attempts this way is failed instead, so a render that crashes
every worker that touches it cannot cycle forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from farm.context import FarmContext
from farm.db.base import utcnow
from farm.db.models import Job, RegisteredModel, Render
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
