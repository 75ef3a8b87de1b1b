"""Signing in and out through the real forms; sessions; the `next` parameter."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farm.accounts.service import get_user, set_disabled, set_password
from farm.db.models import AuditEvent
from farm.db.session import transaction
from tests.dashboard.conftest import add_user, csrf_token, farm_of, login_as, make_app, sign_in


def _actions(farm) -> list[str]:
    with transaction(farm.session_factory) as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.mark.parametrize("app_fixture", ["app", "postgres_app"])
def test_sign_in_then_out(request, app_fixture):
    client = request.getfixturevalue(app_fixture).test_client()
    assert client.get("/").headers["Location"] == "/login?next=/"
    user = add_user(farm_of(client), "campaign_manager", name="ana")

    response = sign_in(client, "ana", next_page="/")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Signed in as ana." in home.text
    assert "ana" in home.text and "campaign manager" in home.text  # the user menu

    assert client.get("/logout").status_code == 405  # signing out is a POST, with a CSRF token
    out = client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/").status_code == 302
    assert _actions(farm_of(client))[-2:] == ["user.login", "user.logout"]
    assert user.id


def test_wrong_password_is_refused_and_audited(client):
    add_user(farm_of(client), "reviewer", name="ana")
    response = sign_in(client, "ana", "not the password at all")
    assert response.status_code == 200
    assert "do not match an active account" in response.text
    assert 'value="ana"' in response.text  # the name is kept, the password is not
    assert "not the password at all" not in response.text
    assert client.get("/").status_code == 302
    assert _actions(farm_of(client))[-1] == "user.login_failed"


def test_disabled_user_cannot_sign_in(client):
    user = add_user(farm_of(client), "reviewer")
    with transaction(farm_of(client).session_factory) as session:
        set_disabled(session, user, True)
    response = sign_in(client, user.name)
    assert response.status_code == 200 and "do not match an active account" in response.text
    assert client.get("/").status_code == 302


def test_disabling_a_signed_in_user_ends_their_session(client):
    user = login_as(client, "reviewer")
    assert client.get("/").status_code == 200
    with transaction(farm_of(client).session_factory) as session:
        set_disabled(session, user, True)
    assert client.get("/").headers["Location"] == "/login?next=/"


def test_changing_the_password_ends_older_sessions(client):
    user = login_as(client, "reviewer")
    with transaction(farm_of(client).session_factory) as session:
        set_password(session, get_user(session, user.id), "a brand new password")
    assert client.get("/").status_code == 302
    assert sign_in(client, user.name, "a brand new password").status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("target, lands_on", [
    ("/users/", "/users/"),
    ("/?page=2", "/?page=2"),
    ("https://evil.example/phish", "/"),
    ("//evil.example/phish", "/"),
    ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("", "/"),
])
def test_next_only_leads_to_local_paths(client, target, lands_on):
    add_user(farm_of(client), "admin", name="root")
    response = sign_in(client, "root", next_page=target)
    assert response.headers["Location"] == lands_on


def test_anonymous_page_request_comes_back_after_sign_in(client):
    add_user(farm_of(client), "admin", name="root")
    first = client.get("/users/?sort=name")
    assert first.headers["Location"] == "/login?next=/users/?sort%3Dname"
    form = client.get(first.headers["Location"])
    assert 'name="next" value="/users/?sort=name"' in form.text
    assert sign_in(client, "root", next_page="/users/?sort=name").headers["Location"] == "/users/?sort=name"


def test_session_cookie_is_httponly_lax_and_secure_when_configured(embedded_farm):
    for secure in (False, True):
        client = make_app(embedded_farm, SESSION_COOKIE_SECURE=secure).test_client()
        cookie = client.get("/login").headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure


def test_setting_turns_on_secure_cookies_and_sets_the_lifetime(farm_home):
    from dashboard.app import create_app
    from farm.context import FarmContext
    from farm.settings import load_settings

    settings = load_settings({"FARM_HOME": str(farm_home), "FARM_SESSION_COOKIE_SECURE": "true",
                              "FARM_SESSION_LIFETIME_HOURS": "2"})
    app = create_app(FarmContext(settings))
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 7200


def test_pages_escape_what_users_typed(client):
    login_as(client, "admin", name="<script>alert(1)</script>")
    page = client.get("/").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_pages_send_a_content_security_policy_without_inline_scripts(client):
    policy = client.get("/login").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
