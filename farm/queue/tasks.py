"""Thin tasks: an id in, one service call. Their names and arguments are a public API:
messages already queued must still work after a deploy, so change them only compatibly."""

from __future__ import annotations

import time

from celery import shared_task

from farm.jobs.execution import Outcome, execute_render
from farm.queue.runtime import worker_context

RETRY_BACKOFF_SECONDS = (5, 30, 120)
BLOCKLISTED_PAUSE_SECONDS = 1.0


@shared_task(name="farm.render", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def render(self, render_id: int) -> str:
    outcome = execute_render(worker_context(self.app), render_id)
    if outcome is Outcome.HANDED_BACK:
        # A fresh message on the same queue, for a worker that is not draining.
        raise self.retry(countdown=0)
    if outcome is Outcome.BLOCKLISTED:
        # Put the message back at once, then stay busy for a moment: with prefetch 1 this worker
        # fetches nothing meanwhile, so an idle worker that may render the job takes it. (A
        # delayed retry would not do: the refusing worker would fetch and hold it until its ETA.)
        self.retry(countdown=0, throw=False)
        time.sleep(BLOCKLISTED_PAUSE_SECONDS)
        return outcome.value
    if outcome is Outcome.RETRY:
        delay = RETRY_BACKOFF_SECONDS[min(self.request.retries, len(RETRY_BACKOFF_SECONDS) - 1)]
        raise self.retry(countdown=delay)
    return outcome.value
