"""Small things every view needs: the farm this app serves and a short database transaction."""

from __future__ import annotations

from contextlib import AbstractContextManager

from typing import Any

from flask import current_app, request, url_for
from werkzeug.routing import BuildError
from sqlalchemy.orm import Session

from farm.context import FarmContext
from farm.db.session import transaction

API_PREFIX = "/api/"


def current_farm() -> FarmContext:
    return current_app.extensions["farm"]


def db_transaction() -> AbstractContextManager[Session]:
    """`with db_transaction() as session:` one short unit of work on the farm's database."""
    return transaction(current_farm().session_factory)


def is_api_request() -> bool:
    """API requests authenticate with bearer tokens and get JSON errors; pages use the session."""
    return request.path.startswith(API_PREFIX)


def optional_url(endpoint: str, **values: Any) -> str | None:
    """url_for, or None when the app has no such endpoint (a page of an area it does not serve)."""
    if endpoint not in current_app.view_functions:
        return None
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None
