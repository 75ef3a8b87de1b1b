"""Which queue a render's message goes to, and sending it there.

Shared queues group workers by what they can serve: by default one per architecture (`sd1`,
`sd2`, `sdxl`) and `upscale` for upscale renders; `queue_routes` in the settings sends a model or
an architecture to a pool of its own (for example `sdxl=big-gpus`, `tiny-sd=cpu`).

Every worker also listens on a queue of its own. Warm-model-first routing sends a render there
when the worker is live, not draining, serves the render's shared queue and already holds the
render's model in memory, but never more than `warm_queue_depth` renders per worker, so a busy
warm worker cannot hoard work that an idle one could do. Everything else waits in the shared
queue, where any worker of the pool (warm ones included) takes it.

Messages carry render ids only. Each send records the queue and time on the render row, which is
how the reaper finds renders whose message was lost.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Mapping, Sequence

from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnreachable
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from farm.db.base import utcnow
from farm.db.models import Job, RegisteredModel, Render, Worker
from farm.db.session import transaction
from farm.settings import Settings
from farm.workers.registry import is_alive

log = logging.getLogger(__name__)

RENDER_TASK = "farm.render"
MAX_PRIORITY = 9  # job priorities run 0 (lowest) to 9 (highest)
UPSCALE_QUEUE = "upscale"
BUILTIN_QUEUES = ("sd1", "sd2", "sdxl", UPSCALE_QUEUE)
WORKER_QUEUE_PREFIX = "worker."


def shared_queue(settings: Settings, *, kind: str, model_name: str, architecture: str) -> str:
    """The pool queue for a render: a route for its model, else for its architecture, else the default."""
    return shared_queue_for(settings.queue_routes, kind=kind, model_name=model_name, architecture=architecture)


def shared_queue_for(routes: Mapping[str, str], *, kind: str, model_name: str, architecture: str) -> str:
    if kind == "upscale":
        return routes.get(model_name, UPSCALE_QUEUE)
    return routes.get(model_name) or routes.get(architecture) or architecture


def known_queues(settings: Settings) -> tuple[str, ...]:
    """Every shared queue a worker may serve: the built-in ones and those the routes name."""
    return tuple(dict.fromkeys([*BUILTIN_QUEUES, *settings.queue_routes.values()]))


def worker_queue(worker_name: str) -> str:
    """The queue only this worker consumes (warm-model-first routing sends renders there).

    Only letters, digits, '.', '_' and '-' are kept: kombu's embedded (filesystem) transport
    cannot publish to a queue whose name holds a ':', as HOST:GPU names do.
    """
    return WORKER_QUEUE_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "-", worker_name)


def is_redis(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://"))


def broker_priority(settings: Settings, job_priority: int) -> int:
    """The message priority for a job priority (0 lowest .. 9 highest).

    RabbitMQ serves higher numbers first; Redis (kombu's priority steps) serves 0 first.
    """
    return MAX_PRIORITY - job_priority if is_redis(settings.broker_url) else job_priority


@dataclass
class _WarmWorker:
    queue: str
    serves: frozenset[str]
    warm_models: frozenset[str]
    free_slots: int


def _warm_workers(session: Session, settings: Settings, avoid_worker: str | None) -> list[_WarmWorker]:
    if settings.warm_queue_depth == 0:
        return []
    now = utcnow()
    workers = [w for w in session.scalars(select(Worker).where(Worker.status == "online"))
               if w.warm_models and w.name != avoid_worker and is_alive(w, settings.heartbeat_seconds, now)]
    if not workers:
        return []
    queues = {worker_queue(w.name): w for w in workers}
    waiting = Counter(session.scalars(
        select(Render.queue).where(Render.state == "queued", Render.queue.in_(list(queues)))))
    return [_WarmWorker(queue=q, serves=frozenset(w.queues), warm_models=frozenset(w.warm_models),
                        free_slots=settings.warm_queue_depth - waiting[q])
            for q, w in queues.items()]


def _choose(shared: str, model_name: str, warm: list[_WarmWorker]) -> str:
    candidates = [w for w in warm if w.free_slots > 0 and shared in w.serves and model_name in w.warm_models]
    if not candidates:
        return shared
    best = max(candidates, key=lambda w: w.free_slots)
    best.free_slots -= 1
    return best.queue


@dataclass(frozen=True)
class Message:
    """A render's message, routed: which queue, at what broker priority, due after how long."""

    render_id: int
    queue: str
    priority: int
    countdown: float = 0


def route_renders(session: Session, settings: Settings, render_ids: Iterable[int], *,
                  avoid_worker: str | None = None, countdown: float = 0) -> list[Message]:
    """Choose the queue for each of these renders that is still queued, and note it (with the
    time the message will be due) on the render rows, in the caller's transaction.

    Publish the returned messages with `publish` once that transaction has committed, so a
    worker never receives an id it cannot see yet. `avoid_worker` keeps a render off that
    worker's own queue (a worker handing work back).
    """
    ids = list(render_ids)
    if not ids:
        return []
    rows = session.execute(
        select(Render.id, Render.kind, RegisteredModel.name, RegisteredModel.architecture, Job.priority)
        .join(RegisteredModel, Render.model_id == RegisteredModel.id)
        .join(Job, Render.job_id == Job.id)
        .where(Render.id.in_(ids), Render.state == "queued")
        .order_by(Render.job_id, Render.index)
    ).all()
    return _route(session, settings, rows, avoid_worker=avoid_worker, countdown=countdown)


def route_new_job(session: Session, settings: Settings, job: Job) -> list[Message]:
    """`route_renders` for a job written in this very transaction: what routing needs is at hand
    (its model, kinds and priority), so nothing is read back."""
    rows = [(render.id, render.kind, job.model.name, job.model.architecture, job.priority) for render in job.renders]
    return _route(session, settings, rows)


def _route(session: Session, settings: Settings, rows, *, avoid_worker: str | None = None,
           countdown: float = 0) -> list[Message]:
    if not rows:
        return []
    warm = _warm_workers(session, settings, avoid_worker) if countdown == 0 else []
    messages = []
    for render_id, kind, model_name, architecture, priority in rows:
        queue = shared_queue(settings, kind=kind, model_name=model_name, architecture=architecture)
        if kind != "upscale":
            queue = _choose(queue, model_name, warm)
        messages.append(Message(render_id, queue, broker_priority(settings, priority), countdown))
    due = utcnow() + timedelta(seconds=countdown)
    for queue in {m.queue for m in messages}:
        session.execute(update(Render).where(Render.id.in_([m.render_id for m in messages if m.queue == queue]))
                        .values(queue=queue, last_enqueued_at=due)
                        .execution_options(synchronize_session=False))
    return messages


def publish(app: Celery, session_factory: sessionmaker[Session], messages: Sequence[Message]) -> int:
    """Send routed messages; return how many went out.

    A broker that cannot be reached is logged, not raised: the renders it did not take are
    marked as never sent, and the reaper sends them when the broker is back.
    """
    sent = 0
    try:
        # One producer (one connection) for the whole batch, not one from the pool per message.
        with app.producer_or_acquire() as producer:
            for message in messages:
                app.send_task(RENDER_TASK, args=[message.render_id], queue=message.queue,
                              priority=message.priority, countdown=message.countdown or None, producer=producer)
                sent += 1
    except BrokerUnreachable as error:
        unsent = [m.render_id for m in messages[sent:]]
        log.warning("broker unreachable (%s): %d renders stay queued for the reaper to send", error, len(unsent))
        with transaction(session_factory) as session:
            session.execute(update(Render).where(Render.id.in_(unsent)).values(last_enqueued_at=None)
                            .execution_options(synchronize_session=False))
    return sent


def send_renders(app: Celery, session_factory: sessionmaker[Session], render_ids: Iterable[int], *,
                 avoid_worker: str | None = None, countdown: float = 0) -> int:
    """Route and send these renders (those still queued); return how many messages went out."""
    # Not durable: a routing note lost in a database crash only makes the reaper send again.
    with transaction(session_factory, durable=False) as session:
        messages = route_renders(session, app.settings, render_ids, avoid_worker=avoid_worker, countdown=countdown)
    return publish(app, session_factory, messages)


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting in a queue of the broker (0 for a queue the broker does not know)."""
    with app.connection_for_write() as connection:
        try:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
        except connection.channel_errors:
            return 0  # no such queue: nothing waits in it
