"""Suspending a model or changing its license (held renders, flagged assets, release), license terms
edited after submission (the worker's policy re-check), and a model swapped on disk after it was
registered (the worker's hash check), on the embedded farm with the tiny model."""

import dataclasses

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import select

from farm.accounts.service import create_user
from farm.audit.log import verify_chain
from farm.audit.renders import seal_render_events
from farm.campaigns.service import create_campaign_as
from farm.db.models import Asset, AuditEvent, Job, Render, User
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, submit_batch
from farm.jobs.control import cancel_job
from farm.jobs.execution import Outcome, execute_render
from farm.licenses.admin import update_license
from farm.licenses.policy import PolicyRefused
from farm.models.admin import set_model_license_now, suspend_model_now, unsuspend_model_now
from farm.models.hashing import model_sha256
from farm.queue.runtime import build_worker_context
from farm.review.rerender import submit_rerender
from farm.templates.service import create_campaign_template
from tests.unit.compliance_world import FAST, checkpoint_copy, register

FORBIDDEN = "LicenseRef-Stability-AI-Non-Commercial-Research"


@dataclasses.dataclass
class Farm:
    ctx: object
    admin: User
    manager: User
    campaigns: dict[str, int]   # "commercial" / "non-commercial" -> id
    versions: dict[int, int]

    def submit(self, campaign: str, model: str, seeds=(1,)) -> int:
        campaign_id = self.campaigns[campaign]
        return submit_batch(self.ctx, self.manager, BatchRequest(
            campaign_id=campaign_id, template_version_id=self.versions[campaign_id], rows=[{"product": "shoe"}],
            seeds=list(seeds), params={**FAST, "model": model})).job_id

    def renders(self, job_id: int) -> list[Render]:
        with transaction(self.ctx.session_factory) as session:
            return list(session.scalars(select(Render).where(Render.job_id == job_id).order_by(Render.index)))

    def events(self, action: str) -> list[AuditEvent]:
        with transaction(self.ctx.session_factory) as session:
            return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


@pytest.fixture
def farm(embedded_farm) -> Farm:
    with transaction(embedded_farm.session_factory) as session:
        admin = create_user(session, name="root-admin", role="admin")
        manager = create_user(session, name="ana", role="campaign_manager")
        campaigns, versions = {}, {}
        for name, commercial in (("commercial", True), ("non-commercial", False)):
            campaign_id = create_campaign_as(session, manager, name=name, brand="Acme", commercial_use=commercial).id
            versions[campaign_id] = create_campaign_template(session, manager, campaign_id, name="hero",
                                                             body="a {{ product }}", variables=["product"]).id
            campaigns[name] = campaign_id
    return Farm(embedded_farm, admin, manager, campaigns, versions)


def _checkpoint(farm: Farm, name: str, license_identifier: str = "Apache-2.0"):
    path = checkpoint_copy(farm.ctx.settings.models_dir, name, name)
    register(farm.ctx, farm.admin, name=name, kind="checkpoint", license_identifier=license_identifier, path=path)
    return path


def _render_all(farm: Farm, worker, job_id: int) -> list[Outcome]:
    return [execute_render(worker, render.id) for render in farm.renders(job_id)]


def test_suspending_holds_queued_renders_flags_assets_and_unsuspending_releases_them(farm):
    _checkpoint(farm, "ckpt-a")
    worker = build_worker_context(farm.ctx.settings, worker_name="w1")
    made = farm.submit("commercial", "ckpt-a")
    assert _render_all(farm, worker, made) == [Outcome.SUCCEEDED]
    waiting = farm.submit("commercial", "ckpt-a", seeds=(1, 2))
    other = farm.submit("commercial", "tiny-sd")

    change = suspend_model_now(farm.ctx, farm.admin, "ckpt-a", "license under review")
    assert (change.held_renders, change.flagged_assets, change.model.status) == (2, 1, "suspended")
    held = farm.renders(waiting)
    assert [(r.state, r.hold_reason) for r in held] == [("held", "checkpoint 'ckpt-a' is suspended: license under "
                                                                 "review [rule: model_suspended]")] * 2
    assert [r.state for r in farm.renders(other)] == ["queued"]
    # Held renders are not leased, whatever message arrives for them.
    assert execute_render(worker, held[0].id) is Outcome.SKIPPED
    assert farm.renders(waiting)[0].state == "held"
    with transaction(farm.ctx.session_factory) as session:
        asset = session.scalars(select(Asset).where(Asset.job_id == made)).one()
        assert asset.needs_rereview and "suspended: license under review" in asset.rereview_reason
        assert session.get(Job, waiting).status == "queued"  # still to do
    suspended = farm.events("model.suspended")[-1]
    assert (suspended.actor_name, suspended.before["status"], suspended.after["status"]) == (
        "root-admin", "active", "suspended")
    assert (suspended.after["held_renders"], suspended.after["flagged_assets"]) == (2, 1)

    # A new job naming it is refused by the policy (and the refusal audited).
    with pytest.raises(PolicyRefused) as caught:
        farm.submit("non-commercial", "ckpt-a")
    assert caught.value.rule == "model_suspended"
    assert farm.events("policy.refused")[-1].after["rule"] == "model_suspended"

    # The holds are in the audit log at once, one event per render, and a sweep adds none.
    seal_render_events(farm.ctx.session_factory)
    held_events = farm.events("render.held")
    assert sorted(int(e.entity_id) for e in held_events) == sorted(r.id for r in held)
    assert all("suspended" in e.after["hold_reason"] for e in held_events)

    enqueued_before = {r.id: r.last_enqueued_at for r in held}
    change = unsuspend_model_now(farm.ctx, farm.admin, "ckpt-a")
    assert sorted(change.released_render_ids) == sorted(r.id for r in held)
    released = farm.renders(waiting)
    assert all(r.state == "queued" and r.hold_reason is None for r in released)
    # ... and routed again: a fresh message went to the render's queue.
    assert all(r.queue == "sd1" and r.last_enqueued_at > enqueued_before[r.id] for r in released)
    assert _render_all(farm, worker, waiting) == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert farm.events("model.unsuspended")[-1].after["released_renders"] == 2
    assert sorted(int(e.entity_id) for e in farm.events("render.released")) == sorted(r.id for r in held)

    seal_render_events(farm.ctx.session_factory)
    assert len(farm.events("render.succeeded")) == 3
    with transaction(farm.ctx.session_factory) as session:
        assert verify_chain(session) == []


