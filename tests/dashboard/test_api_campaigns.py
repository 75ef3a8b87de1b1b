"""The campaigns, templates and batch-job API: happy paths, every field's bad input as JSON naming
the field, invisible campaigns as 404, idempotent submission, and the OpenAPI document.
Every response is checked against its declared schema (CHECK_API_RESPONSES)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farm.db.models import Campaign, Job, PromptTemplate, Render, TemplateVersion
from farm.db.session import transaction
from tests.dashboard.campaign_helpers import count, make_campaign, make_template, token_for, unique
from tests.dashboard.campaign_helpers import client, farm, shared_app  # noqa: F401 (fixtures)
from tests.dashboard.conftest import add_user


@pytest.fixture
def manager(farm):
    return add_user(farm, "campaign_manager")


@pytest.fixture
def auth(farm, manager) -> dict:
    return token_for(farm, manager)


@pytest.fixture
def campaign(farm, manager):
    return make_campaign(farm, manager, style_suffix="studio light", channel_formats=["display_mrec"])


@pytest.fixture
def version(farm, manager, campaign):
    return make_template(farm, manager, campaign.id)


def _error(response, status=400) -> tuple[str | None, str]:
    assert response.status_code == status, response.json
    return response.json["error"].get("field"), response.json["error"]["message"]


# -- campaigns ------------------------------------------------------------------------------------------

def test_create_get_list_patch_archive(client, farm, manager, auth):
    name = unique("Spring")
    created = client.post("/api/v1/campaigns", headers=auth, json={
        "name": name, "brand": "Acme", "commercial_use": False, "due_date": "2030-05-01", "default_model": "tiny-sd",
        "style_suffix": "studio light", "style_negative": "blurry", "channel_formats": ["linkedin"]})
    assert created.status_code == 201
    campaign = created.json
    assert (campaign["name"], campaign["owner_id"], campaign["due_date"], campaign["default_model"]) == (
        name, manager.id, "2030-05-01", "tiny-sd")
    url = f"/api/v1/campaigns/{campaign['id']}"
    assert client.get(url, headers=auth).json == campaign
    assert campaign["id"] in [c["id"] for c in client.get("/api/v1/campaigns", headers=auth).json["campaigns"]]

    patched = client.patch(url, headers=auth, json={"brand": "Acme 2", "due_date": None, "channel_formats": []})
    assert patched.status_code == 200
    assert (patched.json["brand"], patched.json["due_date"], patched.json["channel_formats"]) == ("Acme 2", None, [])
    assert patched.json["name"] == name  # untouched

    archived = client.post(url + "/archive", headers=auth)
    assert archived.status_code == 200 and archived.json["status"] == "archived"
    listed = client.get("/api/v1/campaigns", headers=auth).json["campaigns"]
    assert campaign["id"] not in [c["id"] for c in listed]
    listed = client.get("/api/v1/campaigns?include_archived=true", headers=auth).json["campaigns"]
    assert campaign["id"] in [c["id"] for c in listed]
    assert client.post(url + "/unarchive", headers=auth).json["status"] == "active"


@pytest.mark.parametrize("body, field", [
    ({"brand": "Acme"}, "name"),
    ({"name": "", "brand": "Acme"}, "name"),
    ({"name": "x" * 201, "brand": "Acme"}, "name"),
    ({"name": "ok"}, "brand"),
    ({"name": "ok", "brand": "Acme", "commercial_use": "yes"}, "commercial_use"),
    ({"name": "ok", "brand": "Acme", "due_date": "24/12/2030"}, "due_date"),
    ({"name": "ok", "brand": "Acme", "default_model": "nope"}, "default_model"),
    ({"name": "ok", "brand": "Acme", "style_suffix": 3}, "style_suffix"),
    ({"name": "ok", "brand": "Acme", "style_negative": "x" * 2001}, "style_negative"),
    ({"name": "ok", "brand": "Acme", "channel_formats": ["tiktok"]}, "channel_formats"),
    ({"name": "ok", "brand": "Acme", "channel_formats": "linkedin"}, "channel_formats"),
    ({"name": "ok", "brand": "Acme", "owner_id": 1}, "owner_id"),
])
def test_create_bad_input_names_the_field(client, farm, auth, body, field):
    before = count(farm, Campaign)
    got, message = _error(client.post("/api/v1/campaigns", headers=auth, json=body))
    assert got == field and message
    assert count(farm, Campaign) == before


@pytest.mark.parametrize("body, field", [
    ({"name": ""}, "name"), ({"due_date": "soon"}, "due_date"), ({"default_model": "lanczos"}, "default_model"),
    ({"channel_formats": ["nope"]}, "channel_formats"), ({"status": "archived"}, "status"),
])
def test_patch_bad_input_names_the_field_and_changes_nothing(client, farm, auth, campaign, body, field):
    got, _ = _error(client.patch(f"/api/v1/campaigns/{campaign.id}", headers=auth, json=body))
    assert got == field
    with transaction(farm.session_factory) as session:
        assert session.get(Campaign, campaign.id).name == campaign.name


def test_body_must_be_json(client, auth):
    got, message = _error(client.post("/api/v1/campaigns", headers=auth, data="name=x"))
    assert got == "body" and "JSON" in message


def test_members(client, farm, auth, campaign):
    reviewer = add_user(farm, "reviewer")
    url = f"/api/v1/campaigns/{campaign.id}/members"
    added = client.post(url, headers=auth, json={"user_id": reviewer.id})
    assert added.status_code == 200 and [m["name"] for m in added.json["members"]] == [reviewer.name]
    assert client.post(url, headers=auth, json={"user_id": reviewer.id}).json == added.json  # idempotent
    assert client.get(url, headers=auth).json == added.json
    reviewer_auth = token_for(farm, reviewer)
    assert client.get(f"/api/v1/campaigns/{campaign.id}", headers=reviewer_auth).status_code == 200
    assert client.delete(f"{url}/{reviewer.id}", headers=auth).json == {"members": []}
    assert client.get(f"/api/v1/campaigns/{campaign.id}", headers=reviewer_auth).status_code == 404
    assert _error(client.post(url, headers=auth, json={"user_id": 999999}))[0] == "user_id"
    assert _error(client.post(url, headers=auth, json={"user_id": "x"}))[0] == "user_id"
    assert _error(client.post(url, headers=auth, json={}))[0] == "user_id"


def test_invisible_campaign_is_404_everywhere(client, farm, auth, manager):
    other = add_user(farm, "campaign_manager")
    hidden = make_campaign(farm, other)
    hidden_version = make_template(farm, other, hidden.id)
    url = f"/api/v1/campaigns/{hidden.id}"
    for response in (
        client.get(url, headers=auth),
        client.patch(url, headers=auth, json={"brand": "x"}),
        client.post(url + "/archive", headers=auth),
        client.get(url + "/members", headers=auth),
        client.post(url + "/members", headers=auth, json={"user_id": manager.id}),
        client.get(url + "/templates", headers=auth),
        client.post(url + "/templates", headers=auth, json={"name": "t", "body": "x"}),
        client.post(url + "/templates/preview", headers=auth, json={"rows": [], "body": "x"}),
        client.get(f"/api/v1/templates/{hidden_version.template_id}", headers=auth),
        client.post(f"/api/v1/templates/{hidden_version.template_id}/versions", headers=auth, json={"body": "x"}),
        client.post("/api/v1/jobs/plan", headers=auth, json={
            "campaign_id": hidden.id, "template_version_id": hidden_version.id,
            "rows": [{"product": "a", "background": "b"}], "seeds": [1]}),
    ):
        assert response.status_code == 404, response.request.path
        assert response.json["error"]["message"]
    with transaction(farm.session_factory) as session:
        assert session.get(Campaign, hidden.id).status == "active"


def test_roles_without_permission_get_403(client, farm, campaign):
    reviewer = add_user(farm, "reviewer")
    auth = token_for(farm, reviewer)
    assert client.post("/api/v1/campaigns", headers=auth, json={"name": "x", "brand": "y"}).status_code == 403
    assert client.post("/api/v1/jobs", headers=auth, json={}).status_code == 403
    assert client.get("/api/v1/campaigns").status_code == 401


def test_channel_formats(client, auth):
    formats = client.get("/api/v1/channel-formats", headers=auth).json["formats"]
    assert {"name": "instagram_story", "label": "Instagram / Facebook story", "width": 1080, "height": 1920} in formats


# -- templates --------------------------------------------------------------------------------------------

def test_templates_create_get_list_new_version(client, farm, manager, auth, campaign):
    name = unique("hero")
    created = client.post(f"/api/v1/campaigns/{campaign.id}/templates", headers=auth, json={
        "name": name, "body": "{{ product }} on {{ background }}", "negative_body": "dull",
        "variables": ["product", "background"], "default_params": {"steps": 3, "cfg_scale": 6, "width": 64, "height": 64}})
    assert created.status_code == 201
    first = created.json
    assert (first["version"], first["variables"], first["created_by_id"]) == (1, ["product", "background"], manager.id)
    assert first["default_params"] == {"steps": 3, "cfg_scale": 6.0, "width": 64, "height": 64}
    listed = client.get(f"/api/v1/campaigns/{campaign.id}/templates", headers=auth).json["templates"]
    assert [(t["name"], t["latest_version_id"]) for t in listed] == [(name, first["id"])]

    second = client.post(f"/api/v1/templates/{first['template_id']}/versions", headers=auth,
                         json={"body": "{{ product }}!", "variables": ["product"]})
    assert second.status_code == 201 and second.json["version"] == 2
    got = client.get(f"/api/v1/templates/{first['template_id']}", headers=auth).json
    assert got["latest_version"] == 2 and [v["body"] for v in got["versions"]] == [
        "{{ product }} on {{ background }}", "{{ product }}!"]


@pytest.mark.parametrize("body, field", [
    ({"body": "x"}, "name"),
    ({"name": "t"}, "body"),
    ({"name": "t", "body": "{{ a"}, "body"),
    ({"name": "t", "body": "{{ a }}", "variables": ["b"]}, "body"),
    ({"name": "t", "body": "{{ a }}", "negative_body": "{{ c }}", "variables": ["a"]}, "negative_body"),
    ({"name": "t", "body": "{{ a }}", "variables": ["a", "9x"]}, "variables[1]"),
    ({"name": "t", "body": "{{ a }}", "default_params": {"steps": 0}}, "default_params.steps"),
    ({"name": "t", "body": "{{ a }}", "default_params": {"model": "nope"}}, "default_params.model"),
    ({"name": "t", "body": "{{ a }}", "default_params": {"seed": 1}}, "default_params.seed"),
    ({"name": "t", "body": "{{ a }}", "default_params": {"width": 64}}, "default_params.height"),
    ({"name": "t", "body": "{{ a }}", "extra": 1}, "extra"),
])
def test_template_bad_input_names_the_field(client, farm, auth, campaign, body, field):
    before = count(farm, PromptTemplate), count(farm, TemplateVersion)
    got, _ = _error(client.post(f"/api/v1/campaigns/{campaign.id}/templates", headers=auth, json=body))
    assert got == field
    assert (count(farm, PromptTemplate), count(farm, TemplateVersion)) == before


def test_new_version_bad_input(client, farm, auth, version):
    got, message = _error(client.post(f"/api/v1/templates/{version.template_id}/versions", headers=auth,
                                      json={"body": "{{ product }} and {{ nope }}", "variables": ["product"]}))
    assert got == "body" and "unknown variable 'nope'" in message
    with transaction(farm.session_factory) as session:
        assert session.scalar(select(TemplateVersion.version).where(
            TemplateVersion.template_id == version.template_id).order_by(TemplateVersion.version.desc())) == 1


def test_preview_saved_version_and_unsaved_texts(client, auth, campaign, version):
    url = f"/api/v1/campaigns/{campaign.id}/templates/preview"
    saved = client.post(url, headers=auth, json={"template_version_id": version.id, "rows": [
        {"product": "shoe", "background": "sand"}, {"product": "hat"}]})
    assert saved.status_code == 200
    assert saved.json["ok"] is False
    first, second = saved.json["rows"]
    assert first["prompt"] == "shoe on sand, studio light"
    assert second["errors"] == [{"field": "rows[1].background", "message": "is required by the template"}]

    unsaved = client.post(url, headers=auth, json={"body": "{{ n }} cats", "rows": [{"n": 3}]})
    assert unsaved.json == {"ok": True, "rows": [{"index": 0, "prompt": "3 cats, studio light",
                                                  "negative_prompt": "", "errors": []}]}
    assert _error(client.post(url, headers=auth, json={"body": "{{ n", "rows": []}))[0] == "body"
    assert _error(client.post(url, headers=auth, json={"rows": []}))[0] == "body"
    assert _error(client.post(url, headers=auth, json={"body": "x"}))[0] == "rows"
    assert _error(client.post(url, headers=auth, json={"body": "x", "rows": [[1]]}))[0] == "rows[0]"


# -- batch jobs ------------------------------------------------------------------------------------------------

def _batch(campaign, version, **changes) -> dict:
    return {"campaign_id": campaign.id, "template_version_id": version.id,
            "rows": [{"product": "red shoe", "background": "sand"}, {"product": "bag", "background": "snow"}],
            "seeds": [1, 2], "params": {"steps": 2}, **changes}


def test_plan_writes_nothing(client, farm, auth, campaign, version):
    before = count(farm, Job), count(farm, Render)
    plan = client.post("/api/v1/jobs/plan", headers=auth, json=_batch(campaign, version))
    assert plan.status_code == 200
    assert (plan.json["renders"], plan.json["rows"], plan.json["seeds"], plan.json["model"]) == (4, 2, 2, "tiny-sd")
    assert plan.json["formats"][0]["name"] == "display_mrec" and plan.json["estimate"]["source"] == "default"
    assert plan.json["estimate"]["seconds"] >= 0
    assert (count(farm, Job), count(farm, Render)) == before


def test_submit_is_idempotent_by_submission_key(client, farm, auth, campaign, version):
    body = _batch(campaign, version, formats=[], name="api batch", submission_key=unique("key"), priority=7)
    first = client.post("/api/v1/jobs", headers=auth, json=body)
    assert first.status_code == 201 and first.json["created"] is True and first.json["renders"] == 4
    again = client.post("/api/v1/jobs", headers=auth, json=body)
    assert again.status_code == 201
    assert again.json == {"job_id": first.json["job_id"], "renders": 4, "created": False}
    with transaction(farm.session_factory) as session:
        jobs = session.scalars(select(Job).where(Job.campaign_id == campaign.id)).all()
        assert len(jobs) == 1 and jobs[0].name == "api batch" and jobs[0].priority == 7

    body = _batch(campaign, version, seed_count=1)
    del body["seeds"]
    without_key = client.post("/api/v1/jobs", headers=auth, json=body)
    assert without_key.status_code == 201 and without_key.json["renders"] == 2  # 2 rows x 1 seed x 1 format
    assert without_key.json["job_id"] != first.json["job_id"]


@pytest.mark.parametrize("changes, field", [
    ({"campaign_id": "1"}, "campaign_id"),
    ({"template_version_id": None}, "template_version_id"),
    ({"rows": []}, "rows"),
    ({"rows": [{"product": "", "background": ""}]}, "rows"),
    ({"rows": [{"product": "x"}]}, "rows[0].background"),
    ({"rows": [{"product": "", "background": ""}, {"product": "x", "background": ["y"]}]}, "rows[1].background"),
    ({"seeds": [1, 1]}, "seeds[1]"),
    ({"seeds": [-1]}, "seeds[0]"),
    ({"seeds": [1], "seed_count": 2}, "seeds"),
    ({"seeds": None}, "seeds"),
    ({"seed_count": 0, "seeds": None}, "seed_count"),
    ({"formats": ["nope"]}, "formats"),
    ({"params": {"steps": 0}}, "steps"),
    ({"params": {"sampler": "Bogus"}}, "sampler"),
    ({"params": {"model": "nope"}}, "model"),
    ({"params": {"width": 100, "height": 64}}, "width"),
    ({"params": {"cfg_scale": 99}}, "cfg_scale"),
    ({"params": {"seed": 1}}, "params.seed"),
    ({"priority": 11}, "priority"),
    ({"name": "n" * 201}, "name"),
    ({"submission_key": ""}, "submission_key"),
    ({"colour": "red"}, "colour"),
])
@pytest.mark.parametrize("path", ["/api/v1/jobs/plan", "/api/v1/jobs"])
def test_batch_bad_input_names_the_field(client, farm, auth, campaign, version, changes, field, path):
    body = {key: value for key, value in _batch(campaign, version, **changes).items() if value is not None}
    before = count(farm, Job)
    got, message = _error(client.post(path, headers=auth, json=body))
    assert got == field, message
    assert count(farm, Job) == before


def test_batch_for_an_archived_campaign_or_a_foreign_version(client, farm, manager, auth, campaign, version):
    other = make_campaign(farm, manager)
    foreign = make_template(farm, manager, other.id)
    got, _ = _error(client.post("/api/v1/jobs", headers=auth, json=_batch(campaign, foreign)))
    assert got == "template_version_id"
    client.post(f"/api/v1/campaigns/{campaign.id}/archive", headers=auth)
    got, message = _error(client.post("/api/v1/jobs", headers=auth, json=_batch(campaign, version)))
    assert got == "campaign" and "archived" in message


def test_openapi_documents_these_operations(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path, methods in {
        "/api/v1/campaigns": ("get", "post"), "/api/v1/campaigns/{campaign_id}": ("get", "patch"),
        "/api/v1/campaigns/{campaign_id}/archive": ("post",), "/api/v1/campaigns/{campaign_id}/members": ("get", "post"),
        "/api/v1/campaigns/{campaign_id}/templates": ("get", "post"),
        "/api/v1/campaigns/{campaign_id}/templates/preview": ("post",), "/api/v1/templates/{template_id}": ("get",),
        "/api/v1/templates/{template_id}/versions": ("post",), "/api/v1/jobs/plan": ("post",),
        "/api/v1/jobs": ("post",),
    }.items():
        for method in methods:
            operation = paths[path][method]
            assert operation["summary"] and operation["x-permission"], (path, method)
    submit = paths["/api/v1/jobs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    assert "201" in submit["responses"] and "400" in submit["responses"] and submit["x-permission"] == "jobs.submit"

