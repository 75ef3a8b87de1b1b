"""Pause, resume and cancel a job on behalf of a user: what the dashboard and the API call.

The user must see the job's campaign (a job they cannot see is not found); the role check is the
caller's (permission jobs.control). farm.jobs.control does the work and audits it; a resumed
job's renders are queued again after the commit.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy.orm import Session

from farm.context import FarmContext
from farm.db.models import Job, User
from farm.db.session import transaction
from farm.jobs.control import cancel_job, pause_job, resume_job
from farm.jobs.dispatch import enqueue_job
from farm.jobs.progress import require_visible_job

ACTIONS: dict[str, Callable[[Session, int, User | None], Job]] = {
    "pause": pause_job,
    "resume": resume_job,
    "cancel": cancel_job,
}


def control_job(ctx: FarmContext, user: User, job_id: int, action: str) -> str:
    """Apply `action` (pause, resume or cancel) to the job; return its status afterwards.

    InvalidInput("job_id") when the job's status does not allow it (e.g. resuming a running job),
    NotFound when the user cannot see the job. Nothing is written in either case.
    """
    control = ACTIONS[action]
    with transaction(ctx.session_factory) as session:
        require_visible_job(session, user, job_id)
        status = control(session, job_id, user).status
    if action == "resume":
        enqueue_job(ctx, job_id)
    return status
