"""Model pages: the list and its filters, one model (full hash, who added it, usage), registering a
model from the model folders (every refusal at its field: pickle files, paths outside the folders,
unknown licenses and bases...), suspending, unsuspending and changing the license (each saying
what it held, released and flagged), refused roles, stale forms."""

from __future__ import annotations

import html
import re
import shutil
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from farm.db.models import AuditEvent, RegisteredModel
from farm.db.session import transaction
from farm.models.hashing import model_sha256
from farm.render.tiny_model import TINY_MODEL_NAME
from tests.dashboard.compliance_world import NON_COMMERCIAL, world  # noqa: F401
from tests.dashboard.test_license_pages import field_error
from tests.unit.compliance_world import weights


def model_row(world, name: str) -> SimpleNamespace | None:
    """The model's row as plain values (its license identifier, its base's name)."""
    with transaction(world.farm.session_factory) as session:
        model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == name)).one_or_none()
        if model is None:
            return None
        return SimpleNamespace(id=model.id, sha256=model.sha256, architecture=model.architecture,
                               source_url=model.source_url, status=model.status, status_reason=model.status_reason,
                               license=model.license.identifier,
                               base=model.base_model.name if model.base_model else None)


def models_count(world) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count(RegisteredModel.id)))


def flash(page: str) -> str:
    return html.unescape(" ".join(re.findall(r'<p class="flash flash-\w+">(.*?)</p>', page, re.S)))


def test_the_list_shows_kind_architecture_hash_license_status_and_base(world):
    tiny = model_row(world, TINY_MODEL_NAME)
    page = world.client("reviewer").get("/models/").text
    row = re.search(r'<tr data-model="tiny-sd"[^>]*>(.*?)</tr>', page, re.S).group(1)
    assert f'href="/models/{tiny.id}"' in row and "checkpoint" in row and "sd1" in row
    assert f">{tiny.sha256[:10]}</code>" in row and f'title="sha256 {tiny.sha256}"' in row
    assert 'href="/licenses/Apache-2.0"' in row and "active" in row
    assert "Register model" not in page
    only_upscalers = world.client("reviewer").get("/models/?kind=upscaler").text
    assert 'data-model="tiny-sd"' not in only_upscalers and 'data-model="lanczos' in only_upscalers.lower()
    bad = world.client("reviewer").get("/models/?kind=merge")
    assert bad.status_code == 400 and "kind" in bad.text and "must be one of" in bad.text


def test_a_model_page_shows_the_full_hash_who_added_it_and_its_usage(world):
    model_id, name = world.checkpoint()
    world.render(world.submit(name))
    page = world.client("reviewer").get(f"/models/{model_id}").text
    model = model_row(world, name)
    assert f'data-testid="sha256">{model.sha256}</code>' in page
    added = re.search(r'data-testid="added">(.*?)</dd>', page, re.S).group(1)
    assert "by admin-compliance on" in added
    usage = re.search(r'data-testid="model-usage">(.*?)</div>\s*</section>', page, re.S).group(1)
    assert re.search(r'<span class="value">1</span><span class="label">assets made</span>', usage)
    assert "Suspend" not in page  # a reviewer sees no admin actions
    assert world.client("reviewer").get("/models/99999").status_code == 404


def test_an_admin_registers_a_model_from_the_model_folder(world):
    models_dir = world.farm.settings.models_dir
    shutil.copytree(models_dir / TINY_MODEL_NAME, models_dir / "brand-ckpt")
    (models_dir / "brand-ckpt" / "NOTE.txt").write_text("brand")
    form = world.client("admin").get("/models/new").text
    assert '<option value="brand-ckpt">folder</option>' in form  # offered: unregistered, in the model folder
    assert '<label for="path">' in form and '<label for="license">' in form

    response = world.post("admin", "/models/", {"path": "brand-ckpt", "name": "brand-ckpt", "kind": "checkpoint",
                                                "license": "CreativeML-OpenRAIL-M", "base": "", "architecture": "",
                                                "source": "https://example.com/brand"}, follow_redirects=True)
    assert response.status_code == 200, response.text
    model = model_row(world, "brand-ckpt")
    assert model.sha256 == model_sha256(models_dir / "brand-ckpt") and model.architecture == "sd1"
    assert model.source_url == "https://example.com/brand" and model.license == "CreativeML-OpenRAIL-M"
    assert f"Registered checkpoint brand-ckpt (sd1) under CreativeML-OpenRAIL-M: sha256 {model.sha256[:10]}" \
        in flash(response.text)
    with transaction(world.farm.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "model.registered")
                                .order_by(AuditEvent.id.desc()).limit(1)).one()
    assert (event.actor_name, event.after["name"], event.after["sha256"]) == ("admin-compliance", "brand-ckpt",
                                                                              model.sha256)

    # A LoRA names its base; it takes the base's architecture.
    weights(models_dir / "loras" / "brand-style.safetensors", 42)
    response = world.post("admin", "/models/", {"path": "loras/brand-style.safetensors", "name": "brand-style",
                                                "kind": "lora", "license": "Apache-2.0", "base": "brand-ckpt"})
    assert response.status_code == 302
    lora = model_row(world, "brand-style")
    assert lora.base == "brand-ckpt" and lora.architecture == "sd1"


