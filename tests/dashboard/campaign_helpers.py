"""Helpers for the campaign, template and batch page and API tests: unique names (the tests of a
module share one farm), campaigns and templates made through the services, and form posts that
carry the session's CSRF token as the browser's form would."""

from __future__ import annotations

import html
import re
import uuid

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from farm.accounts.service import issue_api_token
from farm.campaigns.service import add_member, create_campaign_as
from farm.context import FarmContext
from farm.db.session import transaction
from farm.templates.service import create_campaign_template
from tests.dashboard.conftest import csrf_token, make_app

FAST = {"steps": 2, "width": 64, "height": 64}  # the tiny model, quickly
_SUBMISSION_KEY = re.compile(r'name="submission_key" value="([^"]+)"')



# Fixtures the campaign, template and batch test modules share (imported there by name):
# one app over one farm per module; each test makes its own users and campaigns.
@pytest.fixture(scope="module")
def shared_app(module_farm):
    return make_app(module_farm)


@pytest.fixture
def client(shared_app):
    return shared_app.test_client()


@pytest.fixture
def farm(module_farm):
    return module_farm

def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def make_campaign(farm: FarmContext, owner, *, members=(), **fields):
    fields.setdefault("name", unique("Campaign"))
    fields.setdefault("brand", "Acme")
    with transaction(farm.session_factory) as session:
        campaign = create_campaign_as(session, owner, **fields)
        for member in members:
            add_member(session, owner, campaign.id, member.id)
    return campaign


def make_template(farm: FarmContext, user, campaign_id: int, **fields):
    fields.setdefault("name", unique("template"))
    fields.setdefault("body", "{{ product }} on {{ background }}")
    fields.setdefault("variables", ["product", "background"])
    fields.setdefault("default_params", dict(FAST))
    with transaction(farm.session_factory) as session:
        return create_campaign_template(session, user, campaign_id, **fields)


def count(farm: FarmContext, model) -> int:
    with transaction(farm.session_factory) as session:
        return session.scalar(select(func.count()).select_from(model))


def token_for(farm: FarmContext, user) -> dict:
    with transaction(farm.session_factory) as session:
        return {"Authorization": f"Bearer {issue_api_token(session, user)}"}


class Forms:
    """Posts forms as the signed-in browser would: with the session's CSRF token."""

    def __init__(self, client: FlaskClient):
        self.client = client
        self.token = csrf_token(client)

    def post(self, url: str, data: dict | list | None = None, **kwargs):
        if isinstance(data, list):  # (name, value) pairs, for repeated fields
            data = MultiDict(data + [("csrf_token", self.token)])
        else:
            data = {**(data or {}), "csrf_token": self.token}
        return self.client.post(url, data=data, **kwargs)


def field_error(page: str, field: str) -> str | None:
    """The message shown next to `field` (its error slot), or None if the slot is hidden or absent."""
    match = re.search(r'<p class="field-error" id="error-' + re.escape(field) + r'"[^>]*?(hidden)?>(.*?)</p>', page,
                      re.S)
    if match is None or match.group(1):
        return None
    return html.unescape(match.group(2)).strip()


def input_value(page: str, name: str) -> str | None:
    match = re.search(r'<input id="' + re.escape(name) + r'" name="' + re.escape(name) + r'"[^>]*?value="([^"]*)"', page)
    return html.unescape(match.group(1)) if match else None


def submission_key(page: str) -> str:
    match = _SUBMISSION_KEY.search(page)
    assert match, "the form has no submission key"
    return match.group(1)
