"""The first admin of a new farm, so that a newcomer running `farm up` can sign in."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from farm.accounts.service import create_user, has_users
from farm.context import FarmContext
from farm.db.session import transaction

INITIAL_ADMIN_NAME = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to a new file only its owner can read (mode 0600 from the start, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def ensure_initial_admin(ctx: FarmContext) -> Path | None:
    """On a farm with no users, create `admin` with a random password written to
    FARM_HOME/initial-admin-password; return that path, or None when the farm had users already."""
    password_file = ctx.settings.home / INITIAL_PASSWORD_FILE
    with transaction(ctx.session_factory) as session:
        if has_users(session):
            return None
        password = secrets.token_urlsafe(18)
        create_user(session, name=INITIAL_ADMIN_NAME, role="admin", password=password)
        # Written before the commit: if writing fails, no admin exists whose password nobody knows.
        if password_file.exists():
            password_file.unlink()  # left over from an earlier farm in this folder
        write_private_file(password_file, password + "\n")
    return password_file
