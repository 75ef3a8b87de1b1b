"""farm.accounts: users, scrypt passwords, hashed API tokens, and the audit trail they leave."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from farm.accounts.service import (
    authenticate, create_user, issue_api_token, set_disabled, set_password, user_for_token,
)
from farm.audit.log import verify_chain
from farm.db.models import AuditEvent, User
from farm.db.session import transaction
from farm.errors import InvalidInput

PASSWORD = "correct horse battery staple"


@pytest.fixture(params=["sqlite", "postgres"])
def farm(request):
    """The same tests on the embedded farm and on PostgreSQL."""
    return request.getfixturevalue("embedded_farm" if request.param == "sqlite" else "postgres_farm")


def _events(farm, action: str) -> list[AuditEvent]:
    with transaction(farm.session_factory) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_created_user_has_a_scrypt_hash_and_an_audit_event(farm):
    with transaction(farm.session_factory) as session:
        user = create_user(session, name=" ana ", role="reviewer", password=PASSWORD, email="ana@example.com")
    assert user.name == "ana"
    assert user.password_hash.startswith("scrypt:")
    assert PASSWORD not in user.password_hash
    [event] = _events(farm, "user.created")
    assert event.after == {"name": "ana", "role": "reviewer", "email": "ana@example.com", "disabled": False}


@pytest.mark.parametrize("fields, field, fragment", [
    (dict(name="", role="admin"), "name", "required"),
    (dict(name="x" * 101, role="admin"), "name", "at most 100"),
    (dict(name="bad\nname", role="admin"), "name", "control"),
    (dict(name="bo", role="superuser"), "role", "campaign_manager"),
    (dict(name="bo", role="admin", password="short"), "password", "at least 10"),
    (dict(name="bo", role="admin", email="not-an-email"), "email", "not an email"),
])
def test_bad_fields_are_refused_naming_the_field(embedded_farm, fields, field, fragment):
    with pytest.raises(InvalidInput) as caught:
        with transaction(embedded_farm.session_factory) as session:
            create_user(session, **fields)
    assert caught.value.field == field
    assert fragment in caught.value.message
    with transaction(embedded_farm.session_factory) as session:
        assert session.scalar(select(User.id)) is None


def test_names_are_unique_whatever_their_case(farm):
    with transaction(farm.session_factory) as session:
        create_user(session, name="Ana", role="reviewer", password=PASSWORD)
    with pytest.raises(InvalidInput, match="exists already"):
        with transaction(farm.session_factory) as session:
            create_user(session, name="ana", role="admin", password=PASSWORD)


def test_authenticate_accepts_the_password_and_refuses_everything_else(farm):
    with transaction(farm.session_factory) as session:
        create_user(session, name="ana", role="reviewer", password=PASSWORD)
        create_user(session, name="apiclient", role="campaign_manager")  # no password: API only
    with transaction(farm.session_factory) as session:
        assert authenticate(session, "ana", PASSWORD).name == "ana"
        assert authenticate(session, "ana", PASSWORD + "x") is None
        assert authenticate(session, "nobody", PASSWORD) is None
        assert authenticate(session, "apiclient", "") is None
    assert len(_events(farm, "user.login")) == 1
    failures = [e.after for e in _events(farm, "user.login_failed")]
    assert failures == [{"name": "ana", "reason": "wrong password"}, {"name": "nobody", "reason": "unknown user"},
                        {"name": "apiclient", "reason": "no password set"}]
    with transaction(farm.session_factory) as session:
        everything = json.dumps([(e.before, e.after) for e in session.scalars(select(AuditEvent))])
        assert not verify_chain(session)
    assert PASSWORD not in everything


def test_disabled_user_cannot_sign_in_or_use_a_token(farm):
    with transaction(farm.session_factory) as session:
        user = create_user(session, name="ana", role="reviewer", password=PASSWORD)
        token = issue_api_token(session, user)
        set_disabled(session, user, True)
    with transaction(farm.session_factory) as session:
        assert authenticate(session, "ana", PASSWORD) is None
        assert user_for_token(session, token) is None
    assert _events(farm, "user.login_failed")[-1].after["reason"] == "user disabled"
    with transaction(farm.session_factory) as session:
        set_disabled(session, user, False)
        assert user_for_token(session, token).name == "ana"


def test_only_the_tokens_hash_is_stored_and_a_new_token_replaces_the_old(farm):
    with transaction(farm.session_factory) as session:
        user = create_user(session, name="bot", role="campaign_manager")
        first = issue_api_token(session, user)
    assert len(first) >= 40
    with transaction(farm.session_factory) as session:
        stored = session.get(User, user.id).api_token_hash
        assert stored == hashlib.sha256(first.encode()).hexdigest()
        assert user_for_token(session, first).id == user.id
        assert user_for_token(session, "not-a-token") is None
        assert user_for_token(session, "") is None
        second = issue_api_token(session, user)
    with transaction(farm.session_factory) as session:
        assert user_for_token(session, first) is None
        assert user_for_token(session, second).id == user.id
    events = _events(farm, "user.token_issued")
    assert len(events) == 2
    assert first not in json.dumps([e.after for e in events]) and second not in json.dumps([e.after for e in events])


def test_set_password_replaces_the_old_one(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        user = create_user(session, name="ana", role="reviewer", password=PASSWORD)
        with pytest.raises(InvalidInput):
            set_password(session, user, "short")
        set_password(session, user, "another long password")
    with transaction(embedded_farm.session_factory) as session:
        assert authenticate(session, "ana", PASSWORD) is None
        assert authenticate(session, "ana", "another long password") is not None
