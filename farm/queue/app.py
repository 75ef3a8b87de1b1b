"""The Celery app, built from the farm's settings (never at import time).

Messages carry render ids only (farm.queue.routing sends them). Late acknowledgement and
prefetch 1 mean a worker that dies mid-render leaves its message to be redelivered, and the
lease in the database decides who may work on it.
"""

from __future__ import annotations

from celery import Celery

from farm.queue.routing import BUILTIN_QUEUES, MAX_PRIORITY, is_redis
from farm.settings import Settings


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("farm", set_as_current=False)
    if settings.uses_embedded_broker:
        # A folder every farm process on this machine shares: a real queue with no service.
        folder = settings.embedded_broker_dir
        folder.mkdir(parents=True, exist_ok=True)
        app.conf.broker_url = "filesystem://"
        # kombu's filesystem transport, with messages written whole (see farm.queue.embedded_broker).
        app.conf.broker_transport = "farm.queue.embedded_broker:Transport"
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            # kombu writes exchange bindings here; its default is ./control in the working directory.
            "control_folder": str(folder / "control"),
            "polling_interval": settings.embedded_broker_poll_seconds,
        }
    else:
        app.conf.broker_url = settings.broker_url
        if is_redis(settings.broker_url):
            # One Redis list per priority level, so each of the ten levels is kept apart.
            app.conf.broker_transport_options = {"priority_steps": list(range(MAX_PRIORITY + 1))}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=BUILTIN_QUEUES[0],
        task_queue_max_priority=MAX_PRIORITY,
        task_default_priority=5,
        broker_connection_retry_on_startup=True,
        # A broker that is down makes workers wait and retry, never exit: a supervisor restarting
        # them in a loop would gain nothing.
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
    )
    app.settings = settings  # read by the tasks through farm.queue.runtime
    import farm.queue.tasks  # noqa: F401  (registers the shared tasks on this app)

    return app
