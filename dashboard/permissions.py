"""Which role may do what: the one table every page and API route checks (through
`dashboard.auth.requires`). Add a permission here, never a role check in a view.

Campaign visibility (which campaigns a campaign manager or reviewer sees) is a separate,
per-row rule: farm.campaigns.access.
"""

from __future__ import annotations

from farm.db.models import ROLES

ALL_ROLES = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[str]] = {
    "campaigns.view": ALL_ROLES,
    "campaigns.edit": frozenset({"admin", "campaign_manager"}),
    "templates.edit": frozenset({"admin", "campaign_manager"}),
    "jobs.submit": frozenset({"admin", "campaign_manager"}),
    "jobs.control": frozenset({"admin", "campaign_manager", "ops"}),
    "review.decide": frozenset({"admin", "campaign_manager", "reviewer"}),
    "exports.create": frozenset({"admin", "campaign_manager", "auditor"}),
    "ops.view": frozenset({"admin", "ops"}),
    "users.manage": frozenset({"admin"}),
    "audit.view": frozenset({"admin", "auditor"}),
    "licenses.manage": frozenset({"admin"}),
    "models.manage": frozenset({"admin"}),
}

# Not permissions, but the two other answers a route can give to "who may call this":
# SIGNED_IN: any signed-in user (their own account page, sign-out); PUBLIC: anybody.
SIGNED_IN = "signed_in"
PUBLIC = "public"


def roles_with(permission: str) -> frozenset[str]:
    """The roles holding `permission`; SIGNED_IN gives every role. Unknown names raise KeyError,
    so a typo fails when the view is declared, not when someone is refused."""
    if permission == SIGNED_IN:
        return ALL_ROLES
    return PERMISSIONS[permission]


def role_has(role: str, permission: str) -> bool:
    return role in roles_with(permission)
