"""The worker registry: which worker processes exist, what they serve, and whether they live.

A worker registers when it starts, heartbeats while it runs (warm models, GPU memory), and is
marked offline when it stops. One that stops heartbeating for HEARTBEATS_BEFORE_GONE intervals
counts as gone, whatever its row says; the reaper then re-queues what it held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.base import utcnow
from farm.db.models import Worker
from farm.errors import InvalidInput

HEARTBEATS_BEFORE_GONE = 3


@dataclass(frozen=True)
class WorkerIdentity:
    name: str
    host: str
    gpu_index: int | None
    gpu_name: str | None
    vram_total_bytes: int | None
    queues: Sequence[str]
    torch_version: str
    diffusers_version: str


def is_alive(worker: Worker, heartbeat_seconds: float, now: datetime | None = None) -> bool:
    if worker.status == "offline":
        return False
    silence = (now or utcnow()) - worker.heartbeat_at
    return silence < timedelta(seconds=heartbeat_seconds * HEARTBEATS_BEFORE_GONE)


def register_worker(session: Session, identity: WorkerIdentity, heartbeat_seconds: float) -> Worker:
    """Record a starting worker; refuse if a live worker already uses the name (the same GPU)."""
    worker = session.scalar(select(Worker).where(Worker.name == identity.name).with_for_update())
    if worker is not None and is_alive(worker, heartbeat_seconds):
        raise InvalidInput("name", f"worker {identity.name} is already running (last heartbeat at "
                                   f"{worker.heartbeat_at:%H:%M:%S} UTC); give this one another --name")
    now = utcnow()
    if worker is None:
        worker = Worker(name=identity.name)
        session.add(worker)
    worker.host = identity.host
    worker.gpu_index = identity.gpu_index
    worker.gpu_name = identity.gpu_name
    worker.vram_total_bytes = identity.vram_total_bytes
    worker.vram_used_bytes = None
    worker.queues = list(identity.queues)
    worker.warm_models = []
    worker.torch_version = identity.torch_version
    worker.diffusers_version = identity.diffusers_version
    worker.status = "online"
    worker.started_at = now
    worker.heartbeat_at = now
    session.flush()
    record_event(session, action="worker.registered", entity_type="worker", entity_id=identity.name,
                 after={"host": identity.host, "gpu_index": identity.gpu_index,
                        "gpu_name": identity.gpu_name, "queues": list(identity.queues)})
    return worker


def _worker(session: Session, name: str) -> Worker:
    worker = session.scalar(select(Worker).where(Worker.name == name))
    if worker is None:
        known = ", ".join(session.scalars(select(Worker.name).order_by(Worker.name))) or "none"
        raise InvalidInput("worker", f"no worker named {name!r}; known: {known}")
    return worker


def record_heartbeat(session: Session, name: str, *, warm_models: list[str], vram_used_bytes: int | None) -> str:
    """Note that the worker lives; return its status so it learns it should drain."""
    worker = _worker(session, name)
    worker.heartbeat_at = utcnow()
    worker.warm_models = warm_models
    worker.vram_used_bytes = vram_used_bytes
    if worker.status == "offline":  # it was declared gone but is back
        worker.status = "online"
    return worker.status


def mark_offline(session: Session, name: str) -> None:
    worker = _worker(session, name)
    worker.status = "offline"
    record_event(session, action="worker.stopped", entity_type="worker", entity_id=name)


def mark_dead(session: Session, name: str, *, registered_since: datetime, exit_code: int) -> bool:
    """Mark NAME offline because its process is known to have died (its supervisor reaped it).

    Otherwise a restarted worker is refused its own name until the dead one has been silent for
    HEARTBEATS_BEFORE_GONE beats. Only a registration made at or after `registered_since` (when
    the supervisor first started a process under this name) is touched: an older row is another
    process's. Returns whether the row was changed.
    """
    worker = session.scalar(select(Worker).where(Worker.name == name).with_for_update())
    if worker is None or worker.status == "offline" or worker.started_at < registered_since:
        return False
    worker.status = "offline"
    record_event(session, action="worker.died", entity_type="worker", entity_id=name,
                 after={"exit_code": exit_code})
    return True


def set_draining(session: Session, name: str, draining: bool) -> Worker:
    """Drain: finish the current render, take no more. Undrain: take work again."""
    worker = _worker(session, name)
    if worker.status == "offline":
        raise InvalidInput("worker", f"worker {name} is offline")
    before = worker.status
    worker.status = "draining" if draining else "online"
    record_event(session, action="worker.drain" if draining else "worker.resume", entity_type="worker",
                 entity_id=name, before={"status": before}, after={"status": worker.status})
    return worker


def worker_table(session: Session, heartbeat_seconds: float) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {"name": w.name, "host": w.host, "gpu_index": w.gpu_index, "gpu_name": w.gpu_name,
         "status": w.status if is_alive(w, heartbeat_seconds, now) or w.status == "offline" else "lost",
         "heartbeat_age_seconds": round((now - w.heartbeat_at).total_seconds(), 1),
         "queues": w.queues, "warm_models": w.warm_models,
         "vram_used_bytes": w.vram_used_bytes, "vram_total_bytes": w.vram_total_bytes,
         "torch_version": w.torch_version, "diffusers_version": w.diffusers_version,
         "started_at": w.started_at}
        for w in session.scalars(select(Worker).order_by(Worker.name))
    ]
