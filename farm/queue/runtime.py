"""The per-process worker context: database, storage and render engine, built once, lazily,
inside the worker process (never before a fork), and kept on the Celery app object."""

from __future__ import annotations

import os
import socket
import threading

from celery import Celery

from farm.db.session import make_engine, make_session_factory
from farm.jobs.execution import WorkerContext
from farm.provenance import ProvenanceStamp
from farm.render.engine import RenderEngine
from farm.settings import Settings
from farm.storage import open_storage

_build_lock = threading.Lock()


def resolve_device(settings: Settings) -> str:
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def open_settings_storage(settings: Settings):
    return open_storage(
        settings.storage_url, s3_endpoint_url=settings.s3_endpoint_url or None,
        s3_region=settings.s3_region or None, s3_access_key_id=settings.s3_access_key_id or None,
        s3_secret_access_key=settings.s3_secret_access_key or None,
    )


def build_worker_context(settings: Settings, worker_name: str | None = None) -> WorkerContext:
    if settings.render_engine == "instant":
        # Imported here: only workers that ask for it need it.
        from farm.render.instant import InstantEngine

        engine = InstantEngine()
    else:
        engine = RenderEngine(
            device=resolve_device(settings), max_cached_models=settings.model_cache_models,
            model_cache_bytes=int(settings.model_cache_gib * 2**30) or None, verify_hashes=True,
        )
    return WorkerContext(
        # The worker's bookkeeping commits need not wait for the disk (see farm.db.session).
        session_factory=make_session_factory(make_engine(settings.database_url, commits_wait_for_disk=False)),
        storage=open_settings_storage(settings),
        engine=engine,
        worker_name=worker_name or f"{socket.gethostname()}:{os.getpid()}",
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        blocklist_after=settings.blocklist_after,
        heartbeat_seconds=settings.heartbeat_seconds,
        queue_routes=dict(settings.queue_routes),
        organisation_annual_revenue_usd=settings.organisation_annual_revenue_usd,
        # Reads and tries the signing credentials: a bad one stops start-up, naming its setting.
        provenance=ProvenanceStamp.from_settings(settings),
    )


def worker_context(app: Celery) -> WorkerContext:
    with _build_lock:
        context = getattr(app, "farm_worker_context", None)
        if context is None:
            context = build_worker_context(app.settings)
            app.farm_worker_context = context
        return context
