"""`farm web`: the dashboard under gunicorn, configured in code rather than by a config file."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication


class DashboardServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in each worker after the fork (no preload): every worker opens its own database pool.
        from dashboard.wsgi import create_wsgi_app

        return create_wsgi_app()


def serve(host: str, port: int, workers: int, threads: int = 8) -> None:
    bind_host = f"[{host}]" if ":" in host else host
    DashboardServer({
        "bind": f"{bind_host}:{port}",
        "workers": workers,
        # Threads, so a slow client or a long poll of a job's progress does not hold a whole worker.
        "worker_class": "gthread",
        "threads": threads,
        "accesslog": "-",
        "proc_name": "farm-web",
        "preload_app": False,
    }).run()
