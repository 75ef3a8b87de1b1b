"""Every route of the app, for every role and for anonymous callers: allowed or refused.

ROUTES must list every URL rule and method the app serves: a new page or API route fails
`test_every_route_is_in_the_table` until it gets a row, here or in the area's module under
tests/dashboard/route_tables/ (its ROUTES, and a `targets` function making the campaign, job or
asset its example URLs name as {placeholders}). Each row names the permission the
route requires (dashboard/permissions.py), SIGNED_IN or PUBLIC; the matrix test then calls the
example URL as each role and as an anonymous caller and checks who gets through:
  pages: anonymous -> 302 to /login?next=..., role without the permission -> 403
  API:   anonymous -> 401 JSON,               role without the permission -> 403 JSON
Pages are called with each role's signed-in session, the API with each role's bearer token (the
API ignores cookies). Unsafe methods to pages carry the session's CSRF token, so the answer is
about access, not CSRF.
"""

from __future__ import annotations

import re

import pytest

from dashboard.auth import required_permission
from dashboard.permissions import PERMISSIONS, PUBLIC, SIGNED_IN, roles_with
from farm.accounts.service import issue_api_token
from farm.db.models import ROLES
from farm.db.session import transaction
from tests.dashboard.conftest import PASSWORD, add_user, csrf_token, make_app, sign_in
from tests.dashboard.route_tables import AREA_ROUTES, AREA_TARGETS, Route

ANONYMOUS = "anonymous"

BASE_ROUTES = [
    Route("/static/<path:filename>", "GET", "/static/farm.css", PUBLIC),
    Route("/healthz", "GET", "/healthz", PUBLIC),
    Route("/login", "GET", "/login", PUBLIC),
    Route("/login", "POST", "/login", PUBLIC, {"name": "nobody", "password": "wrong password"}),
    Route("/logout", "POST", "/logout", SIGNED_IN),
    Route("/", "GET", "/", "campaigns.view"),
    Route("/objects/<path:key>", "GET", "/objects/images/00/00/missing.png", "campaigns.view"),
    Route("/users/", "GET", "/users/", "users.manage"),
    Route("/users/", "POST", "/users/", "users.manage", {"name": "", "role": "reviewer"}),
    Route("/users/<int:user_id>/status", "POST", "/users/{target_user_id}/status", "users.manage",
          {"disabled": "0"}),
    Route("/users/<int:user_id>/token", "POST", "/users/{target_user_id}/token", "users.manage"),
    Route("/api/v1/me", "GET", "/api/v1/me", SIGNED_IN),
    Route("/api/v1/openapi.json", "GET", "/api/v1/openapi.json", PUBLIC),
]
ROUTES = BASE_ROUTES + AREA_ROUTES

# The policy, spelled out role by role, so that changing who may do what changes a test too.
EXPECTED_PERMISSIONS = {
    "campaigns.view": set(ROLES),
    "campaigns.edit": {"admin", "campaign_manager"},
    "templates.edit": {"admin", "campaign_manager"},
    "jobs.submit": {"admin", "campaign_manager"},
    "jobs.control": {"admin", "campaign_manager", "ops"},
    "review.decide": {"admin", "campaign_manager", "reviewer"},
    "exports.create": {"admin", "campaign_manager", "auditor"},
    "ops.view": {"admin", "ops"},
    "users.manage": {"admin"},
    "audit.view": {"admin", "auditor"},
    "licenses.manage": {"admin"},
    "models.manage": {"admin"},
}


def _app_routes(app) -> set[tuple[str, str]]:
    return {(rule.rule, method) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.fixture(scope="module")
def access_app(module_farm):
    return make_app(module_farm)


@pytest.fixture(scope="module")
def role_users(module_farm) -> dict:
    """One user per role (made once for the module), and a user for routes to act upon."""
    users = {role: add_user(module_farm, role, name=f"{role}-access") for role in ROLES}
    users["target"] = add_user(module_farm, "reviewer", name="access-target")
    return users


@pytest.fixture(scope="module")
def targets(module_farm, role_users) -> dict:
    """What example URLs name: {target_user_id}, and whatever each area's `targets` makes."""
    made = {"target_user_id": role_users["target"].id}
    for make in AREA_TARGETS:
        made.update(make(module_farm, role_users))
    return made


@pytest.fixture(scope="module")
def api_tokens(module_farm, role_users) -> dict:
    with transaction(module_farm.session_factory) as session:
        return {role: issue_api_token(session, role_users[role]) for role in ROLES}


@pytest.fixture(scope="module")
def signed_in_clients(access_app, role_users) -> dict:
    """A client per role, signed in once through the form; and an anonymous one."""
    clients = {ANONYMOUS: access_app.test_client()}
    for role in ROLES:
        client = access_app.test_client()
        assert sign_in(client, role_users[role].name).status_code == 302
        clients[role] = client
    return clients


def test_permission_table_is_the_policy():
    assert {name: set(roles) for name, roles in PERMISSIONS.items()} == EXPECTED_PERMISSIONS


def test_every_route_is_in_the_table(access_app):
    table = [(r.rule, r.method) for r in ROUTES]
    assert len(table) == len(set(table)), "a route is in the table twice"
    missing = _app_routes(access_app) - set(table)
    stale = set(table) - _app_routes(access_app)
    assert not missing, f"add rows to ROUTES in {__file__} for: {sorted(missing)}"
    assert not stale, f"ROUTES lists routes the app no longer has: {sorted(stale)}"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.rule}")
def test_table_matches_what_each_view_declares(access_app, route):
    adapter = access_app.url_map.bind("localhost")
    path = re.sub(r"\{\w+\}", "1", route.example).split("?", 1)[0]  # examples may carry a query string
    endpoint, _ = adapter.match(path, method=route.method)
    declared = PUBLIC if endpoint == "static" else required_permission(access_app.view_functions[endpoint])
    assert declared == route.permission


def _call(client, route: Route, targets: dict, token: str | None):
    url = route.example.format(**targets)
    if route.is_api:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
    elif route.method != "GET":
        headers = {"X-CSRF-Token": csrf_token(client)}
    else:
        headers = {}
    return client.open(url, method=route.method, data=route.form or None, headers=headers)


@pytest.mark.parametrize("who", [ANONYMOUS, *ROLES])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.rule}")
def test_route_access(access_app, signed_in_clients, api_tokens, role_users, targets, route, who):
    client = signed_in_clients[who]
    if route.rule == "/logout" and who != ANONYMOUS:
        # Signing out would sign the shared client out: use a client of its own.
        client = access_app.test_client()
        assert sign_in(client, role_users[who].name, PASSWORD).status_code == 302
    response = _call(client, route, targets, api_tokens.get(who))

    assert response.status_code < 500, response.text
    if route.permission == PUBLIC:
        allowed = True
    elif who == ANONYMOUS:
        allowed = False
    else:
        allowed = who in roles_with(route.permission)

    if allowed:
        assert response.status_code not in (401, 403), response.text
        assert "/login" not in response.headers.get("Location", "") or route.rule in ("/login", "/logout")
    elif who == ANONYMOUS and route.is_api:
        assert response.status_code == 401
        assert response.json["error"]["message"]
    elif who == ANONYMOUS:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
    elif route.is_api:
        assert response.status_code == 403
        assert response.json["error"]["message"]
    else:
        assert response.status_code == 403
        assert "Your role does not allow this" in response.text
