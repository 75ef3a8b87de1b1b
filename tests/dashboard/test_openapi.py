"""/api/v1/openapi.json is generated from the routes' declarations, so it covers every route."""

from __future__ import annotations

import pytest
from flask import Flask

from dashboard.api.blueprint import ApiBlueprint
from dashboard.api.openapi import openapi_path
from dashboard.app import _check_every_view_declares_access
from dashboard.auth import requires
from dashboard.permissions import roles_with


def test_every_api_route_is_in_the_document(client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"] == "3.1.0"
    api_rules = [rule for rule in client.application.url_map.iter_rules() if rule.rule.startswith("/api/v1")]
    assert api_rules
    for rule in api_rules:
        path = openapi_path(rule.rule)
        assert path in document["paths"], rule.rule
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path][method.lower()]
            assert operation["summary"] and "responses" in operation


def test_operations_say_who_may_call_them(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    me = paths["/api/v1/me"]["get"]
    assert me["x-permission"] == "signed_in"
    assert me["x-roles"] == sorted(roles_with("signed_in"))
    assert me["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/User"}
    assert "401" in me["responses"]
    assert paths["/api/v1/openapi.json"]["get"]["security"] == []


def test_path_parameters_become_openapi_parameters():
    assert openapi_path("/api/v1/jobs/<int:job_id>/renders/<path:key>") == "/api/v1/jobs/{job_id}/renders/{key}"


def test_an_undeclared_api_route_stops_the_app():
    rogue = ApiBlueprint("rogue", __name__, url_prefix="/api/v1/rogue")
    rogue.add_url_rule("/x", "x", requires("campaigns.view")(lambda: {}))
    app = Flask(__name__)
    app.register_blueprint(rogue)
    with pytest.raises(RuntimeError, match="not declared with api.operation: GET /api/v1/rogue/x"):
        _check_every_view_declares_access(app)


def test_a_view_without_an_access_declaration_stops_the_app():
    app = Flask(__name__)
    app.add_url_rule("/open", "open", lambda: "anyone")
    with pytest.raises(RuntimeError, match="views without @requires"):
        _check_every_view_declares_access(app)


def test_an_unknown_permission_fails_when_declared():
    with pytest.raises(KeyError):
        requires("campaigns.veiw")
