"""Users admin (admins only): list, create, disable or enable, issue an API token."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from dashboard.auth import current_user, requires
from dashboard.helpers import db_transaction
from farm.accounts.service import create_user, get_user, issue_api_token, list_users, set_disabled
from farm.db.models import ROLES
from farm.errors import InvalidInput

blueprint = Blueprint("users", __name__, url_prefix="/users")


def _render_index(form: dict | None = None, error: InvalidInput | None = None, status: int = 200):
    with db_transaction() as db:
        users = list_users(db)
    return render_template("users/index.html", users=users, roles=ROLES, form=form or {}, error=error), status


@blueprint.get("/")
@requires("users.manage")
def index():
    return _render_index()


@blueprint.post("/")
@requires("users.manage")
def create():
    form = {key: request.form.get(key, "") for key in ("name", "role", "email", "password")}
    try:
        with db_transaction() as db:
            user = create_user(db, name=form["name"], role=form["role"], email=form["email"] or None,
                               password=form["password"] or None, actor=current_user())
    except InvalidInput as error:
        form.pop("password")  # never sent back into the page
        return _render_index(form, error, 400)
    flash(f"Created {user.name} ({user.role}).", "success")
    return redirect(url_for("users.index"))


@blueprint.post("/<int:user_id>/status")
@requires("users.manage")
def set_status(user_id: int):
    disable = request.form.get("disabled") == "1"
    actor = current_user()
    with db_transaction() as db:
        user = get_user(db, user_id)
        if disable and user.id == actor.id:
            raise InvalidInput("disabled", "you cannot disable your own account")
        set_disabled(db, user, disable, actor=actor)
    flash(f"{user.name} is {'disabled' if disable else 'enabled'}.", "success")
    return redirect(url_for("users.index"))


@blueprint.post("/<int:user_id>/token")
@requires("users.manage")
def issue_token(user_id: int):
    with db_transaction() as db:
        user = get_user(db, user_id)
        token = issue_api_token(db, user, actor=current_user())
    # Shown in this response only: never in a redirect or a flash message, which would put it in
    # the session cookie.
    return render_template("users/token.html", user=user, token=token)
