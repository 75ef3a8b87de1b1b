"""The dashboard's app factory. It calls farm services only; no SQL or rendering lives here.

To add pages: write a blueprint module (e.g. dashboard/campaigns.py with
`blueprint = Blueprint("campaigns", __name__, url_prefix="/campaigns")`), guard every view with
`@requires("permission")`, and add the blueprint to BLUEPRINTS below. API routes go in a module
of dashboard/api/ (see dashboard/api/blueprint.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

from flask import Flask

from dashboard import assets, auth, exports, gallery, jobs, pages, review, users
from dashboard import batches, campaigns, templates_pages
from dashboard import audit, licenses, models_pages
from dashboard.api import api
from dashboard.api.openapi import undeclared_api_routes
from dashboard.auth import required_permission
from dashboard.csrf import init_csrf
from dashboard.errors import init_errors
from dashboard.layout import init_layout
from farm.context import FarmContext
from farm.settings import web_secret_key

BLUEPRINTS = (
    auth.blueprint,
    pages.blueprint,
    users.blueprint,
    jobs.blueprint,
    campaigns.blueprint,
    templates_pages.blueprint,
    batches.blueprint,
    gallery.blueprint,
    assets.blueprint,
    review.blueprint,
    exports.blueprint,
    licenses.blueprint,
    models_pages.blueprint,
    audit.blueprint,
    api,
)

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # CSV and image uploads; larger gets 413

# Pages ship their own scripts and styles (no CDN). Scripts only from files under /static: no
# inline <script>, so an injected one cannot run. Inline style attributes are allowed (progress bars).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(farm: FarmContext, config: Mapping[str, Any] | None = None) -> Flask:
    """The dashboard over `farm`. `config` overrides Flask settings (tests, SESSION_COOKIE_SECURE)."""
    settings = farm.settings
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=web_secret_key(settings),
        SESSION_COOKIE_NAME="farm_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_lifetime_hours),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        # One form field may be large: the batch form carries an uploaded CSV file's rows in one.
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
    )
    app.config.update(config or {})
    app.jinja_env.autoescape = True  # every template, whatever its file name
    app.extensions["farm"] = farm

    init_errors(app)
    init_csrf(app)
    init_layout(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.after_request(_security_headers)
    _check_every_view_declares_access(app)
    return app


def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def _check_every_view_declares_access(app: Flask) -> None:
    """Refuse to start with a view that does not say who may call it, or an API route without an
    OpenAPI declaration: forgetting either is a bug that tests might not catch."""
    undeclared = sorted(
        endpoint for endpoint, view in app.view_functions.items()
        if endpoint != "static" and required_permission(view) is None
    )
    if undeclared:
        raise RuntimeError(f"views without @requires(...) or @public: {', '.join(undeclared)}")
    undocumented = undeclared_api_routes(app)
    if undocumented:
        raise RuntimeError(f"API routes not declared with api.operation: {', '.join(undocumented)}")
