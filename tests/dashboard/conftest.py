"""Dashboard fixtures: the app over a migrated embedded farm (SQLite) or over PostgreSQL, and
`login_as`, which creates a user and signs in through the real form, CSRF token and all."""

from __future__ import annotations

import re
import shutil
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard.app import create_app
from farm.accounts.service import create_user
from farm.context import FarmContext, prepare_database
from farm.db.models import User
from farm.db.session import transaction
from farm.render.tiny_model import TINY_MODEL_NAME
from farm.settings import load_settings

PASSWORD = "a long enough password"
TEST_CONFIG = {
    "TESTING": True,
    # Every API response a test sees is checked against the schema its operation declares.
    "CHECK_API_RESPONSES": True,
}
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def make_app(farm: FarmContext, **config) -> Flask:
    return create_app(farm, {**TEST_CONFIG, **config})


@pytest.fixture
def app(embedded_farm) -> Flask:
    """The dashboard over a migrated embedded farm (SQLite, folder storage) of this test's own."""
    return make_app(embedded_farm)


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def postgres_farm(postgres_url, farm_home) -> FarmContext:
    """A migrated farm on a fresh PostgreSQL database."""
    settings = load_settings({"FARM_HOME": str(farm_home), "FARM_DATABASE_URL": postgres_url,
                              "FARM_SECRET_KEY": "k" * 40})
    ctx = FarmContext(settings)
    prepare_database(ctx)
    yield ctx
    ctx.db_engine.dispose()


@pytest.fixture
def postgres_app(postgres_farm) -> Flask:
    return make_app(postgres_farm)


@pytest.fixture(scope="module")
def module_farm(tmp_path_factory, tiny_model_dir) -> FarmContext:
    """One migrated embedded farm for a whole module, for tests that only read (the access matrix)."""
    home = tmp_path_factory.mktemp("dashboard") / "farm-data"
    shutil.copytree(tiny_model_dir, home / "models" / TINY_MODEL_NAME)
    ctx = FarmContext(load_settings({"FARM_HOME": str(home)}))
    prepare_database(ctx)
    yield ctx
    ctx.db_engine.dispose()


# -- helpers ------------------------------------------------------------------------------------

def farm_of(client: FlaskClient) -> FarmContext:
    return client.application.extensions["farm"]


def add_user(farm: FarmContext, role: str, *, name: str | None = None, password: str | None = PASSWORD,
             **fields) -> User:
    with transaction(farm.session_factory) as session:
        return create_user(session, name=name or f"{role}-{uuid.uuid4().hex[:6]}", role=role,
                           password=password, **fields)


def csrf_from_page(html: str) -> str:
    match = _CSRF_INPUT.search(html) or _CSRF_META.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD, next_page: str = ""):
    """Fill in and submit the real sign-in form; returns the response to the POST."""
    form = client.get("/login")
    assert form.status_code == 200, form.status_code
    return client.post("/login", data={"csrf_token": csrf_from_page(form.text), "name": name,
                                       "password": password, "next": next_page})


def login_as(client: FlaskClient, role: str, **user_fields) -> User:
    """Create a user with `role` in the client's farm and sign in as them through the form."""
    user = add_user(farm_of(client), role, **user_fields)
    response = sign_in(client, user.name)
    assert response.status_code == 302, response.text
    return user


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of the client's session, read from a rendered page as farm.js reads it
    (the sign-in page, or where it sends a signed-in user)."""
    page = client.get("/login", follow_redirects=True)
    return csrf_from_page(page.text)
