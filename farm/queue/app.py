"""The Celery app, built from the farm's settings (never at import time).

Messages carry render ids only. Late acknowledgement and prefetch 1 mean a worker that dies
mid-render leaves its message to be redelivered, and the lease in the database decides who
may work on it.
"""

from __future__ import annotations

from celery import Celery

from farm.db.models import ARCHITECTURES
from farm.settings import Settings

RENDER_TASK = "farm.render"
MAX_PRIORITY = 9  # job priorities run 0 (lowest) to 9 (highest)
ALL_QUEUES = tuple(a for a in ARCHITECTURES if a != "upscaler")


def queue_for(architecture: str) -> str:
    """Renders go to the queue of their model's architecture (workers that can serve it)."""
    return architecture


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("farm", set_as_current=False)
    if settings.uses_embedded_broker:
        # A folder every farm process on this machine shares: a real queue with no service.
        folder = settings.embedded_broker_dir
        folder.mkdir(parents=True, exist_ok=True)
        app.conf.broker_url = "filesystem://"
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            # kombu writes exchange bindings here; its default is ./control in the working directory.
            "control_folder": str(folder / "control"),
            "polling_interval": settings.embedded_broker_poll_seconds,
        }
    else:
        app.conf.broker_url = settings.broker_url
        if _is_redis(settings.broker_url):
            # One Redis list per priority level, so each of the ten levels is kept apart.
            app.conf.broker_transport_options = {"priority_steps": list(range(MAX_PRIORITY + 1))}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=ALL_QUEUES[0],
        task_queue_max_priority=MAX_PRIORITY,
        task_default_priority=5,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.settings = settings  # read by the tasks through farm.queue.runtime
    import farm.queue.tasks  # noqa: F401  (registers the shared tasks on this app)

    return app


def _is_redis(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://"))


def broker_priority(app: Celery, job_priority: int) -> int:
    """The message priority for a job priority (0 lowest .. 9 highest).

    RabbitMQ serves higher numbers first; Redis (kombu's priority steps) serves 0 first.
    """
    return MAX_PRIORITY - job_priority if _is_redis(app.settings.broker_url) else job_priority


def enqueue_render(app: Celery, render_id: int, architecture: str, priority: int) -> None:
    app.send_task(RENDER_TASK, args=[render_id], queue=queue_for(architecture),
                  priority=broker_priority(app, priority))
