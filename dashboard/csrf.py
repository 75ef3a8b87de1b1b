"""Cross-site request forgery protection for every form, and submission keys for idempotent forms.

Each session holds a random token. Every form renders it with `{{ csrf_field() }}`; fetch()
calls send it in the X-CSRF-Token header (static/farm.js does this for you). Any POST, PUT,
PATCH or DELETE to a page route without the session's token is refused with a 400 page before
the view runs, so nothing changes. The API (/api/...) is exempt: it ignores cookies and takes
bearer tokens only, which a foreign site cannot make a browser send.
"""

from __future__ import annotations

import hmac
import secrets
import uuid

from flask import Flask, request, session
from markupsafe import Markup
from werkzeug.exceptions import BadRequest

from dashboard.helpers import is_api_request

SESSION_KEY = "csrf_token"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SUBMISSION_KEY_FIELD = "submission_key"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STALE_FORM_MESSAGE = "This form is stale; nothing was changed. Reload the page and try again."


class StaleForm(BadRequest):
    description = STALE_FORM_MESSAGE


def csrf_token() -> str:
    """The session's token, made on first use."""
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def csrf_field() -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_FIELD, csrf_token())


def submission_key_field() -> Markup:
    """A fresh key per rendered form: submitting the same form twice sends the same key, and the
    service that keeps it (Job.submission_key is unique) returns the first result the second time."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(SUBMISSION_KEY_FIELD, uuid.uuid4().hex)


def _check_csrf() -> None:
    if request.method not in UNSAFE_METHODS or is_api_request():
        return
    expected = session.get(SESSION_KEY)
    sent = request.form.get(FORM_FIELD) or request.headers.get(HEADER)
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise StaleForm()


def init_csrf(app: Flask) -> None:
    app.before_request(_check_csrf)
    app.add_template_global(csrf_field)
    app.add_template_global(csrf_token)
    app.add_template_global(submission_key_field)
