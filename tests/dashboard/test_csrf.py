"""CSRF: a form without this session's token changes nothing; fetch() may send it as a header."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from farm.db.models import User
from farm.db.session import transaction
from tests.dashboard.conftest import PASSWORD, add_user, csrf_from_page, csrf_token, farm_of, login_as


def _user_count(client) -> int:
    with transaction(farm_of(client).session_factory) as session:
        return session.scalar(select(func.count(User.id)))


NEW_USER = {"name": "newbie", "role": "reviewer", "password": PASSWORD}


def test_form_without_token_is_stale_and_changes_nothing(client):
    login_as(client, "admin")
    before = _user_count(client)
    response = client.post("/users/", data=NEW_USER)
    assert response.status_code == 400
    assert "This form is stale; nothing was changed. Reload the page and try again." in response.text
    assert _user_count(client) == before


def test_token_of_another_session_is_stale(app):
    attacker = app.test_client()
    victim = app.test_client()
    login_as(victim, "admin")
    attackers_token = csrf_token(attacker)
    before = _user_count(victim)
    response = victim.post("/users/", data={**NEW_USER, "csrf_token": attackers_token})
    assert response.status_code == 400 and "stale" in response.text
    assert _user_count(victim) == before


def test_token_from_before_sign_in_is_stale_after_it(client):
    """Signing in starts a new session, so a form rendered before it is stale."""
    form = client.get("/login")
    old_token = csrf_from_page(form.text)
    login_as(client, "admin")
    response = client.post("/users/", data={**NEW_USER, "csrf_token": old_token})
    assert response.status_code == 400


def test_the_pages_token_works_as_field_and_as_header(client):
    login_as(client, "admin")
    page = client.get("/users/").text
    token = csrf_from_page(page)
    assert client.post("/users/", data={**NEW_USER, "csrf_token": token}).status_code == 302
    assert client.post("/users/", data={**NEW_USER, "name": "second"},
                       headers={"X-CSRF-Token": token}).status_code == 302
    with transaction(farm_of(client).session_factory) as session:
        assert set(session.scalars(select(User.name))) >= {"newbie", "second"}


def test_sign_in_form_needs_its_token_too(client):
    add_user(farm_of(client), "admin", name="root")
    client.get("/login")
    response = client.post("/login", data={"name": "root", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # not signed in


def test_sign_out_needs_the_token(client):
    login_as(client, "reviewer")
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still signed in


def test_api_is_not_subject_to_csrf(client):
    # A POST to the API is answered by the API (405 JSON here: /me is GET only), not refused as stale.
    response = client.post("/api/v1/me")
    assert response.status_code == 405 and response.is_json


def test_every_form_on_a_page_carries_the_token(client):
    login_as(client, "admin")
    add_user(farm_of(client), "reviewer")
    page = client.get("/users/").text
    forms = re.findall(r"<form[^>]*method=\"post\".*?</form>", page, re.S)
    assert len(forms) >= 4
    assert all('name="csrf_token"' in form for form in forms)


def test_each_rendered_form_gets_a_fresh_submission_key(app):
    with app.test_request_context("/"):
        from dashboard.csrf import submission_key_field

        first, second = str(submission_key_field()), str(submission_key_field())
    keys = [re.search(r'name="submission_key" value="([0-9a-f]{32})"', f).group(1) for f in (first, second)]
    assert keys[0] != keys[1]