def test_a_license_change_holds_what_the_new_terms_refuse_and_releases_it_when_allowed_again(farm):
    _checkpoint(farm, "ckpt-b")
    worker = build_worker_context(farm.ctx.settings, worker_name="w1")
    made = farm.submit("non-commercial", "ckpt-b")
    assert _render_all(farm, worker, made) == [Outcome.SUCCEEDED]
    commercial = farm.submit("commercial", "ckpt-b", seeds=(1, 2))
    internal = farm.submit("non-commercial", "ckpt-b")

    change = set_model_license_now(farm.ctx, farm.admin, "ckpt-b", FORBIDDEN, reason="the vendor relicensed it")
    assert (change.held_renders, change.flagged_assets, change.model.license) == (2, 1, FORBIDDEN)
    assert {r.state for r in farm.renders(commercial)} == {"held"}
    reason = farm.renders(commercial)[0].hold_reason
    assert reason.startswith("license of 'ckpt-b' changed from Apache-2.0 to " + FORBIDDEN)
    assert "[rule: commercial_use_forbidden]" in reason
    assert [r.state for r in farm.renders(internal)] == ["queued"]  # the new terms allow it
    event = farm.events("model.license_changed")[-1]
    assert (event.before["license"], event.after["license"], event.after["reason"]) == (
        "Apache-2.0", FORBIDDEN, "the vendor relicensed it")
    with transaction(farm.ctx.session_factory) as session:
        assert session.scalars(select(Asset).where(Asset.job_id == made)).one().needs_rereview

    # A re-render of the asset in a commercial campaign is refused now too.
    with transaction(farm.ctx.session_factory) as session:
        session.execute(Job.__table__.update().where(Job.id == made).values(campaign_id=farm.campaigns["commercial"]))
        asset_id = session.scalar(select(Asset.id).where(Asset.job_id == made))
        session.execute(Asset.__table__.update().where(Asset.id == asset_id)
                        .values(campaign_id=farm.campaigns["commercial"]))
    with pytest.raises(PolicyRefused):
        submit_rerender(farm.ctx, farm.manager, asset_id, {"seed": 99})

    change = set_model_license_now(farm.ctx, farm.admin, "ckpt-b", "Apache-2.0")
    assert len(change.released_render_ids) == 2
    assert {r.state for r in farm.renders(commercial)} == {"queued"}


def test_cancelling_a_job_cancels_its_held_renders(farm):
    _checkpoint(farm, "ckpt-c")
    job_id = farm.submit("commercial", "ckpt-c", seeds=(1, 2))
    suspend_model_now(farm.ctx, farm.admin, "ckpt-c", "withdrawn")
    with transaction(farm.ctx.session_factory) as session:
        assert cancel_job(session, job_id).status == "cancelled"
    assert {r.state for r in farm.renders(job_id)} == {"cancelled"}
    seal_render_events(farm.ctx.session_factory)
    assert len(farm.events("render.held")) == 2 and len(farm.events("render.cancelled")) == 2


