"""Thin tasks: an id in, one service call. Their names and arguments are a public API:
messages already queued must still work after a deploy, so change them only compatibly."""

from __future__ import annotations

from celery import shared_task

from farm.jobs.execution import Outcome, execute_render
from farm.queue.runtime import worker_context

RETRY_BACKOFF_SECONDS = (5, 30, 120)
BLOCKLISTED_RETRY_SECONDS = 2


@shared_task(name="farm.render", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def render(self, render_id: int) -> str:
    outcome = execute_render(worker_context(self.app), render_id)
    if outcome is Outcome.HANDED_BACK:
        # A fresh message on the same queue, for a worker that is not draining.
        raise self.retry(countdown=0)
    if outcome is Outcome.BLOCKLISTED:
        # Back to the queue, a little later, so another worker is likely to take it first.
        raise self.retry(countdown=BLOCKLISTED_RETRY_SECONDS)
    if outcome is Outcome.RETRY:
        delay = RETRY_BACKOFF_SECONDS[min(self.request.retries, len(RETRY_BACKOFF_SECONDS) - 1)]
        raise self.retry(countdown=delay)
    return outcome.value
