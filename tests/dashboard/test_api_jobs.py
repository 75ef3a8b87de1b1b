"""The jobs and renders API: listing with filters and paging, one job with its counts, a job's
renders, one render, pause / resume / cancel; bad input names the field; visibility is 404.
Every answer is checked against its declared schema (CHECK_API_RESPONSES)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from farm.accounts.service import issue_api_token
from farm.db.models import RENDER_STATES
from farm.db.session import transaction
from tests.dashboard.conftest import add_user, farm_of
from tests.dashboard.job_helpers import make_campaign, render, render_ids, submit, worker


@dataclass
class Api:
    client: object
    farm: object
    tokens: dict
    campaign_id: int
    version_id: int
    job_id: int

    def get(self, url, who="ana", **kwargs):
        return self.client.get(url, headers=self._auth(who), **kwargs)

    def post(self, url, who="ana", **kwargs):
        return self.client.post(url, headers=self._auth(who), **kwargs)

    def _auth(self, who):
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}


def _setup(app) -> Api:
    client = app.test_client()
    farm = farm_of(client)
    users = {"ana": add_user(farm, "campaign_manager", name="ana", password=None),
             "rey": add_user(farm, "reviewer", name="rey", password=None),
             "bo": add_user(farm, "campaign_manager", name="bo", password=None),
             "ops": add_user(farm, "ops", name="ops", password=None)}
    with transaction(farm.session_factory) as session:
        tokens = {name: issue_api_token(session, user) for name, user in users.items()}
    campaign_id, version_id = make_campaign(farm, users["ana"], name="Spring launch", members=[users["rey"]],
                                            channel_formats=["instagram_square"])
    job_id = submit(farm, users["ana"], campaign_id, version_id, formats=None, name="Hero shots")
    return Api(client, farm, tokens, campaign_id, version_id, job_id)


@pytest.fixture
def api(app) -> Api:
    return _setup(app)


def _error(response, status, field=None):
    assert response.status_code == status, response.text
    error = response.json["error"]
    assert error["message"]
    assert error.get("field") == field
    return error


@pytest.mark.parametrize("app_fixture", ["app", "postgres_app"])
def test_a_job_read_through_the_api(request, app_fixture):
    api = _setup(request.getfixturevalue(app_fixture))
    listed = api.get("/api/v1/jobs")
    assert listed.status_code == 200
    (summary,) = listed.json["jobs"]
    assert summary["id"] == api.job_id and summary["name"] == "Hero shots" and summary["campaign"] == "Spring launch"
    assert (summary["renders"], summary["finished_renders"], summary["percent"]) == (3, 0, 0)
    assert summary["submitted_by"] == "ana" and listed.json["next_before"] is None

    render(worker(api.farm), render_ids(api.farm, api.job_id)[:1])
    job = api.get(f"/api/v1/jobs/{api.job_id}", who="rey").json
    assert job["counts"] == {state: {"queued": 2, "succeeded": 1}.get(state, 0) for state in RENDER_STATES}
    assert job["status"] == "running" and job["percent"] == pytest.approx(33.3) and job["done"] is False
    assert job["template"]["name"] == "hero" and job["template"]["version"] == 1
    assert job["formats"] == [{"name": "instagram_square", "label": "Instagram square post",
                               "width": 1080, "height": 1080}]
    assert job["model"] == "tiny-sd" and job["license"] == "Apache-2.0" and len(job["model_sha256"]) == 64
    assert job["waiting_reason"].startswith("no live worker serves queue")

    renders = api.get(f"/api/v1/jobs/{api.job_id}/renders").json
    first = renders["renders"][0]
    assert [r["state"] for r in renders["renders"]] == ["succeeded", "queued", "queued"]
    assert first["asset_id"] and first["percent"] == 100 and first["worker"] == "test-worker"
    assert first["format"] == "instagram_square" and (first["width"], first["height"]) == (1080, 1080)
    assert first["prompt"] == "a cup on a wooden table" and first["seed"] == 1
    one = api.get(f"/api/v1/renders/{first['id']}").json
    assert one == first


def test_jobs_are_filtered_and_paged(api):
    admin = add_user(api.farm, "admin", password=None)
    other_campaign, other_version = make_campaign(api.farm, admin, name="Autumn")  # ana may not see it; ops may
    autumn = [submit(api.farm, admin, other_campaign, other_version, products=["a hat"]) for _ in range(2)]
    assert [j["id"] for j in api.get("/api/v1/jobs").json["jobs"]] == [api.job_id]
    everything = api.get("/api/v1/jobs", who="ops").json["jobs"]
    assert [j["id"] for j in everything] == [autumn[1], autumn[0], api.job_id]
    first = api.get("/api/v1/jobs?limit=2", who="ops").json
    assert [j["id"] for j in first["jobs"]] == autumn[::-1] and first["next_before"] == autumn[0]
    rest = api.get(f"/api/v1/jobs?limit=2&before={first['next_before']}", who="ops").json
    assert [j["id"] for j in rest["jobs"]] == [api.job_id] and rest["next_before"] is None
    assert [j["id"] for j in api.get(f"/api/v1/jobs?campaign_id={other_campaign}", who="ops").json["jobs"]] == \
        autumn[::-1]
    assert api.get("/api/v1/jobs?status=succeeded", who="ops").json["jobs"] == []


@pytest.mark.parametrize("query, field", [
    ("status=done", "status"), ("limit=0", "limit"), ("limit=100000", "limit"), ("limit=x", "limit"),
    ("before=0", "before"), ("campaign_id=abc", "campaign_id"), ("campaign_id=99999", "campaign_id"),
])
def test_bad_list_queries_name_the_field(api, query, field):
    _error(api.get(f"/api/v1/jobs?{query}"), 400, field)


def test_a_campaign_one_cannot_see_is_no_filter(api):
    error = _error(api.get(f"/api/v1/jobs?campaign_id={api.campaign_id}", who="bo"), 400, "campaign_id")
    assert "Spring" not in error["message"]


def test_renders_are_paged_and_filtered(api):
    ids = render_ids(api.farm, api.job_id)
    page = api.get(f"/api/v1/jobs/{api.job_id}/renders?limit=2").json
    assert [r["id"] for r in page["renders"]] == ids[:2] and page["next_after"] == 1
    page = api.get(f"/api/v1/jobs/{api.job_id}/renders?limit=2&after=1").json
    assert [r["id"] for r in page["renders"]] == ids[2:] and page["next_after"] is None
    assert api.get(f"/api/v1/jobs/{api.job_id}/renders?state=failed").json["renders"] == []
    for query, field in (("after=-2", "after"), ("after=x", "after"), ("state=done", "state"), ("limit=0", "limit")):
        _error(api.get(f"/api/v1/jobs/{api.job_id}/renders?{query}"), 400, field)


def test_what_one_cannot_see_is_not_found(api):
    render_id = render_ids(api.farm, api.job_id)[0]
    for url in (f"/api/v1/jobs/{api.job_id}", f"/api/v1/jobs/{api.job_id}/renders", f"/api/v1/renders/{render_id}",
                "/api/v1/jobs/999999", "/api/v1/renders/999999"):
        _error(api.get(url, who="bo"), 404)
    _error(api.post(f"/api/v1/jobs/{api.job_id}/cancel", who="bo"), 404)
    assert api.get(f"/api/v1/jobs/{api.job_id}").json["status"] == "queued"


def test_pause_resume_and_cancel(api):
    url = f"/api/v1/jobs/{api.job_id}"
    paused = api.post(url + "/pause", who="ops")
    assert paused.status_code == 200 and paused.json["status"] == "paused"
    assert paused.json["waiting_reason"] == "the job is paused"
    error = _error(api.post(url + "/pause"), 400, "job_id")
    assert "only a queued or running job can be paused" in error["message"]
    assert api.post(url + "/resume").json["status"] == "queued"
    _error(api.post(url + "/resume"), 400, "job_id")
    cancelled = api.post(url + "/cancel").json
    assert cancelled["status"] == "cancelled" and cancelled["done"] is True and cancelled["percent"] == 100
    assert cancelled["counts"]["cancelled"] == 3
    _error(api.post(url + "/cancel"), 400, "job_id")


def test_control_needs_the_permission_and_a_token(api):
    url = f"/api/v1/jobs/{api.job_id}/pause"
    _error(api.post(url, who="rey"), 403)
    _error(api.post(url, who=None), 401)
    _error(api.client.post(url, headers={"Authorization": "Bearer not-a-token"}), 401)
    assert api.get(f"/api/v1/jobs/{api.job_id}").json["status"] == "queued"


def test_the_operations_are_in_the_openapi_document(api):
    paths = api.client.get("/api/v1/openapi.json").json["paths"]
    assert "get" in paths["/api/v1/jobs"]
    assert {p["name"] for p in paths["/api/v1/jobs"]["get"]["parameters"]} == {"campaign_id", "status", "before",
                                                                                "limit"}
    for action in ("pause", "resume", "cancel"):
        operation = paths[f"/api/v1/jobs/{{job_id}}/{action}"]["post"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/Job"}
    assert "get" in paths["/api/v1/renders/{render_id}"] and "get" in paths["/api/v1/jobs/{job_id}/renders"]
