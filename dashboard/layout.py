"""What every page's frame needs: the navigation (by permission) and the signed-in user."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, request, url_for

from dashboard.auth import current_user, has_permission, required_permission
from dashboard.permissions import PUBLIC, role_has

# (label, endpoint). An entry shows only once its endpoint exists and the user's role holds the
# permission that endpoint's view requires, so a new page appears here by itself.
NAV = (
    ("Campaigns", "campaigns.index"),
    ("Templates", "templates.index"),
    ("Jobs", "jobs.index"),
    ("Gallery", "gallery.index"),
    ("Review", "review.index"),
    ("Exports", "exports.index"),
    ("Models", "models.index"),
    ("Licenses", "licenses.index"),
    ("Ops", "ops.index"),
    ("Audit", "audit.index"),
    ("Users", "users.index"),
)


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    active: bool


def nav_items() -> list[NavItem]:
    user = current_user()
    if user is None:
        return []
    items = []
    for label, endpoint in NAV:
        view = current_app.view_functions.get(endpoint)
        if view is None:
            continue
        permission = required_permission(view)
        if permission != PUBLIC and not role_has(user.role, permission):
            continue
        active = request.blueprint == endpoint.split(".")[0]
        items.append(NavItem(label, url_for(endpoint), active))
    return items


def init_layout(app: Flask) -> None:
    app.add_template_global(nav_items)
    app.add_template_global(current_user)
    app.add_template_global(has_permission)
