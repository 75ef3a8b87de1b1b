"""Users, passwords and API tokens.

Passwords are hashed with scrypt (werkzeug.security). An API token is shown once, when it is
issued; only its sha256 is stored, so a leaked database does not leak working tokens. Every
change and every sign-in attempt is an audit event; no event ever holds a password or a token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from farm.audit.log import record_event
from farm.db.models import ROLES, User
from farm.errors import InvalidInput, NotFound

NAME_MAX_LENGTH = 100
PASSWORD_MIN_LENGTH = 10
# scrypt takes any length, but hashing megabytes per attempt would be a cheap denial of service.
PASSWORD_MAX_LENGTH = 1024
EMAIL_MAX_LENGTH = 255
PASSWORD_METHOD = "scrypt"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput("name", "is required")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidInput("name", f"must be at most {NAME_MAX_LENGTH} characters")
    if _CONTROL_CHARACTERS.search(name):
        raise InvalidInput("name", "must not contain control characters")
    return name


def _validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput("role", f"'{role}' is not a role; roles: {', '.join(ROLES)}")
    return role


def _validate_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidInput("password", f"must be at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise InvalidInput("password", f"must be at most {PASSWORD_MAX_LENGTH} characters")
    return password


def _validate_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip()
    if len(email) > EMAIL_MAX_LENGTH or not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise InvalidInput("email", f"'{email}' is not an email address")
    return email


def check_user_fields(*, name: str, role: str, password: str | None = None, email: str | None = None) -> None:
    """The checks create_user makes that need no database, so callers can run them first."""
    _validate_name(name)
    _validate_role(role)
    if password is not None:
        _validate_password(password)
    _validate_email(email)


def _audit_view(user: User) -> dict:
    return {"name": user.name, "role": user.role, "email": user.email, "disabled": user.disabled}


def create_user(
    session: Session,
    *,
    name: str,
    role: str,
    password: str | None = None,
    email: str | None = None,
    actor: User | None = None,
) -> User:
    """A new user. Without a password the user cannot sign in to the dashboard (an API client
    gets a token instead)."""
    name = _validate_name(name)
    _validate_role(role)
    if password is not None:
        _validate_password(password)
    email = _validate_email(email)
    # Names are compared without case, so "Ana" and "ana" cannot be two people.
    if session.scalar(select(User.id).where(func.lower(User.name) == name.lower())):
        raise InvalidInput("name", f"a user named '{name}' exists already")
    user = User(
        name=name, role=role, email=email,
        password_hash=generate_password_hash(password, method=PASSWORD_METHOD) if password is not None else None,
    )
    session.add(user)
    session.flush()
    record_event(session, action="user.created", entity_type="user", entity_id=user.id, actor=actor,
                 after=_audit_view(user))
    return user


def set_password(session: Session, user: User, password: str, *, actor: User | None = None) -> None:
    _validate_password(password)
    user = session.merge(user)
    user.password_hash = generate_password_hash(password, method=PASSWORD_METHOD)
    record_event(session, action="user.password_set", entity_type="user", entity_id=user.id, actor=actor)


def set_disabled(session: Session, user: User, disabled: bool, *, actor: User | None = None) -> User:
    """Disable a user (no sign-in, token refused) or enable them again."""
    user = session.merge(user)
    if user.disabled == disabled:
        return user
    before = _audit_view(user)
    user.disabled = disabled
    record_event(session, action="user.disabled" if disabled else "user.enabled", entity_type="user",
                 entity_id=user.id, actor=actor, before=before, after=_audit_view(user))
    return user


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    # A hash of nothing anyone knows, checked when the name is unknown, so that an unknown name
    # costs the same scrypt work as a wrong password and timing does not reveal who exists.
    return generate_password_hash(secrets.token_urlsafe(32), method=PASSWORD_METHOD)


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user if `name` and `password` match an enabled user, else None. Records
    user.login or user.login_failed in the caller's transaction (so the caller commits either way)."""
    name = name.strip()
    user = session.scalar(select(User).where(User.name == name)) if name else None
    stored_hash = user.password_hash if user is not None and user.password_hash else _decoy_hash()
    password_matches = check_password_hash(stored_hash, password[:PASSWORD_MAX_LENGTH])
    if user is None or not user.password_hash or not password_matches:
        reason = "unknown user" if user is None else ("no password set" if not user.password_hash else "wrong password")
    elif user.disabled:
        reason = "user disabled"
    else:
        record_event(session, action="user.login", entity_type="user", entity_id=user.id, actor=user)
        return user
    record_event(session, action="user.login_failed", entity_type="user",
                 entity_id=user.id if user is not None else None,
                 after={"name": name[:NAME_MAX_LENGTH], "reason": reason})
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(session: Session, user: User, *, actor: User | None = None) -> str:
    """A new API token for `user`, replacing any earlier one. Returned once; only its hash is kept."""
    user = session.merge(user)
    token = secrets.token_urlsafe(32)
    user.api_token_hash = token_hash(token)
    record_event(session, action="user.token_issued", entity_type="user", entity_id=user.id, actor=actor)
    return token


def revoke_api_token(session: Session, user: User, *, actor: User | None = None) -> None:
    user = session.merge(user)
    if user.api_token_hash is None:
        return
    user.api_token_hash = None
    record_event(session, action="user.token_revoked", entity_type="user", entity_id=user.id, actor=actor)


def user_for_token(session: Session, token: str) -> User | None:
    """The enabled user holding this API token, or None."""
    if not token:
        return None
    user = session.scalar(select(User).where(User.api_token_hash == token_hash(token)))
    if user is None or user.disabled:
        return None
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


def get_user_by_name(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound("user", name)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def has_users(session: Session) -> bool:
    return session.scalar(select(User.id).limit(1)) is not None
