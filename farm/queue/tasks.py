"""Thin tasks: an id in, one service call. Their names and arguments are a public API:
messages already queued must still work after a deploy, so change them only compatibly."""

from __future__ import annotations

import time

from celery import shared_task
from sqlalchemy.exc import OperationalError as DatabaseUnreachable

from farm.db.models import Render
from farm.db.session import transaction
from farm.jobs.execution import Outcome, execute_render
from farm.queue.routing import send_renders
from farm.queue.runtime import worker_context

RETRY_BACKOFF_SECONDS = (5, 30, 120)
OUTAGE_RETRY_SECONDS = 10
DATABASE_RETRY_SECONDS = 10
BLOCKLISTED_PAUSE_SECONDS = 1.0


@shared_task(name="farm.render", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def render(self, render_id: int) -> str:
    ctx = worker_context(self.app)
    try:
        outcome = execute_render(ctx, render_id)
    except DatabaseUnreachable as error:
        # The database is the record of what to do; without it, put the message back (the
        # broker still works) and try again shortly, rather than acknowledge and lose it.
        # A connection found dead (the database restarted since the worker last used it; the
        # worker engine does not pre-ping) has made SQLAlchemy drop the pool: try again at once,
        # once; a lease it may have taken is its own, and a worker takes its own lease again.
        if error.connection_invalidated and not self.request.retries:
            raise self.retry(countdown=0)
        raise self.retry(countdown=DATABASE_RETRY_SECONDS)
    # A render that goes back to the queue gets a fresh message, routed again, and this one is
    # acknowledged. Routing again (rather than Celery's retry, which republishes to the same
    # queue) keeps it off this worker's own queue: another worker should have it.
    if outcome is Outcome.HANDED_BACK:  # this worker drains
        send_renders(self.app, ctx.session_factory, [render_id], avoid_worker=ctx.worker_name)
    elif outcome is Outcome.BLOCKLISTED:
        send_renders(self.app, ctx.session_factory, [render_id], avoid_worker=ctx.worker_name)
        # Stay busy for a moment: with prefetch 1 this worker fetches nothing meanwhile, so an
        # idle worker that may render the job takes the message.
        time.sleep(BLOCKLISTED_PAUSE_SECONDS)
    elif outcome is Outcome.OUTAGE:
        send_renders(self.app, ctx.session_factory, [render_id], countdown=OUTAGE_RETRY_SECONDS)
    elif outcome is Outcome.RETRY:
        attempts_failed = _attempts(ctx, render_id)
        delay = RETRY_BACKOFF_SECONDS[min(attempts_failed - 1, len(RETRY_BACKOFF_SECONDS) - 1)]
        send_renders(self.app, ctx.session_factory, [render_id], avoid_worker=ctx.worker_name, countdown=delay)
    return outcome.value


def _attempts(ctx, render_id: int) -> int:
    with transaction(ctx.session_factory) as session:
        return max(session.get(Render, render_id).attempts, 1)
