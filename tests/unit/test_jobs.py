"""Job expansion and the render execution path, on the embedded farm (SQLite + folder)."""

import dataclasses
import shutil
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from farm.campaigns.service import create_campaign
from farm.db.base import utcnow
from farm.db.models import Asset, Job, Render
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.jobs.execution import Outcome, execute_render
from farm.jobs.service import JobRequest, submit_job
from farm.queue.runtime import build_worker_context
from farm.storage import LocalFolderStorage
from farm.templates.service import create_template


def _job(session, **overrides):
    campaign = create_campaign(session, name="Spring", brand="Acme", style_suffix="studio light",
                               style_negative="blurry")
    version = create_template(session, name="product", body="{{ product }} on {{ background }}",
                              negative_body="{{ avoid }}", default_params={"steps": 3, "width": 64, "height": 64})
    request = dict(
        campaign_id=campaign.id, template_version_id=version.id, model_name="tiny-sd",
        variable_rows=[{"product": "shoe", "background": "sand", "avoid": "text"},
                       {"product": "bag", "background": "snow", "avoid": ""}],
        seeds=[10, 500], images_per_seed=3,
    )
    request.update(overrides)
    return submit_job(session, JobRequest(**request))


def test_job_expands_rows_seeds_and_batch_count(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        job = _job(session)
        renders = job.renders
        assert len(renders) == 2 * 2 * 3
        assert [r.params["seed"] for r in renders[:6]] == [10, 11, 12, 500, 501, 502]
        assert renders[0].params["prompt"] == "shoe on sand, studio light"
        assert renders[0].params["negative_prompt"] == "text, blurry"
        assert renders[6].params["prompt"] == "bag on snow, studio light"
        assert renders[6].params["negative_prompt"] == "blurry"
        assert {r.params["steps"] for r in renders} == {3}
        assert all(r.state == "queued" for r in renders)


@pytest.mark.parametrize("overrides, field", [
    ({"images_per_seed": 0}, "count"),
    ({"images_per_seed": 65}, "count"),
    ({"seeds": []}, "seeds"),
    ({"priority": 10}, "priority"),
    ({"model_name": "nope"}, "model"),
    ({"params": {"steps": 0}}, "steps"),
    ({"params": {"steps": 151}}, "steps"),
    ({"params": {"cfg_scale": 31}}, "cfg_scale"),
    ({"params": {"width": 100}}, "width"),
    ({"params": {"height": 4096}}, "height"),
    ({"params": {"sampler": "Euler z"}}, "sampler"),
    ({"params": {"strength": 1}}, "strength"),
    ({"variable_rows": [{"product": "shoe", "avoid": ""}]}, "variables.background"),
])
def test_bad_job_names_the_field_and_writes_nothing(embedded_farm, overrides, field):
    factory = embedded_farm.session_factory
    with transaction(factory) as session:
        jobs_before = session.scalar(select(func.count(Job.id)))
    with pytest.raises(InvalidInput) as caught:
        with transaction(factory) as session:
            _job(session, **overrides)
    assert caught.value.field == field
    with transaction(factory) as session:
        assert session.scalar(select(func.count(Job.id))) == jobs_before
        assert session.scalar(select(func.count(Render.id))) == 0


def test_empty_expanded_prompt_is_refused(embedded_farm):
    with pytest.raises(InvalidInput) as caught:
        with transaction(embedded_farm.session_factory) as session:
            campaign = create_campaign(session, name="C", brand="B")
            version = create_template(session, name="t", body="{{ product }}")
            submit_job(session, JobRequest(campaign_id=campaign.id, template_version_id=version.id,
                                           model_name="tiny-sd", variable_rows=[{"product": "  "}], seeds=[1]))
    assert caught.value.field == "prompt"


def _single_render_job(factory) -> tuple[int, int]:
    with transaction(factory) as session:
        job = _job(session, variable_rows=[{"product": "shoe", "background": "sand", "avoid": ""}],
                   seeds=[7], images_per_seed=1)
        return job.id, job.renders[0].id


def test_execute_render_stores_png_and_thumbnail_and_finishes_the_job(embedded_farm):
    job_id, render_id = _single_render_job(embedded_farm.session_factory)
    ctx = build_worker_context(embedded_farm.settings, worker_name="test-worker")
    assert execute_render(ctx, render_id) is Outcome.SUCCEEDED
    with transaction(embedded_farm.session_factory) as session:
        render = session.get(Render, render_id)
        assert render.state == "succeeded"
        assert render.attempts == 1
        assert render.progress_step == render.progress_total == 3
        assert render.lease_owner is None
        assert session.get(Job, job_id).status == "succeeded"
        asset = render.asset
        assert asset.width == asset.height == 64
        png = embedded_farm.storage.get(asset.storage_key)
        assert png.startswith(b"\x89PNG")
        assert embedded_farm.storage.exists(asset.thumbnail_key)
        assert asset.storage_key.endswith(".png") and asset.sha256 in asset.storage_key


def test_redelivered_message_for_finished_render_does_nothing(embedded_farm):
    _, render_id = _single_render_job(embedded_farm.session_factory)
    ctx = build_worker_context(embedded_farm.settings, worker_name="test-worker")
    assert execute_render(ctx, render_id) is Outcome.SUCCEEDED
    assert execute_render(ctx, render_id) is Outcome.SKIPPED
    with transaction(embedded_farm.session_factory) as session:
        assert session.scalar(select(func.count(Asset.id))) == 1
        assert session.get(Render, render_id).attempts == 1


def test_render_leased_by_live_worker_is_left_alone_but_expired_lease_is_taken_over(embedded_farm):
    factory = embedded_farm.session_factory
    _, render_id = _single_render_job(factory)
    with transaction(factory) as session:
        session.execute(update(Render).where(Render.id == render_id).values(
            state="running", lease_owner="other", lease_expires_at=utcnow() + timedelta(minutes=5), attempts=1))
    ctx = build_worker_context(embedded_farm.settings, worker_name="test-worker")
    assert execute_render(ctx, render_id) is Outcome.SKIPPED
    with transaction(factory) as session:
        session.execute(update(Render).where(Render.id == render_id).values(
            lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert execute_render(ctx, render_id) is Outcome.SUCCEEDED
    with transaction(factory) as session:
        assert session.get(Render, render_id).attempts == 2


def test_a_worker_takes_its_own_abandoned_lease_again(embedded_farm):
    """A worker runs one render at a time: a live lease in its own name was left behind (it
    restarted, or lost its database connection mid-render), so its message is worked, not dropped."""
    factory = embedded_farm.session_factory
    _, render_id = _single_render_job(factory)
    with transaction(factory) as session:
        session.execute(update(Render).where(Render.id == render_id).values(
            state="running", lease_owner="test-worker", lease_expires_at=utcnow() + timedelta(minutes=5), attempts=1))
    ctx = build_worker_context(embedded_farm.settings, worker_name="test-worker")
    assert execute_render(ctx, render_id) is Outcome.SUCCEEDED
    with transaction(factory) as session:
        render = session.get(Render, render_id)
        assert (render.state, render.attempts, render.rendered_by) == ("succeeded", 2, "test-worker")


class _ThumbnailOutage(LocalFolderStorage):
    """A real folder store that stores images but fails to store thumbnails."""

    def put(self, key, data, content_type):
        if key.endswith(".webp"):
            raise OSError("thumbnail store is unavailable")
        super().put(key, data, content_type)


def test_no_asset_row_is_committed_unless_both_objects_are_stored(embedded_farm, tmp_path):
    """The finish writes its rows while the uploads run, but commits only after both succeed."""
    factory = embedded_farm.session_factory
    _, render_id = _single_render_job(factory)
    ctx = dataclasses.replace(build_worker_context(embedded_farm.settings, worker_name="test-worker"),
                              storage=_ThumbnailOutage(tmp_path / "objects"))
    assert execute_render(ctx, render_id) is Outcome.RETRY
    with transaction(factory) as session:
        render = session.get(Render, render_id)
        assert (render.state, render.lease_owner) == ("queued", None)
        assert "thumbnail store is unavailable" in render.error
        assert session.scalar(select(func.count(Asset.id))) == 0


class _StorageOutage(LocalFolderStorage):
    """A real folder store whose writes fail, as S3 does during an outage."""

    def put(self, key, data, content_type):
        raise OSError("storage is unavailable")


def test_transient_failure_requeues_until_attempts_run_out(embedded_farm, tmp_path):
    factory = embedded_farm.session_factory
    job_id, render_id = _single_render_job(factory)
    ctx = dataclasses.replace(build_worker_context(embedded_farm.settings, worker_name="test-worker"),
                              storage=_StorageOutage(tmp_path / "objects"), max_attempts=2)
    assert execute_render(ctx, render_id) is Outcome.RETRY
    with transaction(factory) as session:
        render = session.get(Render, render_id)
        assert (render.state, render.attempts, render.lease_owner) == ("queued", 1, None)
        assert "storage is unavailable" in render.error
    assert execute_render(ctx, render_id) is Outcome.FAILED
    with transaction(factory) as session:
        render = session.get(Render, render_id)
        assert (render.state, render.attempts) == ("failed", 2)
        assert session.get(Job, job_id).status == "failed"
        assert session.scalar(select(func.count(Asset.id))) == 0


def test_a_model_that_cannot_be_loaded_fails_at_once_with_its_reason(embedded_farm):
    factory = embedded_farm.session_factory
    _, render_id = _single_render_job(factory)
    shutil.rmtree(embedded_farm.settings.models_dir / "tiny-sd")
    ctx = build_worker_context(embedded_farm.settings, worker_name="test-worker")
    assert execute_render(ctx, render_id) is Outcome.FAILED
    with transaction(factory) as session:
        render = session.get(Render, render_id)
        assert render.state == "failed" and render.attempts == 1
        assert "tiny-sd" in render.error
