"""Who is asking, and may they: sign-in, sign-out, `current_user()` and the `@requires` decorator.

Pages know the user from the signed session cookie; the API (/api/...) only from an
`Authorization: Bearer <token>` header, never from cookies, so no cross-site request can act
through it. Every view in the app declares who may call it, with `@requires("permission")`
(see dashboard/permissions.py), `@requires()` (any signed-in user) or `@public`; create_app
refuses to start if one does not.
"""

from __future__ import annotations

import hashlib
from functools import wraps
from typing import Callable
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from dashboard.helpers import db_transaction, is_api_request
from dashboard.permissions import PUBLIC, SIGNED_IN, role_has, roles_with
from farm.accounts.service import authenticate, user_for_token
from farm.audit.log import record_event
from farm.db.models import User

blueprint = Blueprint("auth", __name__)

SESSION_USER_ID = "user_id"
SESSION_PASSWORD_MARK = "password_mark"


# -- who is asking ----------------------------------------------------------------------------

def _password_mark(user: User) -> str:
    # Stored in the session at sign-in: when the password changes, older sessions stop working.
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _load_user() -> User | None:
    if is_api_request():
        token = _bearer_token()
        if token is None:
            return None
        with db_transaction() as db:
            return user_for_token(db, token)
    user_id = session.get(SESSION_USER_ID)
    if user_id is None:
        return None
    with db_transaction() as db:
        user = db.get(User, user_id)
    if user is None or user.disabled or session.get(SESSION_PASSWORD_MARK) != _password_mark(user):
        session.clear()  # disabled, deleted or password changed since: sign in again
        return None
    return user


def current_user() -> User | None:
    """The signed-in user's row (read once per request, detached from any session), or None."""
    if "farm_user" not in g:
        g.farm_user = _load_user()
    return g.farm_user


def has_permission(permission: str) -> bool:
    user = current_user()
    return user is not None and role_has(user.role, permission)


# -- declaring who may call a view --------------------------------------------------------------

def requires(permission: str = SIGNED_IN) -> Callable:
    """Let only users whose role holds `permission` call the view; with no argument, any signed-in
    user. Pages: anonymous -> redirect to /login?next=..., lacking it -> 403 page.
    API: anonymous -> 401 JSON, lacking it -> 403 JSON."""
    roles_with(permission)  # an unknown permission fails here, when the view is declared

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args, **kwargs):
            user = current_user()
            if user is None:
                if is_api_request():
                    abort(401)
                return redirect(url_for("auth.login", next=_this_page()))
            if not role_has(user.role, permission):
                abort(403)
            return view(*args, **kwargs)

        guarded.required_permission = permission
        return guarded

    return decorator


def public(view: Callable) -> Callable:
    """Declare that anybody may call the view, signed in or not (sign-in page, health check)."""
    view.required_permission = PUBLIC
    return view


def required_permission(view: Callable) -> str | None:
    """What a view declared: a permission name, SIGNED_IN, PUBLIC, or None if it declared nothing."""
    return getattr(view, "required_permission", None)


# -- sign-in and sign-out -------------------------------------------------------------------------

def _this_page() -> str:
    return request.full_path if request.query_string else request.path


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else the home page: never send anyone elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.isprintable():
            return target
    return url_for("pages.index")


@blueprint.route("/login", methods=["GET", "POST"])
@public
def login():
    next_page = request.values.get("next", "")
    if request.method == "GET":
        if current_user() is not None:
            return redirect(safe_next(next_page))
        return render_template("login.html", next=next_page, name="")
    name = request.form.get("name", "")
    password = request.form.get("password", "")
    with db_transaction() as db:
        user = authenticate(db, name, password)
    if user is None:
        return render_template("login.html", next=next_page, name=name,
                               error="That name and password do not match an active account.")
    # A fresh session at sign-in: nothing set before it (a planted session) survives.
    session.clear()
    session.permanent = True
    session[SESSION_USER_ID] = user.id
    session[SESSION_PASSWORD_MARK] = _password_mark(user)
    g.farm_user = user
    flash(f"Signed in as {user.name}.", "success")
    return redirect(safe_next(next_page))


@blueprint.post("/logout")
@requires()
def logout():
    user = current_user()
    with db_transaction() as db:
        record_event(db, action="user.logout", entity_type="user", entity_id=user.id, actor=user)
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))