@pytest.mark.parametrize("setup, fields, field, message", [
    ("ckpt", {"path": "danger.ckpt"}, "path", "pickle-based checkpoint"),
    ("bin-folder", {"path": "pickled"}, "path", "holds pickle-based weights"),
    (None, {"path": "/etc/hostname"}, "path", "is outside the model folders"),
    (None, {"path": "../../outside"}, "path", "does not exist"),
    ("outside", {"path": "../outside.safetensors"}, "path", "is outside the model folders"),
    (None, {"path": "missing.safetensors"}, "path", "does not exist"),
    (None, {"path": ""}, "path", "is required"),
    ("file", {"license": "LicenseRef-Nope"}, "license", "unknown license 'LicenseRef-Nope'"),
    ("file", {"license": ""}, "license", "choose the license"),
    ("file", {"kind": "lora"}, "base", "a LoRA needs --base"),
    ("file", {"kind": "lora", "base": "no-such-model"}, "base", "unknown model 'no-such-model'"),
    ("file", {"name": "tiny-sd"}, "name", "is already registered"),
    ("file", {"source": "javascript:alert(1)"}, "source", "is not an http(s) URL"),
    ("file", {"kind": "checkpoint", "architecture": ""}, "architecture", "give the architecture"),
    ("file", {"kind": "nonsense"}, "kind", "must be one of"),
])
def test_refused_registrations_are_named_at_their_field(world, setup, fields, field, message):
    models_dir = world.farm.settings.models_dir
    if setup == "ckpt":
        (models_dir / "danger.ckpt").write_bytes(b"not really a pickle")
    elif setup == "bin-folder":
        shutil.copytree(models_dir / TINY_MODEL_NAME, models_dir / "pickled", dirs_exist_ok=True)
        (models_dir / "pickled" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    elif setup == "outside":
        weights(models_dir.parent / "outside.safetensors", 5)
    elif setup == "file":
        weights(models_dir / "vaes" / "candidate.safetensors", 77)
    form = {"path": "vaes/candidate.safetensors", "name": "candidate", "kind": "vae", "license": "Apache-2.0",
            "base": "", "architecture": "sd1", "source": "", **fields}
    before = models_count(world)
    response = world.post("admin", "/models/", form)
    assert response.status_code == 400
    assert message in (field_error(response.text, field) or ""), response.text
    assert "Nothing was registered." in response.text
    if form["path"]:
        assert f'value="{html.escape(form["path"])}"' in response.text  # what was typed is kept
    assert models_count(world) == before


def test_suspending_holds_queued_renders_flags_assets_and_unsuspending_releases_them(world):
    model_id, name = world.checkpoint()
    asset_id = world.render(world.submit(name))[0]
    waiting = world.submit(name, seeds=(1, 2))

    response = world.post("admin", f"/models/{model_id}/suspend", {"reason": "license under review"},
                          follow_redirects=True)
    assert response.status_code == 200
    assert f"Suspended {name}: 2 queued render(s) held, 1 asset(s) flagged for re-review." in flash(response.text)
    assert 'data-testid="suspension">Suspended: license under review.' in response.text
    assert 'data-testid="held-count">2<' in response.text and 'data-testid="flagged-count">1<' in response.text
    assert [r.state for r in world.renders(waiting)] == ["held", "held"]
    assert world.asset(asset_id).needs_rereview
    # The job page shows the held renders and why.
    job_page = world.client("campaign_manager").get(f"/jobs/{waiting}").text
    assert "license under review" in html.unescape(job_page)

    response = world.post("admin", f"/models/{model_id}/unsuspend", follow_redirects=True)
    assert (f"{name} may render again: 0 queued render(s) held, 2 held render(s) released and queued again, "
            "0 asset(s) flagged for re-review.") in flash(response.text)
    assert [r.state for r in world.renders(waiting)] == ["queued", "queued"]
    assert model_row(world, name).status == "active"


def test_bad_suspensions_are_named_and_change_nothing(world):
    model_id, name = world.checkpoint()
    response = world.post("admin", f"/models/{model_id}/suspend", {"reason": "   "})
    assert response.status_code == 400
    assert "say why" in field_error(response.text, "reason")
    assert model_row(world, name).status == "active"

    response = world.post("admin", f"/models/{model_id}/unsuspend")
    assert response.status_code == 400 and f"model '{name}' is not suspended" in html.unescape(response.text)
    world.post("admin", f"/models/{model_id}/suspend", {"reason": "first"})
    again = world.post("admin", f"/models/{model_id}/suspend", {"reason": "second"})
    assert again.status_code == 400 and "is suspended already (first)" in html.unescape(again.text)
    assert model_row(world, name).status_reason == "first"
    assert world.post("admin", "/models/99999/suspend", {"reason": "x"}).status_code == 404


def test_a_license_change_holds_what_the_new_terms_refuse(world):
    model_id, name = world.checkpoint()
    waiting = world.submit(name, seeds=(1, 2), campaign_id=world.campaign_id)  # commercial
    response = world.post("admin", f"/models/{model_id}/license",
                          {"license": NON_COMMERCIAL, "license_reason": "it was never ours to sell"},
                          follow_redirects=True)
    assert response.status_code == 200
    assert f"{name} is now under {NON_COMMERCIAL}: 2 queued render(s) held" in flash(response.text)
    held = world.renders(waiting)
    assert {r.state for r in held} == {"held"} and "commercial_use_forbidden" in held[0].hold_reason
    with transaction(world.farm.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "model.license_changed")
                                .order_by(AuditEvent.id.desc()).limit(1)).one()
    assert (event.before["license"], event.after["license"]) == ("Apache-2.0", NON_COMMERCIAL)
    assert event.after["reason"] == "it was never ours to sell"


