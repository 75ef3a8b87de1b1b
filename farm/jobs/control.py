"""Pausing, resuming and cancelling jobs.

Pause keeps the job's queued renders in the database (workers skip their messages) and resume
queues them again (held renders stay held until the license policy allows them). Cancel stops
every render not yet running, held ones included; renders already running stop at their next
progress report and end as cancelled.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.base import utcnow
from farm.db.models import Job, Render, User
from farm.errors import InvalidInput
from farm.jobs.service import refresh_job_status

FINISHED_JOB_STATUSES = ("succeeded", "failed", "cancelled")


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise InvalidInput("job_id", f"no job {job_id}")
    return job


def _audit(session: Session, job: Job, action: str, before: str, actor: User | None) -> None:
    record_event(session, action=action, entity_type="job", entity_id=job.id, actor=actor,
                 before={"status": before}, after={"status": job.status})


def pause_job(session: Session, job_id: int, actor: User | None = None) -> Job:
    job = _job(session, job_id)
    if job.status not in ("queued", "running"):
        raise InvalidInput("job_id", f"job {job_id} is {job.status}; only a queued or running job can be paused")
    before, job.status = job.status, "paused"
    _audit(session, job, "job.paused", before, actor)
    return job


def resume_job(session: Session, job_id: int, actor: User | None = None) -> Job:
    """Un-pause; the caller queues the job's renders again after the commit (dispatch.enqueue_job)."""
    job = _job(session, job_id)
    if job.status != "paused":
        raise InvalidInput("job_id", f"job {job_id} is {job.status}, not paused")
    job.status = "queued"
    refresh_job_status(session, job_id)
    _audit(session, job, "job.resumed", "paused", actor)
    return job


def cancel_job(session: Session, job_id: int, actor: User | None = None) -> Job:
    job = _job(session, job_id)
    if job.status in FINISHED_JOB_STATUSES:
        raise InvalidInput("job_id", f"job {job_id} is {job.status} already")
    before = job.status
    session.execute(
        update(Render).where(Render.job_id == job_id, Render.state.in_(("queued", "held")))
        .values(state="cancelled", finished_at=utcnow()).execution_options(synchronize_session=False)
    )
    job.status = "cancelled"
    job.finished_at = utcnow()
    _audit(session, job, "job.cancelled", before, actor)
    return job
