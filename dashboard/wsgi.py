"""The dashboard for WSGI servers: `gunicorn 'dashboard.wsgi:create_wsgi_app()'` (what `farm web`
runs). A factory, not a module-level app: each server worker builds its own FarmContext
(database pool, storage client) after the fork."""

from __future__ import annotations

from flask import Flask

from dashboard.app import create_app
from farm.context import FarmContext
from farm.settings import load_settings


def create_wsgi_app() -> Flask:
    return create_app(FarmContext(load_settings()))
