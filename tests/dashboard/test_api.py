"""The REST API: bearer tokens only, JSON errors everywhere under /api/v1, declared bodies checked."""

from __future__ import annotations

import pytest

from dashboard.api.blueprint import ApiBlueprint, api_body, api_query
from dashboard.app import create_app
from dashboard.auth import current_user
from farm.accounts.service import issue_api_token, set_disabled
from farm.db.session import transaction
from farm.errors import NotFound
from tests.dashboard.conftest import TEST_CONFIG, add_user, farm_of, login_as, make_app

# A small API of the test's own, on its own ApiBlueprint, to reach every error path.
probe = ApiBlueprint("probe", __name__, url_prefix="/api/v1/probe")
ECHO = probe.schema("Echo", {
    "type": "object",
    "required": ["name", "rows"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "count": {"type": "integer", "minimum": 1, "maximum": 64},
        "rows": {"type": "array", "items": {"type": "object", "required": ["product"],
                                            "properties": {"product": {"type": "string"}}}},
    },
})


@probe.operation("POST", "/echo", summary="Echo the body", permission="jobs.submit", request=ECHO,
                 response=ECHO, status=201, query={"dry_run": {"type": "boolean", "default": False}})
def echo():
    assert api_query() in ({"dry_run": False}, {"dry_run": True})
    return api_body(), 201


@probe.operation("GET", "/missing/<int:thing_id>", summary="Always missing", permission="campaigns.view",
                 response={"type": "object"})
def missing(thing_id: int):
    raise NotFound("thing", thing_id)


@probe.operation("GET", "/boom", summary="Always fails", permission="campaigns.view", response={"type": "object"})
def boom():
    raise RuntimeError("an unexpected bug")


@probe.operation("GET", "/liar", summary="Answers outside its schema", permission="campaigns.view",
                 response={"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}})
def liar():
    return {"id": "not a number"}


@pytest.fixture
def api_app(embedded_farm):
    app = make_app(embedded_farm, MAX_CONTENT_LENGTH=10_000)
    app.register_blueprint(probe)
    return app


def _token_for(client, role: str, **fields) -> tuple[str, object]:
    farm = farm_of(client)
    user = add_user(farm, role, **fields)
    with transaction(farm.session_factory) as session:
        return issue_api_token(session, user), user


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("app_fixture", ["app", "postgres_app"])
def test_me_with_a_bearer_token(request, app_fixture):
    client = request.getfixturevalue(app_fixture).test_client()
    token, user = _token_for(client, "auditor", name="audrey", email="a@example.com")
    response = client.get("/api/v1/me", headers=_bearer(token))
    assert response.status_code == 200
    assert response.json["name"] == "audrey" and response.json["role"] == "auditor"
    assert response.json["permissions"] == ["audit.view", "campaigns.view", "exports.create"]
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
def test_missing_or_bad_token_is_401_json(client, headers):
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in response.json["error"]["message"]


def test_disabled_users_token_is_refused(client):
    token, user = _token_for(client, "reviewer")
    with transaction(farm_of(client).session_factory) as session:
        set_disabled(session, user, True)
    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 401


def test_session_cookie_does_not_authenticate_the_api(client):
    login_as(client, "admin")
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/me").status_code == 401


def test_role_without_permission_gets_403_json(api_app):
    client = api_app.test_client()
    token, _ = _token_for(client, "reviewer")
    response = client.post("/api/v1/probe/echo", json={"name": "x", "rows": []}, headers=_bearer(token))
    assert response.status_code == 403
    assert response.json["error"]["message"]


def test_declared_body_is_checked_and_errors_name_the_field(api_app):
    client = api_app.test_client()
    token, _ = _token_for(client, "campaign_manager")
    headers = _bearer(token)
    good = {"name": "ok", "count": 4, "rows": [{"product": "shoe"}]}
    created = client.post("/api/v1/probe/echo?dry_run=true", json=good, headers=headers)
    assert created.status_code == 201 and created.json == good

    for body, field, fragment in [
        ({"rows": []}, "name", "required"),
        ({"name": "", "rows": []}, "name", "required"),
        ({"name": "x" * 21, "rows": []}, "name", "at most 20"),
        ({"name": "x", "count": 65, "rows": []}, "count", "at most 64"),
        ({"name": "x", "count": True, "rows": []}, "count", "integer"),
        ({"name": "x", "rows": [{"product": "a"}, {}]}, "rows[1].product", "required"),
        ({"name": "x", "rows": [], "colour": "red"}, "colour", "not a field"),
        ([1, 2], "body", "object"),
    ]:
        response = client.post("/api/v1/probe/echo", json=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json["error"]["field"] == field, body
        assert fragment in response.json["error"]["message"], body

    not_json = client.post("/api/v1/probe/echo", data="name=x", headers=headers)
    assert not_json.status_code == 400 and not_json.json["error"]["field"] == "body"
    broken = client.post("/api/v1/probe/echo", data="{", content_type="application/json", headers=headers)
    assert broken.status_code == 400 and broken.json["error"]["message"] == "is not valid JSON"
    bad_query = client.post("/api/v1/probe/echo?dry_run=maybe", json=good, headers=headers)
    assert bad_query.status_code == 400 and bad_query.json["error"]["field"] == "dry_run"


def test_errors_under_the_api_are_json(api_app):
    client = api_app.test_client()
    token, _ = _token_for(client, "admin")
    headers = _bearer(token)

    missing = client.get("/api/v1/probe/missing/7", headers=headers)
    assert missing.status_code == 404 and missing.json == {"error": {"message": "No thing 7."}}
    unknown = client.get("/api/v1/no/such/route", headers=headers)
    assert unknown.status_code == 404 and unknown.is_json
    wrong_method = client.delete("/api/v1/me", headers=headers)
    assert wrong_method.status_code == 405 and wrong_method.is_json
    assert "GET" in wrong_method.headers["Allow"]
    too_large = client.post("/api/v1/probe/echo", data="x" * 20_000, content_type="application/json", headers=headers)
    assert too_large.status_code == 413 and too_large.is_json


def test_unexpected_failure_is_a_json_500_without_details(embedded_farm):
    app = create_app(embedded_farm, {**TEST_CONFIG, "PROPAGATE_EXCEPTIONS": False})
    app.register_blueprint(probe)
    client = app.test_client()
    token, _ = _token_for(client, "admin")
    response = client.get("/api/v1/probe/boom", headers=_bearer(token))
    assert response.status_code == 500
    assert response.json == {"error": {"message": "Something went wrong on our side; it has been logged."}}
    assert "unexpected bug" not in response.text
    login_as(client, "admin")
    assert client.get("/api/v1/probe/boom").status_code == 401  # pages' cookies do not count


def test_response_outside_its_declared_schema_fails_in_tests(api_app):
    client = api_app.test_client()
    token, _ = _token_for(client, "admin")
    with pytest.raises(AssertionError, match="declared response schema: response.id: must be integer"):
        client.get("/api/v1/probe/liar", headers=_bearer(token))


def test_pages_get_error_pages_not_json(client):
    login_as(client, "reviewer")
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.content_type.startswith("text/html")
    forbidden = client.get("/users/")
    assert forbidden.status_code == 403 and "Your role does not allow this" in forbidden.text


def test_current_user_is_none_outside_a_signed_in_request(app):
    with app.test_request_context("/api/v1/me"):
        assert current_user() is None
