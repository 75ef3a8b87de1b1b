"""API: the caller's own account."""

from __future__ import annotations

from dashboard.api.blueprint import api
from dashboard.auth import current_user
from dashboard.permissions import PERMISSIONS, SIGNED_IN
from farm.db.models import ROLES, User

USER = api.schema("User", {
    "type": "object",
    "required": ["id", "name", "role", "email", "disabled", "created_at", "permissions"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "role": {"type": "string", "enum": list(ROLES)},
        "email": {"type": ["string", "null"]},
        "disabled": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "permissions": {"type": "array", "items": {"type": "string"},
                        "description": "What this user's role allows (dashboard/permissions.py)."},
    },
})


def user_json(user: User) -> dict:
    return {
        "id": user.id, "name": user.name, "role": user.role, "email": user.email, "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "permissions": sorted(name for name, roles in PERMISSIONS.items() if user.role in roles),
    }


@api.operation("GET", "/me", summary="The user the bearer token belongs to", permission=SIGNED_IN,
               response=USER, tags=("accounts",))
def me():
    return user_json(current_user())
