"""The licenses, models and audit API (every response checked against its declared schema), the
license policy through /api/v1/jobs (a forbidden model in a commercial campaign is refused, naming
the field, model, license and rule, and audited), and the export ZIP carrying license terms."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from farm.db.models import AuditEvent, Job, License, RegisteredModel
from farm.db.session import transaction
from farm.models.hashing import model_sha256
from farm.render.tiny_model import TINY_MODEL_NAME
from farm.review.service import decide
from tests.dashboard.compliance_world import NON_COMMERCIAL, world  # noqa: F401
from tests.unit.compliance_world import FAST

TODAY = datetime.now(timezone.utc).date().isoformat()
COMMUNITY = "LicenseRef-Stability-AI-Community"


def count(world, column, *where) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count(column)).where(*where))


def refusals(world) -> list[AuditEvent]:
    with transaction(world.farm.session_factory) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "policy.refused")
                                    .order_by(AuditEvent.id)))


# -- licenses -------------------------------------------------------------------------------------------

def test_licenses_list_and_get(world):
    client = world.app.test_client()
    listed = client.get("/api/v1/licenses", headers=world.api("reviewer"))
    assert listed.status_code == 200
    by_id = {entry["identifier"]: entry for entry in listed.json["licenses"]}
    assert by_id[COMMUNITY]["revenue_cap_usd"] == 1_000_000 and by_id["Apache-2.0"]["models"] >= 1
    one = client.get(f"/api/v1/licenses/{COMMUNITY}", headers=world.api("ops"))
    assert one.json["attribution_text"] == "Powered by Stability AI"
    missing = client.get("/api/v1/licenses/LicenseRef-Nope", headers=world.api("ops"))
    assert missing.status_code == 404 and missing.json["error"]["message"]


def test_an_admin_creates_and_changes_a_license(world):
    client = world.app.test_client()
    created = client.post("/api/v1/licenses", headers=world.api("admin"), json={
        "identifier": "LicenseRef-Api-Made", "name": "Made through the API", "commercial_use": "revenue_capped",
        "revenue_cap_usd": 250000, "use_restrictions": ["Keep the credits"]})
    assert created.status_code == 201, created.json
    assert created.json["commercial_use"] == "revenue_capped" and created.json["use_restrictions"] == ["Keep the credits"]

    _, name = world.checkpoint(license_identifier="LicenseRef-Api-Made")
    world.render(world.submit(name))
    changed = client.patch("/api/v1/licenses/LicenseRef-Api-Made", headers=world.api("admin"),
                           json={"commercial_use": "forbidden", "revenue_cap_usd": None, "reason": "cap withdrawn"})
    assert changed.status_code == 200, changed.json
    assert changed.json["changed"] and changed.json["license"]["commercial_use"] == "forbidden"
    assert (changed.json["models_rechecked"], changed.json["flagged_assets"]) == (1, 1)
    same = client.patch("/api/v1/licenses/LicenseRef-Api-Made", headers=world.api("admin"),
                        json={"commercial_use": "forbidden"})
    assert same.json["changed"] is False and same.json["flagged_assets"] == 0
    with transaction(world.farm.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "license.updated")
                                .order_by(AuditEvent.id.desc()).limit(1)).one()
    assert event.actor_name == "admin-compliance" and event.after["reason"] == "cap withdrawn"


@pytest.mark.parametrize("method, url, body, field", [
    ("post", "/api/v1/licenses", {"identifier": "no spaces allowed", "name": "x", "commercial_use": "allowed"},
     "identifier"),
    ("post", "/api/v1/licenses", {"identifier": "LicenseRef-X", "commercial_use": "allowed"}, "name"),
    ("post", "/api/v1/licenses", {"identifier": "LicenseRef-X", "name": "x", "commercial_use": "maybe"},
     "commercial_use"),
    ("post", "/api/v1/licenses", {"identifier": "LicenseRef-X", "name": "x", "commercial_use": "revenue_capped"},
     "revenue_cap_usd"),
    ("post", "/api/v1/licenses", {"identifier": "LicenseRef-X", "name": "x", "commercial_use": "allowed",
                                  "attribution_required": True}, "attribution_text"),
    ("post", "/api/v1/licenses", {"identifier": "LicenseRef-X", "name": "x", "commercial_use": "allowed",
                                  "use_restrictions": ["ok", ""]}, "use_restrictions[1]"),
    ("post", "/api/v1/licenses", {"identifier": "LicenseRef-X", "name": "x", "commercial_use": "allowed",
                                  "owner": "me"}, "owner"),
    ("post", "/api/v1/licenses", {"identifier": "Apache-2.0", "name": "x", "commercial_use": "allowed"},
     "identifier"),
    ("patch", "/api/v1/licenses/Apache-2.0", {"identifier": "Apache-3.0"}, "identifier"),
    ("patch", "/api/v1/licenses/Apache-2.0", {"url": "not a url"}, "url"),
    ("patch", "/api/v1/licenses/Apache-2.0", {"text_sha256": "zz"}, "text_sha256"),
])
def test_bad_license_input_names_the_field(world, method, url, body, field):
    before = count(world, License.id)
    response = getattr(world.app.test_client(), method)(url, headers=world.api("admin"), json=body)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field, response.json
    assert count(world, License.id) == before


@pytest.mark.parametrize("role", ["campaign_manager", "reviewer", "auditor", "ops"])
def test_only_admins_write_licenses(world, role):
    client = world.app.test_client()
    assert client.post("/api/v1/licenses", headers=world.api(role), json={
        "identifier": "LicenseRef-Nope", "name": "x", "commercial_use": "allowed"}).status_code == 403
    assert client.patch("/api/v1/licenses/Apache-2.0", headers=world.api(role),
                        json={"name": "mine"}).status_code == 403


# -- models -----------------------------------------------------------------------------------------

def test_models_list_and_get(world):
    client = world.app.test_client()
    checkpoints = client.get("/api/v1/models?kind=checkpoint&license=Apache-2.0", headers=world.api("reviewer"))
    assert checkpoints.status_code == 200
    tiny = next(m for m in checkpoints.json["models"] if m["name"] == TINY_MODEL_NAME)
    assert {m["kind"] for m in checkpoints.json["models"]} == {"checkpoint"}
    assert tiny["short_hash"] == tiny["sha256"][:10] and tiny["license"] == "Apache-2.0"
    detail = client.get(f"/api/v1/models/{tiny['id']}", headers=world.api("reviewer")).json
    assert detail["sha256"] == tiny["sha256"] and {"queued_renders", "held_renders", "assets"} <= set(detail)
    assert client.get("/api/v1/models/99999", headers=world.api("reviewer")).status_code == 404
    bad = client.get("/api/v1/models?kind=merge", headers=world.api("reviewer"))
    assert bad.status_code == 400 and bad.json["error"]["field"] == "kind"


def test_an_admin_registers_suspends_unsuspends_and_relicenses_a_model(world):
    client, headers = world.app.test_client(), world.api("admin")
    models_dir = world.farm.settings.models_dir
    shutil.copytree(models_dir / TINY_MODEL_NAME, models_dir / "api-ckpt")
    (models_dir / "api-ckpt" / "NOTE.txt").write_text("api")
    created = client.post("/api/v1/models", headers=headers, json={
        "path": "api-ckpt", "name": "api-ckpt", "kind": "checkpoint", "license": "Apache-2.0",
        "source_url": "https://example.com/api-ckpt"})
    assert created.status_code == 201, created.json
    model = created.json
    assert model["sha256"] == model_sha256(models_dir / "api-ckpt") and model["added_by"] == "admin-compliance"

    world.render(world.submit("api-ckpt"))
    waiting = world.submit("api-ckpt", seeds=(1, 2), campaign_id=world.campaign_id)
    suspended = client.post(f"/api/v1/models/{model['id']}/suspend", headers=headers, json={"reason": "audit"})
    assert suspended.status_code == 200, suspended.json
    assert (suspended.json["held_renders"], suspended.json["flagged_assets"]) == (2, 1)
    assert suspended.json["model"]["status"] == "suspended"
    again = client.post(f"/api/v1/models/{model['id']}/suspend", headers=headers, json={"reason": "twice"})
    assert again.status_code == 400 and again.json["error"]["field"] == "model"

    released = client.post(f"/api/v1/models/{model['id']}/unsuspend", headers=headers)
    held_ids = sorted(r.id for r in world.renders(waiting))
    assert sorted(released.json["released_render_ids"]) == held_ids and released.json["released_renders"] == 2

    relicensed = client.post(f"/api/v1/models/{model['id']}/license", headers=headers,
                             json={"license": NON_COMMERCIAL, "reason": "checked the card"})
    assert relicensed.status_code == 200 and relicensed.json["model"]["license"] == NON_COMMERCIAL
    assert relicensed.json["held_renders"] == 2  # the commercial job's renders, now refused
    assert {r.state for r in world.renders(waiting)} == {"held"}


@pytest.mark.parametrize("body, field, message", [
    ({"path": "danger.ckpt"}, "path", "pickle-based"),
    ({"path": "/etc/hostname"}, "path", "outside the model folders"),
    ({"path": "../" * 30 + "etc"}, "path", "outside the model folders"),
    ({"license": "LicenseRef-Nope"}, "license", "unknown license"),
    ({"source_url": "ftp://example.com"}, "source_url", "http(s) URL"),
    ({"kind": "merge"}, "kind", "must be one of"),
    ({"name": ""}, "name", "is required"),
    ({"path": 5}, "path", "must be string"),
])
def test_bad_model_registrations_name_the_field(world, body, field, message):
    models_dir = world.farm.settings.models_dir
    (models_dir / "danger.ckpt").write_bytes(b"pickle")
    (models_dir / "ok.safetensors").write_bytes(b"")  # exists; the request fails before it is read
    before = count(world, RegisteredModel.id)
    response = world.app.test_client().post("/api/v1/models", headers=world.api("admin"), json={
        "path": "ok.safetensors", "name": "refused", "kind": "vae", "license": "Apache-2.0", "architecture": "sd1",
        **body})
    assert response.status_code == 400
    assert response.json["error"]["field"] == field and message in response.json["error"]["message"], response.json
    assert count(world, RegisteredModel.id) == before


def test_bad_model_changes_name_the_field(world):
    model_id, _ = world.checkpoint()
    client, headers = world.app.test_client(), world.api("admin")
    no_reason = client.post(f"/api/v1/models/{model_id}/suspend", headers=headers, json={"reason": ""})
    assert no_reason.status_code == 400 and no_reason.json["error"]["field"] == "reason"
    blank = client.post(f"/api/v1/models/{model_id}/suspend", headers=headers, json={"reason": "   "})
    assert blank.status_code == 400 and blank.json["error"]["field"] == "reason"
    unknown = client.post(f"/api/v1/models/{model_id}/license", headers=headers, json={"license": "LicenseRef-Nope"})
    assert unknown.status_code == 400 and unknown.json["error"]["field"] == "license"
    active = client.post(f"/api/v1/models/{model_id}/unsuspend", headers=headers)
    assert active.status_code == 400 and active.json["error"]["field"] == "model"
    assert client.post("/api/v1/models/99999/unsuspend", headers=headers).status_code == 404


@pytest.mark.parametrize("role", ["campaign_manager", "reviewer", "auditor", "ops"])
def test_only_admins_change_models(world, role):
    client = world.app.test_client()
    with transaction(world.farm.session_factory) as session:
        tiny = session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == TINY_MODEL_NAME))
    assert client.post(f"/api/v1/models/{tiny}/suspend", headers=world.api(role), json={"reason": "x"}).status_code == 403
    assert client.post(f"/api/v1/models/{tiny}/license", headers=world.api(role),
                       json={"license": NON_COMMERCIAL}).status_code == 403
    assert client.post("/api/v1/models", headers=world.api(role), json={
        "path": "x", "name": "x", "kind": "vae", "license": "Apache-2.0"}).status_code == 403


# -- the policy cannot be bypassed through the jobs API ------------------------------------------------------

def _batch(world, campaign_id: int, model: str) -> dict:
    return {"campaign_id": campaign_id, "template_version_id": world.versions[campaign_id],
            "rows": [{"product": "shoe"}], "seeds": [1], "formats": [], "params": {**FAST, "model": model}}


def test_a_forbidden_model_in_a_commercial_campaign_is_refused_through_the_jobs_api(world):
    _, forbidden = world.checkpoint(license_identifier=NON_COMMERCIAL)
    client, headers = world.app.test_client(), world.api("campaign_manager")
    jobs_before, refused_before = count(world, Job.id), len(refusals(world))
    for url in ("/api/v1/jobs/plan", "/api/v1/jobs"):
        response = client.post(url, headers=headers, json={**_batch(world, world.campaign_id, forbidden),
                                                           "submission_key": "bypass-attempt"})
        assert response.status_code == 400, response.json
        error = response.json["error"]
        assert (error["field"], error["model"], error["license"], error["rule"]) == (
            "model", forbidden, NON_COMMERCIAL, "commercial_use_forbidden")
        assert forbidden in error["message"] and NON_COMMERCIAL in error["message"]
        assert "[rule: commercial_use_forbidden]" in error["message"]
    assert count(world, Job.id) == jobs_before  # nothing written
    audited = refusals(world)[refused_before:]
    assert [e.after["stage"] for e in audited] == ["plan", "submission"]
    assert all((e.after["model"], e.after["rule"], e.actor_name) == (forbidden, "commercial_use_forbidden",
                                                                     "campaign_manager-compliance") for e in audited)

    # The same model is fine for a non-commercial campaign.
    allowed = client.post("/api/v1/jobs", headers=headers, json=_batch(world, world.noncommercial_id, forbidden))
    assert allowed.status_code == 201, allowed.json


def test_a_suspended_model_is_refused_through_the_jobs_api_in_any_campaign(world):
    model_id, name = world.checkpoint()
    world.app.test_client().post(f"/api/v1/models/{model_id}/suspend", headers=world.api("admin"),
                                 json={"reason": "pulled by legal"})
    response = world.app.test_client().post("/api/v1/jobs", headers=world.api("campaign_manager"),
                                            json=_batch(world, world.noncommercial_id, name))
    assert response.status_code == 400
    assert (response.json["error"]["rule"], response.json["error"]["model"]) == ("model_suspended", name)
    assert "pulled by legal" in response.json["error"]["message"]


# -- audit ----------------------------------------------------------------------------------------------

def test_audit_events_page_filter_and_get(world):
    client, headers = world.app.test_client(), world.api("auditor")
    first = client.get("/api/v1/audit/events?action=license.*&limit=3", headers=headers)
    assert first.status_code == 200, first.json
    assert len(first.json["events"]) == 3 and first.json["next_before"] == first.json["events"][-1]["id"]
    assert all(e["action"].startswith("license.") for e in first.json["events"])
    second = client.get(f"/api/v1/audit/events?action=license.*&limit=3&before={first.json['next_before']}",
                        headers=headers).json
    assert max(e["id"] for e in second["events"]) < min(e["id"] for e in first.json["events"])
    one = client.get(f"/api/v1/audit/events/{second['events'][0]['id']}", headers=headers).json
    assert one == second["events"][0]
    assert client.get("/api/v1/audit/events/999999", headers=headers).status_code == 404
    for query, field in (("from=May", "from"), ("limit=0", "limit"), ("before=x", "before"),
                         ("from=2024-02-02&to=2024-02-01", "to")):
        bad = client.get(f"/api/v1/audit/events?{query}", headers=headers)
        assert bad.status_code == 400 and bad.json["error"]["field"] == field, (query, bad.json)


def test_audit_verify_and_reports(world):
    client, headers = world.app.test_client(), world.api("admin")
    verified = client.get("/api/v1/audit/verify", headers=headers).json
    assert verified["ok"] and verified["first_bad_event"] is None and verified["events"] > 0
    anchored = client.get(f"/api/v1/audit/verify?anchor={verified['head']}", headers=headers).json
    assert anchored["ok"] and anchored["anchors"] == [verified["head"]]
    bad = client.get("/api/v1/audit/verify?anchor=12", headers=headers)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "anchor"

    models = client.get(f"/api/v1/audit/reports/models?from={TODAY}", headers=headers).json["models"]
    assert any(m["model"] == TINY_MODEL_NAME for m in models)
    licenses = client.get("/api/v1/audit/reports/licenses", headers=headers).json["licenses"]
    assert {entry["license"] for entry in licenses} >= {"Apache-2.0", COMMUNITY}
    report = client.get(f"/api/v1/audit/reports/campaigns/{world.campaign_id}", headers=headers)
    assert report.status_code == 200 and report.json["campaign"] == "Commercial launch" and report.json["commercial"]
    assert client.get("/api/v1/audit/reports/campaigns/99999", headers=headers).status_code == 404
    refused = client.get("/api/v1/audit/reports/refusals?rule=model_suspended", headers=headers).json["refusals"]
    assert all(r["rule"] == "model_suspended" for r in refused)
    bad_rule = client.get("/api/v1/audit/reports/refusals?rule=whim", headers=headers)
    assert bad_rule.status_code == 400 and bad_rule.json["error"]["field"] == "rule"


def test_audit_export_as_csv_and_json(world):
    client, headers = world.app.test_client(), world.api("auditor")
    as_csv = client.get(f"/api/v1/audit/export.csv?from={TODAY}&to={TODAY}", headers=headers)
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert as_csv.text.splitlines()[0] == "id,occurred_at,actor_id,actor_name,action,entity_type,entity_id,before,after,prev_hash,hash"
    as_json = client.get(f"/api/v1/audit/export.json?from={TODAY}&to={TODAY}", headers=headers)
    assert as_json.status_code == 200 and as_json.json["events"] and as_json.json["head"]["anchor"]
    missing = client.get(f"/api/v1/audit/export.json?to={TODAY}", headers=headers)
    assert missing.status_code == 400 and missing.json["error"]["field"] == "from"


@pytest.mark.parametrize("role", ["campaign_manager", "reviewer", "ops"])
def test_other_roles_cannot_read_the_audit_api(world, role):
    client = world.app.test_client()
    for url in ("/api/v1/audit/events", "/api/v1/audit/verify", "/api/v1/audit/reports/models",
                f"/api/v1/audit/reports/campaigns/{world.campaign_id}", "/api/v1/audit/reports/refusals",
                f"/api/v1/audit/export.csv?from={TODAY}&to={TODAY}"):
        assert client.get(url, headers=world.api(role)).status_code == 403, url


# -- the export carries license terms -------------------------------------------------------------------------

def test_the_export_zip_carries_license_chains_attributions_and_leaves_flagged_assets_out(world):
    _, community = world.checkpoint(license_identifier=COMMUNITY)
    flagged_model_id, flagged = world.checkpoint()
    kept = world.render(world.submit(community, seeds=(1, 2)))
    left_out = world.render(world.submit(flagged))
    with transaction(world.farm.session_factory) as session:
        for asset_id in kept + left_out:
            decide(session, world.users["reviewer"], asset_id, "approve")
    client = world.app.test_client()
    client.post(f"/api/v1/models/{flagged_model_id}/suspend", headers=world.api("admin"), json={"reason": "recall"})

    asset = client.get(f"/api/v1/assets/{left_out[0]}", headers=world.api("reviewer")).json
    assert asset["needs_rereview"] and "recall" in asset["rereview_reason"]
    assert asset["license_chain"][0]["model"] == flagged

    response = client.post(f"/api/v1/campaigns/{world.noncommercial_id}/export", headers=world.api("auditor"))
    assert response.status_code == 200 and response.headers["X-Export-Withheld"] == str(len(left_out))
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    manifest = json.loads(archive.read("manifest.json"))
    rows = {row["asset_id"]: row for row in manifest["assets"]}
    assert set(kept) <= set(rows) and not set(left_out) & set(rows)
    for asset_id in kept:
        assert rows[asset_id]["licenses"] == [COMMUNITY]
        assert rows[asset_id]["attributions"] == ["Powered by Stability AI"]
        assert rows[asset_id]["license_chain"][0]["model"] == community
    assert {entry["asset_id"] for entry in manifest["withheld"]} >= set(left_out)
    notice = archive.read("LICENSES.txt").decode()
    assert "Attributions to show with the images:\n  - Powered by Stability AI" in notice
    assert f"  - asset {left_out[0]}: model '{flagged}' was suspended: recall" in notice
    header = archive.read("manifest.csv").decode().splitlines()[0]
    assert header.endswith("license_chain,licenses,attributions,use_restrictions")


def test_a_lora_carrying_non_commercial_base_terms_is_refused_through_the_jobs_api(world):
    from tests.unit.compliance_world import register, weights

    _, base = world.checkpoint(license_identifier=NON_COMMERCIAL)
    register(world.farm, world.users["admin"], name=f"lora-on-{base}", kind="lora", license_identifier="Apache-2.0",
             base_model_name=base, path=weights(world.farm.settings.models_dir / "loras" / f"on-{base}.safetensors", 3))
    body = _batch(world, world.campaign_id, TINY_MODEL_NAME)
    body["params"]["loras"] = [{"name": f"lora-on-{base}", "weight": 0.7}]
    jobs_before = count(world, Job.id)
    response = world.app.test_client().post("/api/v1/jobs", headers=world.api("campaign_manager"), json=body)
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert (error["field"], error["model"], error["license"], error["rule"]) == (
        "loras[0].name", base, NON_COMMERCIAL, "commercial_use_forbidden")
    assert count(world, Job.id) == jobs_before
    assert refusals(world)[-1].after["model"] == base
