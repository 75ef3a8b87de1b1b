"""What a worker does with one render id: lease, generate, store, finish.

No database session is held open while the model works: the lease, progress updates and the
finish are each their own short transaction. A render that is finished, or leased by someone
whose lease is still live, is left alone, so a redelivered message does nothing.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import time
import traceback
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

from PIL import Image
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from farm.db.base import utcnow
from farm.db.models import Asset, Job, JobWorkerFailure, Render
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.jobs.service import refresh_job_status
from farm.render.engine import ModelSource, RenderEngine
from farm.render.params import Txt2ImgParams
from farm.render.png import THUMBNAIL_MIME_TYPE, encode_png, format_infotext, make_thumbnail
from farm.storage import ObjectStorage, content_key

log = logging.getLogger(__name__)
PROGRESS_WRITE_INTERVAL_SECONDS = 0.5


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"      # finished, cancelled, paused, or leased by a live worker
    HANDED_BACK = "handed_back"  # this worker is draining: the message goes back to the queue
    BLOCKLISTED = "blocklisted"  # this worker failed the job too often: back to the queue for others
    RETRY = "retry"          # failed this time; back in the queue
    FAILED = "failed"        # failed for good


@dataclass(frozen=True)
class WorkerContext:
    """What a worker process brings to every render it runs."""

    session_factory: sessionmaker[Session]
    storage: ObjectStorage
    engine: RenderEngine
    worker_name: str
    lease_seconds: int
    max_attempts: int
    blocklist_after: int
    # Set while the registry says this worker drains: it takes no new render.
    draining: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class RenderPlan:
    """Everything needed to generate, copied out of the database before the model runs."""

    render_id: int
    job_id: int
    params: Txt2ImgParams
    model: ModelSource
    license_identifier: str
    attempt: int


def _lease(ctx: WorkerContext, render_id: int) -> RenderPlan | None:
    now = utcnow()
    with transaction(ctx.session_factory) as session:
        claimable = or_(
            Render.state == "queued",
            and_(Render.state.in_(("leased", "running")), Render.lease_expires_at < now),
        )
        # A paused job's renders wait in the database; resuming queues them again.
        job_accepts_work = Render.job_id.in_(select(Job.id).where(Job.status.not_in(("paused", "cancelled"))))
        leased = session.execute(
            update(Render)
            .where(Render.id == render_id, claimable, job_accepts_work)
            .values(state="leased", lease_owner=ctx.worker_name,
                    lease_expires_at=now + timedelta(seconds=ctx.lease_seconds),
                    attempts=Render.attempts + 1, error=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not leased:
            return None
        render = session.get(Render, render_id)
        model = render.model
        fields = {k: render.params[k] for k in Txt2ImgParams.__dataclass_fields__}
        return RenderPlan(
            render_id=render.id, job_id=render.job_id, params=Txt2ImgParams(**fields),
            model=ModelSource(name=model.name, path=Path(model.uri), architecture=model.architecture,
                              sha256=model.sha256),
            license_identifier=model.license.identifier, attempt=render.attempts,
        )


def _owned(ctx: WorkerContext, render_id: int):
    """A WHERE clause matching the render only while this worker still holds its lease."""
    return and_(Render.id == render_id, Render.lease_owner == ctx.worker_name,
                Render.state.in_(("leased", "running")))


def _mark_running(ctx: WorkerContext, plan: RenderPlan) -> None:
    with transaction(ctx.session_factory) as session:
        session.execute(update(Render).where(_owned(ctx, plan.render_id))
                        .values(state="running", started_at=utcnow(), progress_step=0)
                        .execution_options(synchronize_session=False))
        refresh_job_status(session, plan.job_id)


def _progress_writer(ctx: WorkerContext, render_id: int) -> Callable[[int, int], None]:
    """Record step progress and renew the lease, at most every PROGRESS_WRITE_INTERVAL_SECONDS."""
    last_write = 0.0

    def on_step(step: int, total: int) -> None:
        nonlocal last_write
        if time.monotonic() - last_write < PROGRESS_WRITE_INTERVAL_SECONDS and step < total:
            return
        last_write = time.monotonic()
        with transaction(ctx.session_factory) as session:
            session.execute(update(Render).where(_owned(ctx, render_id))
                            .values(progress_step=step, progress_total=total,
                                    lease_expires_at=utcnow() + timedelta(seconds=ctx.lease_seconds))
                            .execution_options(synchronize_session=False))
            job_status = session.scalar(select(Job.status).join(Render, Render.job_id == Job.id)
                                        .where(Render.id == render_id))
        if job_status == "cancelled":
            raise RenderCancelled()

    return on_step


class RenderCancelled(Exception):
    """Raised from the progress callback to stop a render whose job was cancelled."""


@dataclass(frozen=True)
class StoredImage:
    key: str
    sha256: str
    size_bytes: int
    thumbnail_key: str
    width: int
    height: int


def _store(ctx: WorkerContext, plan: RenderPlan, image: Image.Image) -> StoredImage:
    infotext = format_infotext(plan.params, plan.model.name, plan.model.sha256)
    png = encode_png(image, infotext, {
        "render_id": plan.render_id, "job_id": plan.job_id, "model": plan.model.name,
        "model_sha256": plan.model.sha256, "license": plan.license_identifier,
    })
    thumbnail = make_thumbnail(image)
    key = content_key(png, ".png", namespace="images")
    thumbnail_key = content_key(thumbnail, ".webp", namespace="thumbnails")
    # Objects first, row second: a crash in between leaves an object without a row (swept
    # later), never a row pointing at nothing.
    ctx.storage.put(key, png, "image/png")
    ctx.storage.put(thumbnail_key, thumbnail, THUMBNAIL_MIME_TYPE)
    return StoredImage(key=key, sha256=hashlib.sha256(png).hexdigest(), size_bytes=len(png),
                       thumbnail_key=thumbnail_key, width=image.width, height=image.height)


def _job_cancelled(session: Session, job_id: int) -> bool:
    return session.scalar(select(Job.status).where(Job.id == job_id)) == "cancelled"


def _finish(ctx: WorkerContext, plan: RenderPlan, stored: StoredImage) -> bool:
    with transaction(ctx.session_factory) as session:
        if _job_cancelled(session, plan.job_id):
            _end_cancelled(session, ctx, plan)  # its objects are orphans now; the sweep removes them
            return False
        finished = session.execute(
            update(Render).where(_owned(ctx, plan.render_id))
            .values(state="succeeded", finished_at=utcnow(), progress_step=plan.params.steps,
                    rendered_by=ctx.worker_name, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not finished:
            return False  # our lease was taken over; the other worker's result stands
        session.add(Asset(
            render_id=plan.render_id, storage_key=stored.key, sha256=stored.sha256,
            size_bytes=stored.size_bytes, format="png", width=stored.width, height=stored.height,
            thumbnail_key=stored.thumbnail_key,
        ))
        refresh_job_status(session, plan.job_id)
    return True


def _end_cancelled(session: Session, ctx: WorkerContext, plan: RenderPlan) -> None:
    session.execute(
        update(Render).where(_owned(ctx, plan.render_id))
        .values(state="cancelled", finished_at=utcnow(), lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def _is_blocklisted(ctx: WorkerContext, render_id: int) -> bool:
    with transaction(ctx.session_factory) as session:
        failures = session.scalar(
            select(JobWorkerFailure.failures)
            .join(Render, Render.job_id == JobWorkerFailure.job_id)
            .where(Render.id == render_id, JobWorkerFailure.worker_name == ctx.worker_name)
        )
    return (failures or 0) >= ctx.blocklist_after


def _count_failure(session: Session, ctx: WorkerContext, job_id: int, message: str) -> None:
    # One worker runs one render at a time, so no two transactions insert the same pair.
    entry = session.scalar(select(JobWorkerFailure).where(
        JobWorkerFailure.job_id == job_id, JobWorkerFailure.worker_name == ctx.worker_name))
    if entry is None:
        entry = JobWorkerFailure(job_id=job_id, worker_name=ctx.worker_name, failures=0)
        session.add(entry)
    entry.failures += 1
    entry.last_error = message
    entry.updated_at = utcnow()


def _record_failure(ctx: WorkerContext, plan: RenderPlan, error: BaseException, retryable: bool) -> Outcome:
    give_up = not retryable or plan.attempt >= ctx.max_attempts
    message = f"{type(error).__name__}: {error}"
    with transaction(ctx.session_factory) as session:
        _count_failure(session, ctx, plan.job_id, message)
        session.execute(
            update(Render).where(_owned(ctx, plan.render_id))
            .values(state="failed" if give_up else "queued", error=message,
                    finished_at=utcnow() if give_up else None, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        refresh_job_status(session, plan.job_id)
    return Outcome.FAILED if give_up else Outcome.RETRY


def execute_render(ctx: WorkerContext, render_id: int) -> Outcome:
    if ctx.draining.is_set():
        return Outcome.HANDED_BACK
    if _is_blocklisted(ctx, render_id):
        return Outcome.BLOCKLISTED
    plan = _lease(ctx, render_id)
    if plan is None:
        return Outcome.SKIPPED
    try:
        _mark_running(ctx, plan)
        images = ctx.engine.txt2img(plan.model, plan.params, progress=_progress_writer(ctx, render_id))
        stored = _store(ctx, plan, images[0])
    except RenderCancelled:
        with transaction(ctx.session_factory) as session:
            _end_cancelled(session, ctx, plan)
        return Outcome.SKIPPED
    except InvalidInput as error:
        return _record_failure(ctx, plan, error, retryable=False)
    except Exception as error:  # any other failure may be transient (OOM, storage outage)
        log.warning("render %s attempt %s failed:\n%s", render_id, plan.attempt, traceback.format_exc())
        return _record_failure(ctx, plan, error, retryable=True)
    return Outcome.SUCCEEDED if _finish(ctx, plan, stored) else Outcome.SKIPPED
