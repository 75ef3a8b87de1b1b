"""Running Celery workers: a worker process (`farm worker`) or one inside another farm process.

Both run one render at a time (solo pool, prefetch 1): a GPU does one thing at a time, and a
render that waits in the queue can still go to another worker.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

from celery import Celery
from celery.worker import WorkController

from farm.queue.app import ALL_QUEUES


def node_name(label: str) -> str:
    return f"{label}-{os.getpid()}@{socket.gethostname()}"


def run_worker(app: Celery, queues: Sequence[str] = ALL_QUEUES, label: str = "farm") -> None:
    """Run a worker in this process's main thread until it is told to stop (SIGTERM / Ctrl-C)."""
    worker = app.Worker(
        hostname=node_name(label), queues=list(queues), pool="solo", concurrency=1,
        prefetch_multiplier=1, loglevel="INFO", optimization="fair",
    )
    worker.start()


class _ThreadWorkController(WorkController):
    """A WorkController that says when its consumer is ready (as celery.contrib.testing does)."""

    def __init__(self, *args, **kwargs):
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer) -> None:
        self.ready.set()


@contextmanager
def in_process_worker(app: Celery, queues: Sequence[str] = ALL_QUEUES, label: str = "embedded") -> Iterator[WorkController]:
    """A worker on a background thread of this process, for the embedded farm."""
    worker = _ThreadWorkController(
        app=app, hostname=node_name(label), queues=list(queues), pool="solo", concurrency=1,
        prefetch_multiplier=1, loglevel="WARNING", without_heartbeat=True, without_mingle=True,
        without_gossip=True,
    )

    def work() -> None:
        # Shared tasks find their app through the thread's current app (as in a worker process).
        app.set_current()
        worker.start()

    thread = threading.Thread(target=work, name="farm-worker", daemon=True)
    thread.start()
    if not worker.ready.wait(timeout=60):
        raise RuntimeError("the in-process worker did not start within 60 s")
    try:
        yield worker
    finally:
        worker.stop(in_sighandler=False)
        thread.join(timeout=30)