def test_license_terms_edited_after_submission_make_the_worker_refuse_the_render(farm):
    _checkpoint(farm, "ckpt-d", "LicenseRef-Proprietary-Internal")
    worker = build_worker_context(farm.ctx.settings, worker_name="w1")
    first = farm.submit("commercial", "ckpt-d", seeds=(1, 2))
    assert _render_all(farm, worker, first) == [Outcome.SUCCEEDED] * 2
    assert worker.model_terms.loads == 1  # the second render re-checked from the worker's cache
    later = farm.submit("commercial", "ckpt-d", seeds=(3,))

    with transaction(farm.ctx.session_factory) as session:
        update_license(session, session.get(User, farm.admin.id), "LicenseRef-Proprietary-Internal",
                       {"commercial_use": "forbidden"}, reason="legal says internal models stay internal")
    (render,) = farm.renders(later)
    assert execute_render(worker, render.id) is Outcome.FAILED
    assert worker.model_terms.loads == 2  # the policy version changed: terms read again
    (render,) = farm.renders(later)
    assert render.state == "failed" and render.error.startswith("refused by the license policy: ")
    assert "[rule: commercial_use_forbidden]" in render.error
    with transaction(farm.ctx.session_factory) as session:
        assert session.scalar(select(Asset.id).where(Asset.render_id == render.id)) is None
    refusal = farm.events("policy.refused")[-1]
    assert (refusal.after["stage"], refusal.after["render_id"], refusal.after["model"], refusal.after["campaign"]) == (
        "worker", render.id, "ckpt-d", "commercial")
    updated = farm.events("license.updated")[-1]
    assert (updated.before, updated.after["commercial_use"], updated.after["flagged_assets"]) == (
        {"commercial_use": "allowed"}, "forbidden", 2)
    with transaction(farm.ctx.session_factory) as session:
        assert session.get(Job, later).status == "failed"


def test_a_model_swapped_on_disk_after_registration_is_refused_by_the_worker_and_not_loaded(farm):
    path = _checkpoint(farm, "ckpt-e")
    registered = model_sha256(path)
    worker = build_worker_context(farm.ctx.settings, worker_name="w1")
    job_id = farm.submit("non-commercial", "ckpt-e", seeds=(1, 2, 3))
    first, second, third = farm.renders(job_id)

    weights = path / "vae" / "diffusion_pytorch_model.safetensors"
    original = weights.read_bytes()
    save_file({"decoder.conv_out.weight": torch.zeros(3, 4, 3, 3)}, str(weights))
    swapped = model_sha256(path)
    assert execute_render(worker, first.id) is Outcome.FAILED
    (failed, _, _) = farm.renders(job_id)
    assert failed.state == "failed" and failed.attempts == 1  # not retried: the files are wrong everywhere
    assert "'ckpt-e'" in failed.error and registered in failed.error and swapped in failed.error
    assert "was not loaded" in failed.error
    assert worker.engine.loaded_model_names() == []
    mismatch = farm.events("model.hash_mismatch")[-1]
    assert (mismatch.after["registered_sha256"], mismatch.after["found_sha256"]) == (registered, swapped)

    # The registered files back: the next render verifies them (new mtime) and renders.
    weights.write_bytes(original)
    assert execute_render(worker, second.id) is Outcome.SUCCEEDED
    assert worker.engine.hashes.models_hashed == 2
    # Unchanged files are not read again, even when the model has to be loaded again.
    worker.engine.unload_all()
    assert execute_render(worker, third.id) is Outcome.SUCCEEDED
    assert worker.engine.hashes.models_hashed == 2



def test_a_review_decision_is_the_re_review_a_flag_asks_for(farm):
    from farm.review.service import decide

    _checkpoint(farm, "ckpt-g")
    worker = build_worker_context(farm.ctx.settings, worker_name="w1")
    job_id = farm.submit("commercial", "ckpt-g")
    assert _render_all(farm, worker, job_id) == [Outcome.SUCCEEDED]
    suspend_model_now(farm.ctx, farm.admin, "ckpt-g", "license under review")
    with transaction(farm.ctx.session_factory) as session:
        asset_id = session.scalar(select(Asset.id).where(Asset.job_id == job_id))
        decide(session, session.get(User, farm.manager.id), asset_id, "reject", "model withdrawn")
    with transaction(farm.ctx.session_factory) as session:
        asset = session.get(Asset, asset_id)
        assert (asset.needs_rereview, asset.rereview_reason, asset.approval_state) == (False, None, "rejected")
    reviewed = farm.events("asset.reviewed")[-1]
    assert "suspended: license under review" in reviewed.before["needs_rereview"]


def test_a_worker_heartbeat_writes_the_render_events_of_the_farm(farm):
    from farm.queue.worker import Heartbeat
    from farm.workers.registry import WorkerIdentity, register_worker

    worker = build_worker_context(farm.ctx.settings, worker_name="w1")
    job_id = farm.submit("non-commercial", "tiny-sd", seeds=(1, 2))
    assert _render_all(farm, worker, job_id) == [Outcome.SUCCEEDED] * 2
    assert farm.events("render.succeeded") == []  # nothing written on the render path itself
    with transaction(farm.ctx.session_factory) as session:
        register_worker(session, WorkerIdentity(name="w1", host="h", gpu_index=None, gpu_name=None,
                                                vram_total_bytes=None, queues=["sd1"], torch_version="t",
                                                diffusers_version="d"), 10)
    Heartbeat(worker, 10, on_drain=lambda: None).beat()
    events = farm.events("render.succeeded")
    assert sorted(int(e.entity_id) for e in events) == sorted(r.id for r in farm.renders(job_id))
    assert all(e.after["worker"] == "w1" and e.after["asset_sha256"] for e in events)