@pytest.mark.parametrize("license_, message", [("", "choose the new license"),
                                               ("Apache-2.0", "is under Apache-2.0 already"),
                                               ("LicenseRef-Nope", "unknown license")])
def test_bad_license_changes_are_named_at_the_field(world, license_, message):
    model_id, name = world.checkpoint()
    response = world.post("admin", f"/models/{model_id}/license", {"license": license_})
    assert response.status_code == 400
    assert message in field_error(response.text, "license")
    assert model_row(world, name).license == "Apache-2.0"


@pytest.mark.parametrize("role", ["campaign_manager", "reviewer", "auditor", "ops"])
def test_only_admins_change_models(world, role):
    tiny = model_row(world, TINY_MODEL_NAME)
    before = models_count(world)
    assert world.client(role).get("/models/new").status_code == 403
    assert world.post(role, "/models/", {"path": "x", "name": "x", "kind": "vae", "license": "Apache-2.0"}
                      ).status_code == 403
    assert world.post(role, f"/models/{tiny.id}/suspend", {"reason": "mine"}).status_code == 403
    assert world.post(role, f"/models/{tiny.id}/unsuspend").status_code == 403
    assert world.post(role, f"/models/{tiny.id}/license", {"license": NON_COMMERCIAL}).status_code == 403
    after = model_row(world, TINY_MODEL_NAME)
    assert (after.status, after.license, models_count(world)) == ("active", "Apache-2.0", before)


def test_a_stale_form_changes_nothing(world):
    model_id, name = world.checkpoint()
    client = world.client("admin")
    response = client.post(f"/models/{model_id}/suspend", data={"reason": "stale"})
    assert response.status_code == 400 and "This form is stale" in response.text
    assert client.post(f"/models/{model_id}/license", data={"license": NON_COMMERCIAL}).status_code == 400
    model = model_row(world, name)
    assert (model.status, model.license) == ("active", "Apache-2.0")
