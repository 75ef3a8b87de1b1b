"""License compliance on a real Postgres: refusals audited although the submission rolls back, the
worker's lease and policy re-check, asset flagging through the JSON license chain, and render
events written exactly once by sealers racing each other."""

import threading

import pytest
from sqlalchemy import func, select, update

from farm.audit.log import verify_chain
from farm.audit.renders import seal_render_events
from farm.db.models import Asset, AuditEvent, Render, User
from farm.db.session import transaction
from farm.jobs.batch import submit_batch
from farm.jobs.execution import Outcome, execute_render
from farm.licenses.admin import update_license
from farm.licenses.policy import PolicyRefused
from farm.models.admin import suspend_model_now
from farm.queue.runtime import build_worker_context
from tests.unit.compliance_world import build_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path, tiny_model_dir, postgres_url):
    world = build_world(tmp_path / "farm-data", tiny_model_dir, FARM_DATABASE_URL=postgres_url)
    yield world
    world.farm.db_engine.dispose()


def _count(world, action: str) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == action))


def _renders(world, job_id):
    with transaction(world.farm.session_factory) as session:
        return list(session.scalars(select(Render).where(Render.job_id == job_id).order_by(Render.index)))


def test_a_refusal_is_audited_although_the_submission_rolls_back(world):
    with pytest.raises(PolicyRefused):
        submit_batch(world.farm, world.manager, world.batch(world.commercial_id, model="ckpt-fluxdev"))
    assert _count(world, "policy.refused") == 1
    with transaction(world.farm.session_factory) as session:
        assert verify_chain(session) == []


def test_the_worker_rechecks_the_policy_on_postgres(world):
    worker = build_worker_context(world.farm.settings, worker_name="pg-worker")
    job_id = submit_batch(world.farm, world.manager, world.batch(world.commercial_id, seeds=(1, 2),
                                                                  model="ckpt-internal")).job_id
    first, second = _renders(world, job_id)
    assert execute_render(worker, first.id) is Outcome.SUCCEEDED
    with transaction(world.farm.session_factory) as session:
        asset = session.scalars(select(Asset).where(Asset.render_id == first.id)).one()
        assert [n["model"] for n in asset.license_chain] == ["ckpt-internal"]
        update_license(session, session.get(User, world.admin.id), "LicenseRef-Proprietary-Internal",
                       {"commercial_use": "separate_license_required"})
    assert execute_render(worker, second.id) is Outcome.FAILED
    (_, refused) = _renders(world, job_id)
    assert "[rule: separate_license_required]" in refused.error
    assert _count(world, "policy.refused") == 1


def test_suspending_a_lora_flags_the_assets_whose_chain_holds_it(world):
    worker = build_worker_context(world.farm.settings, worker_name="pg-worker")
    job_id = submit_batch(world.farm, world.manager, world.batch(
        world.noncommercial_id, loras=[{"name": "lora-apache", "weight": 0.5}])).job_id
    (render,) = _renders(world, job_id)
    assert execute_render(worker, render.id) is Outcome.SUCCEEDED
    change = suspend_model_now(world.farm, world.admin, "lora-apache", "provenance unclear")
    assert change.flagged_assets == 1  # found through the JSON chain: the asset's model is tiny-sd
    with transaction(world.farm.session_factory) as session:
        flagged = session.scalars(select(Asset).where(Asset.needs_rereview)).one()
        assert flagged.render_id == render.id and "provenance unclear" in flagged.rereview_reason


def test_racing_sealers_write_each_render_event_once(world):
    job_id = submit_batch(world.farm, world.manager, world.batch(world.noncommercial_id,
                                                                  seeds=range(60))).job_id
    seal_render_events(world.farm.session_factory)  # the world's own renders
    before = _count(world, "render.succeeded")
    with transaction(world.farm.session_factory) as session:
        session.execute(update(Render).where(Render.job_id == job_id).values(state="succeeded"))
    barrier = threading.Barrier(4)
    errors = []

    def seal():
        try:
            barrier.wait()
            seal_render_events(world.farm.session_factory, batch=7)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=seal) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with transaction(world.farm.session_factory) as session:
        ids = list(session.scalars(select(AuditEvent.entity_id).where(AuditEvent.action == "render.succeeded")))
        assert len(ids) - before == 60 and len(set(ids)) == len(ids)
        assert verify_chain(session) == []
