"""Running Celery workers: a worker process (`farm worker`) or one inside another farm process.

Both run one render at a time (solo pool, prefetch 1): a GPU does one thing at a time, and a
render that waits in the queue can still go to another worker. Both register in the worker
registry and heartbeat while they run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from celery import Celery
from celery.worker import WorkController
from sqlalchemy.exc import OperationalError

from farm.audit.renders import seal_render_events
from farm.db.migrate import schema_problem
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.jobs.execution import WorkerContext
from farm.queue.routing import known_queues, worker_queue
from farm.queue.runtime import build_worker_context
from farm.workers.registry import HEARTBEATS_BEFORE_GONE, WorkerIdentity, mark_offline, record_heartbeat, register_worker

log = logging.getLogger(__name__)
# Render events a heartbeat writes to the audit log at most (x 500), so a beat stays short.
SEAL_BATCHES_PER_BEAT = 4


def default_worker_name(gpu: str) -> str:
    """HOST:GPU, the name `farm worker drain` takes; CPU workers add the pid, as a host may run several."""
    host = socket.gethostname()
    return f"{host}:{gpu}" if gpu.isdigit() else f"{host}:{gpu}-{os.getpid()}"


def _identity(ctx: WorkerContext, queues: Sequence[str]) -> WorkerIdentity:
    import diffusers
    import torch

    gpu_index = gpu_name = vram_total = None
    if ctx.engine.device.type == "cuda":
        gpu_index = int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0)
        properties = torch.cuda.get_device_properties(0)
        gpu_name, vram_total = properties.name, properties.total_memory
    return WorkerIdentity(
        name=ctx.worker_name, host=socket.gethostname(), gpu_index=gpu_index, gpu_name=gpu_name,
        vram_total_bytes=vram_total, queues=list(queues), torch_version=torch.__version__,
        diffusers_version=diffusers.__version__,
    )


def _vram_used(ctx: WorkerContext) -> int | None:
    if ctx.engine.device.type != "cuda":
        return None
    import torch

    free, total = torch.cuda.mem_get_info()
    return total - free


class Heartbeat(threading.Thread):
    """Reports the worker alive every `interval` seconds, with its warm models and GPU memory.

    When the registry says the worker is draining, it sets `ctx.draining` and calls `on_drain`
    once. A database outage is logged and retried on the next beat; it never stops the worker.
    """

    def __init__(self, ctx: WorkerContext, interval: float, on_drain: Callable[[], None]):
        super().__init__(name="farm-heartbeat", daemon=True)
        self.ctx = ctx
        self.interval = interval
        self.on_drain = on_drain
        self._stop_event = threading.Event()

    def beat(self) -> None:
        with transaction(self.ctx.session_factory, durable=False) as session:  # the next beat repeats it
            status = record_heartbeat(session, self.ctx.worker_name,
                                      warm_models=self.ctx.engine.loaded_model_names(),
                                      vram_used_bytes=_vram_used(self.ctx))
        if status == "draining" and not self.ctx.draining.is_set():
            self.ctx.draining.set()
            self.on_drain()
        elif status == "online":
            self.ctx.draining.clear()
        # Render state changes reach the audit log from here, in batches, off the render path.
        try:
            seal_render_events(self.ctx.session_factory, max_batches=SEAL_BATCHES_PER_BEAT)
        except Exception:  # noqa: BLE001  (the next beat, or another worker's, writes them)
            log.warning("%s could not write render events to the audit log", self.ctx.worker_name, exc_info=True)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001  (a heartbeat must outlive a database blip)
                log.warning("heartbeat of %s failed; retrying in %s s", self.ctx.worker_name,
                            self.interval, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.interval + 5)


REGISTER_RETRY_MAX_SECONDS = 30.0


def _register(ctx: WorkerContext, queues: Sequence[str], heartbeat_seconds: float) -> None:
    """Register, waiting (1, 2, 4 ... 30 s apart) for a database that cannot be reached yet or
    whose schema is not yet migrated to this code's revision.

    A worker started before its database (a machine booting, a Postgres restart, a deploy whose
    migration job has not finished) should come up when the database is ready, not crash and be
    restarted in a loop by its supervisor. Likewise a worker whose name still looks taken: after
    a crash or a container restart the old row heartbeated moments ago, and it takes
    HEARTBEATS_BEFORE_GONE silent beats to count as gone. Only a name still taken after that
    is a real second worker on the same GPU, and stops this one.
    """
    identity = _identity(ctx, queues)
    engine = ctx.session_factory.kw["bind"]
    name_taken_until = None
    delay = 1.0
    while True:
        try:
            problem = schema_problem(engine)
            if problem is None:
                with transaction(ctx.session_factory) as session:
                    register_worker(session, identity, heartbeat_seconds)
                return
            log.warning("worker %s: %s; retrying in %.0f s", ctx.worker_name, problem, delay)
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            log.warning("worker %s: database unreachable (%s); retrying in %.0f s", ctx.worker_name, reason, delay)
        except InvalidInput as error:
            if error.field != "name":
                raise
            now = time.monotonic()
            if name_taken_until is None:
                name_taken_until = now + heartbeat_seconds * (HEARTBEATS_BEFORE_GONE + 1)
            if now >= name_taken_until:
                raise
            log.warning("worker %s: %s; waiting in case that was this worker before a restart",
                        ctx.worker_name, error.message)
            time.sleep(min(heartbeat_seconds, name_taken_until - now))
            continue
        time.sleep(delay)
        delay = min(delay * 2, REGISTER_RETRY_MAX_SECONDS)


@contextmanager
def registered(ctx: WorkerContext, queues: Sequence[str], heartbeat_seconds: float,
               on_drain: Callable[[], None]) -> Iterator[None]:
    """Register the worker, heartbeat while the block runs, and mark it offline after."""
    _register(ctx, queues, heartbeat_seconds)
    heartbeat = Heartbeat(ctx, heartbeat_seconds, on_drain)
    heartbeat.start()
    try:
        yield
    finally:
        heartbeat.stop()
        try:
            with transaction(ctx.session_factory) as session:
                mark_offline(session, ctx.worker_name)
        except Exception:  # noqa: BLE001  (the database may be what stopped us)
            log.warning("could not mark %s offline", ctx.worker_name, exc_info=True)


def _node_name(worker_name: str) -> str:
    # Celery node names are NAME@HOST; ours must be unique per process.
    return f"farm-{os.getpid()}@{worker_name}"


def run_worker(app: Celery, queues: Sequence[str], worker_name: str) -> None:
    """Run a worker in this process's main thread until it is told to stop (SIGTERM / Ctrl-C)."""
    ctx = build_worker_context(app.settings, worker_name=worker_name)
    app.farm_worker_context = ctx
    node = _node_name(worker_name)
    # The shared queues of its pool, and its own queue for renders of models it holds warm.
    consumed = [*queues, worker_queue(worker_name)]

    def stop_consuming() -> None:
        # Drain: the worker finishes what it holds and takes nothing more from its queues.
        for queue in consumed:
            app.control.cancel_consumer(queue, destination=[node])

    with registered(ctx, queues, app.settings.heartbeat_seconds, stop_consuming):
        worker = app.Worker(
            hostname=node, queues=consumed, pool="solo", concurrency=1,
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
def in_process_worker(app: Celery, queues: Sequence[str] | None = None) -> Iterator[WorkController]:
    """A worker on a background thread of this process, for the embedded farm."""
    queues = list(queues or known_queues(app.settings))
    ctx = build_worker_context(app.settings, worker_name=default_worker_name("embedded"))
    app.farm_worker_context = ctx
    worker = _ThreadWorkController(
        app=app, hostname=_node_name(ctx.worker_name), queues=[*queues, worker_queue(ctx.worker_name)],
        pool="solo",
        concurrency=1, prefetch_multiplier=1, loglevel="WARNING", without_heartbeat=True,
        without_mingle=True, without_gossip=True,
    )

    def work() -> None:
        # Shared tasks find their app through the thread's current app (as in a worker process).
        app.set_current()
        worker.start()

    with registered(ctx, queues, app.settings.heartbeat_seconds, on_drain=lambda: None):
        thread = threading.Thread(target=work, name="farm-worker", daemon=True)
        thread.start()
        if not worker.ready.wait(timeout=60):
            raise RuntimeError("the in-process worker did not start within 60 s")
        try:
            yield worker
        finally:
            worker.stop(in_sighandler=False)
            thread.join(timeout=30)
