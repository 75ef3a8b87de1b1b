"""Batch jobs on the embedded farm: planning, submission, idempotency, bad input, and the exact
channel-format size end to end on the tiny model through the in-process worker."""

import dataclasses
import io
import math
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from farm.accounts.service import create_user
from farm.audit.log import verify_chain
from farm.campaigns.service import archive_campaign, create_campaign_as
from farm.db.base import utcnow
from farm.db.models import Asset, AuditEvent, Job, RegisteredModel, Render
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.jobs.batch import (
    DEFAULT_SECONDS_PER_STEP_PER_MEGAPIXEL, BatchRequest, plan_batch, rows_from_csv, rows_from_table, submit_batch,
)
from farm.jobs.execution import Outcome, execute_render
from farm.queue.runtime import build_worker_context
from farm.render.png import PARAMETERS_KEY, read_png_text
from farm.templates.service import create_campaign_template

ROWS = [{"product": "red shoe", "background": "sand"}, {"product": "bag", "background": "snow"},
        {"product": "hat", "background": "grass"}]
FAST = {"steps": 2, "width": 64, "height": 64}  # a size override: the tiny model renders 64x64-ish images


@dataclasses.dataclass
class Setup:
    manager: object
    outsider: object
    campaign_id: int
    version_id: int

    def request(self, **overrides) -> BatchRequest:
        values = dict(campaign_id=self.campaign_id, template_version_id=self.version_id, rows=ROWS, seeds=[1, 2])
        return BatchRequest(**{**values, **overrides})


@pytest.fixture
def setup(embedded_farm) -> Setup:
    with transaction(embedded_farm.session_factory) as session:
        manager = create_user(session, name="ana", role="campaign_manager")
        outsider = create_user(session, name="bo", role="campaign_manager")
        campaign_id = create_campaign_as(session, manager, name="Spring", brand="Acme", style_suffix="studio light",
                                         style_negative="blurry",
                                         channel_formats=["instagram_story", "display_leaderboard"]).id
        version_id = create_campaign_template(session, manager, campaign_id, name="hero",
                                              body="{{ product }} on {{ background }}",
                                              variables=["product", "background"], default_params=FAST).id
    return Setup(manager, outsider, campaign_id, version_id)


def _counts(factory):
    with transaction(factory) as session:
        return tuple(session.scalar(select(func.count(t.id))) for t in (Job, Render, AuditEvent))


def test_plan_counts_sizes_and_estimates_without_writing(embedded_farm, setup):
    factory = embedded_farm.session_factory
    before = _counts(factory)
    with transaction(factory) as session:
        plan = plan_batch(session, embedded_farm.settings, setup.manager, setup.request())
    assert _counts(factory) == before
    assert (plan.renders, plan.rows, plan.seeds, plan.model) == (3 * 2 * 2, 3, 2, "tiny-sd")
    story, leaderboard = plan.formats
    assert (story.name, story.width, story.height) == ("instagram_story", 1080, 1920)
    assert (story.generation_width, story.generation_height) == (64, 112)
    assert (leaderboard.generation_width, leaderboard.generation_height) == (256, 64)
    assert plan.params == {"model": "tiny-sd", "steps": 2, "cfg_scale": 7.0, "sampler": "Euler a",
                           "width": 64, "height": 64}
    rate = DEFAULT_SECONDS_PER_STEP_PER_MEGAPIXEL["sd1"]
    expected = 3 * 2 * 2 * (64 * 112 + 256 * 64) / 1e6 * rate
    assert plan.estimate.source == "default" and plan.estimate.samples == 0
    assert plan.estimate.seconds == pytest.approx(expected, abs=0.05)
    assert plan.to_dict()["estimate"]["source"] == "default"


def test_without_a_size_override_the_model_architecture_sets_the_area(embedded_farm, setup):
    with transaction(embedded_farm.session_factory) as session:
        version_id = create_campaign_template(session, setup.manager, setup.campaign_id, name="native",
                                              body="{{ product }}", variables=["product"]).id
        plan = plan_batch(session, embedded_farm.settings, setup.manager,
                          setup.request(template_version_id=version_id, formats=["instagram_square", "linkedin"]))
    assert [(f.generation_width, f.generation_height) for f in plan.formats] == [(512, 512), (704, 368)]
    assert plan.params["width"] == plan.params["height"] == 512  # tiny-sd is registered as an sd1 model


def test_submit_writes_the_job_and_renders_and_queues_them(embedded_farm, setup):
    result = submit_batch(embedded_farm, setup.manager, setup.request(name="Spring heroes", priority=7,
                                                                      submission_key="form-token-1"))
    assert result.created and result.renders == 12
    with transaction(embedded_farm.session_factory) as session:
        job = session.get(Job, result.job_id)
        assert (job.name, job.priority, job.submission_key, job.submitted_by_id) == (
            "Spring heroes", 7, "form-token-1", setup.manager.id)
        assert job.formats == ["instagram_story", "display_leaderboard"] and job.seeds == [1, 2]
        assert job.variable_rows == ROWS and job.template_version_id == setup.version_id
        renders = job.renders
        assert len(renders) == 12
        first = renders[0].params
        assert first == {"prompt": "red shoe on sand, studio light", "negative_prompt": "blurry", "seed": 1,
                         "steps": 2, "cfg_scale": 7.0, "sampler": "Euler a", "width": 64, "height": 112,
                         "variable_row": 0, "format": "instagram_story", "format_width": 1080, "format_height": 1920}
        assert [(r.params["variable_row"], r.params["seed"], r.params["format"]) for r in renders[:4]] == [
            (0, 1, "instagram_story"), (0, 1, "display_leaderboard"), (0, 2, "instagram_story"),
            (0, 2, "display_leaderboard")]
        assert all(r.state == "queued" and r.queue == "sd1" and r.last_enqueued_at for r in renders)
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "job.submitted")).one()
        assert event.actor_id == setup.manager.id and event.after["renders"] == 12
        assert event.after["formats"] == ["instagram_story", "display_leaderboard"]
        assert verify_chain(session) == []


def test_the_same_submission_key_returns_the_first_job_and_creates_nothing(embedded_farm, setup):
    first = submit_batch(embedded_farm, setup.manager, setup.request(submission_key="k-1"))
    before = _counts(embedded_farm.session_factory)
    again = submit_batch(embedded_farm, setup.manager, setup.request(submission_key="k-1", seeds=[5]))
    assert (again.job_id, again.renders, again.created) == (first.job_id, 12, False)
    assert _counts(embedded_farm.session_factory) == before
    with pytest.raises(InvalidInput) as caught:  # someone who cannot see the job's campaign
        submit_batch(embedded_farm, setup.outsider, setup.request(submission_key="k-1"))
    assert caught.value.field == "submission_key"
    other = submit_batch(embedded_farm, setup.manager, setup.request(submission_key="k-2"))
    assert other.created and other.job_id != first.job_id


def test_random_seeds_are_drawn_once_and_recorded(embedded_farm, setup):
    result = submit_batch(embedded_farm, setup.manager, setup.request(seeds=None, seed_count=4, formats=[]))
    assert result.renders == 3 * 4
    with transaction(embedded_farm.session_factory) as session:
        job = session.get(Job, result.job_id)
        assert len(set(job.seeds)) == 4 and all(0 <= s < 2**32 for s in job.seeds)
        assert [r.params["seed"] for r in job.renders] == job.seeds * 3
        # No formats at all: plain renders at the job's size, nothing to crop to.
        assert job.formats == [] and {(r.params["width"], r.params["height"]) for r in job.renders} == {(64, 64)}
        assert not any("format" in r.params for r in job.renders)


def test_model_comes_from_override_then_template_then_campaign_then_settings(embedded_farm, setup):
    with transaction(embedded_farm.session_factory) as session:
        session.execute(update(RegisteredModel).where(RegisteredModel.name == "tiny-sd")
                        .values(status="suspended", status_reason="license under review"))
    for request in (setup.request(), setup.request(params={"model": "tiny-sd"})):
        with pytest.raises(InvalidInput) as caught:
            with transaction(embedded_farm.session_factory) as session:
                plan_batch(session, embedded_farm.settings, setup.manager, request)
        assert caught.value.field == "model" and "license under review" in caught.value.message


BAD = [
    ({"rows": []}, "rows"),
    ({"rows": "product,background"}, "rows"),
    ({"rows": [ROWS[0], {"product": "bag"}]}, "rows[1].background"),
    ({"rows": [ROWS[0], {"product": "bag", "background": {"a": 1}}]}, "rows[1].background"),
    ({"rows": [ROWS[0], ["bag", "snow"]]}, "rows[1]"),
    ({"seeds": None}, "seeds"),
    ({"seeds": []}, "seeds"),
    ({"seed_count": 3}, "seeds"),
    ({"seeds": [1, -1]}, "seeds[1]"),
    ({"seeds": [1, 2**32]}, "seeds[1]"),
    ({"seeds": [1, 1]}, "seeds[1]"),
    ({"seeds": [1, "2"]}, "seeds[1]"),
    ({"seeds": None, "seed_count": 0}, "seed_count"),
    ({"formats": ["tiktok"]}, "formats"),
    ({"formats": ["linkedin", "linkedin"]}, "formats"),
    ({"priority": 10}, "priority"),
    ({"priority": "high"}, "priority"),
    ({"name": "x" * 201}, "name"),
    ({"submission_key": "k" * 65}, "submission_key"),
    ({"submission_key": ""}, "submission_key"),
    ({"params": {"model": "nope"}}, "model"),
    ({"params": {"model": "lanczos"}}, "model"),
    ({"params": {"steps": 0}}, "steps"),
    ({"params": {"cfg_scale": 31}}, "cfg_scale"),
    ({"params": {"sampler": "Euler z"}}, "sampler"),
    ({"params": {"width": 100}}, "width"),
    ({"params": {"height": 4096}}, "height"),
    ({"params": {"strength": 0.5}}, "strength"),
    ({"template_version_id": 99999}, "template_version_id"),
]


@pytest.mark.parametrize("overrides, field", BAD)
def test_bad_batches_name_the_field_and_write_nothing(embedded_farm, setup, overrides, field):
    factory = embedded_farm.session_factory
    before = _counts(factory)
    with pytest.raises((InvalidInput, NotFound)) as caught:
        with transaction(factory) as session:
            plan_batch(session, embedded_farm.settings, setup.manager, setup.request(**overrides))
    error = caught.value
    assert (error.field if isinstance(error, InvalidInput) else "template_version_id") == field
    with pytest.raises(type(error)):
        submit_batch(embedded_farm, setup.manager, setup.request(**overrides))
    assert _counts(factory) == before


def test_the_campaign_must_be_visible_open_and_own_the_template(embedded_farm, setup):
    factory = embedded_farm.session_factory
    with pytest.raises(NotFound) as caught:
        submit_batch(embedded_farm, setup.outsider, setup.request())
    assert caught.value.what == "campaign"
    with transaction(factory) as session:
        other = create_campaign_as(session, setup.manager, name="Autumn", brand="Acme").id
    with pytest.raises(InvalidInput) as caught:
        submit_batch(embedded_farm, setup.manager, setup.request(campaign_id=other))
    assert caught.value.field == "template_version_id"
    with transaction(factory) as session:
        archive_campaign(session, setup.manager, setup.campaign_id)
    with pytest.raises(InvalidInput) as caught:
        submit_batch(embedded_farm, setup.manager, setup.request())
    assert caught.value.field == "campaign" and "archived" in caught.value.message
    assert _counts(factory)[:2] == (0, 0)


def test_limits_on_rows_and_renders(embedded_farm, setup):
    settings = embedded_farm.settings
    with transaction(embedded_farm.session_factory) as session:
        # 100,000 rows: refused on the count, before a single row is expanded or a render built.
        huge = [{"product": f"p{i}", "background": "sand"} for i in range(100_000)]
        with pytest.raises(InvalidInput) as caught:
            plan_batch(session, settings, setup.manager, setup.request(rows=huge))
        assert caught.value.field == "rows" and "100,000 rows; the limit is 5,000" in caught.value.message
        # 3 rows x 2,000 seeds x 2 formats = 12,000 > 10,000: the seeds are the factor to cut.
        with pytest.raises(InvalidInput) as caught:
            plan_batch(session, settings, setup.manager, setup.request(seeds=None, seed_count=2_000))
        assert caught.value.field == "seeds" and "12,000 renders; the limit is 10,000" in caught.value.message
        # 4,000 rows x 2 seeds x 2 formats: the rows are.
        with pytest.raises(InvalidInput) as caught:
            plan_batch(session, settings, setup.manager, setup.request(rows=huge[:4_000]))
        assert caught.value.field == "rows"
        small = settings.model_copy(update={"max_renders_per_job": 12, "max_rows_per_job": 3})
        assert plan_batch(session, small, setup.manager, setup.request()).renders == 12
        with pytest.raises(InvalidInput) as caught:
            plan_batch(session, small, setup.manager, setup.request(rows=ROWS + ROWS[:1]))
        assert caught.value.field == "rows"


def test_estimate_learns_from_the_farms_own_renders(embedded_farm, setup):
    result = submit_batch(embedded_farm, setup.manager, setup.request(formats=[]))  # 6 renders, 64x64, 2 steps
    work = 2 * 64 * 64 / 1e6
    now = utcnow()
    with transaction(embedded_farm.session_factory) as session:
        for number, render in enumerate(session.scalars(select(Render).where(Render.job_id == result.job_id))):
            seconds = work * (0.5 if number < 4 else 50.0)  # two slow outliers (a cold model load)
            session.execute(update(Render).where(Render.id == render.id).values(
                state="succeeded", started_at=now - timedelta(seconds=seconds), finished_at=now))
    with transaction(embedded_farm.session_factory) as session:
        plan = plan_batch(session, embedded_farm.settings, setup.manager, setup.request())
    assert plan.estimate.source == "history" and plan.estimate.samples == 6
    assert plan.estimate.seconds_per_step_per_megapixel == pytest.approx(0.5, rel=0.01)  # the median
    assert plan.estimate.seconds == pytest.approx(3 * 2 * 2 * (64 * 112 + 256 * 64) / 1e6 * 0.5, abs=0.05)


def test_rows_from_csv_and_table_use_the_versions_variables_and_the_settings_limits(embedded_farm, setup):
    settings = embedded_farm.settings.model_copy(update={"max_csv_bytes": 2048, "max_rows_per_job": 2})
    with transaction(embedded_farm.session_factory) as session:
        rows = rows_from_csv(session, settings, setup.manager, setup.version_id,
                             b"\xef\xbb\xbfproduct,background\nshoe,sand\n")
        assert rows.rows == [{"product": "shoe", "background": "sand"}]
        for data, fragment in ((b"product\nshoe\n", "missing required column: background"),
                               (b"product,background\n" + b"a,b\n" * 3, "more than 2 rows"),
                               (b"x" * 2049, "the limit is 2,048 bytes")):
            with pytest.raises(InvalidInput) as caught:
                rows_from_csv(session, settings, setup.manager, setup.version_id, data)
            assert caught.value.field == "csv" and fragment in caught.value.message
        assert rows_from_table(session, settings, setup.manager, setup.version_id,
                               [{"product": "a", "background": "b"}, {}]).rows == [{"product": "a", "background": "b"}]
        with pytest.raises(NotFound):
            rows_from_csv(session, settings, setup.outsider, setup.version_id, b"product,background\na,b\n")


def test_batch_request_from_json():
    request = BatchRequest.from_dict({"campaign_id": 1, "template_version_id": 2, "rows": [], "seed_count": 3,
                                      "params": {"steps": 4}})
    assert (request.seed_count, request.params, request.priority) == (3, {"steps": 4}, 5)
    for data, field in (({"campaign_id": 1, "template_version_id": 2}, "rows"),
                        ({"campaign_id": "1", "template_version_id": 2, "rows": []}, "campaign_id"),
                        ({"campaign_id": 1, "template_version_id": 2, "rows": [], "colour": "red"}, "colour"),
                        ({"campaign_id": 1, "template_version_id": 2, "rows": [], "params": [1]}, "params")):
        with pytest.raises(InvalidInput) as caught:
            BatchRequest.from_dict(data)
        assert caught.value.field == field


def test_final_assets_have_the_exact_format_size_end_to_end(embedded_farm, setup):
    """Submitted like the dashboard will, rendered by an in-process worker on the tiny model."""
    result = submit_batch(embedded_farm, setup.manager, setup.request(
        rows=ROWS[:1], seeds=[7], formats=["instagram_story", "display_leaderboard", "display_mrec"]))
    worker = build_worker_context(embedded_farm.settings, worker_name="test-worker")
    with transaction(embedded_farm.session_factory) as session:
        render_ids = session.scalars(select(Render.id).where(Render.job_id == result.job_id)
                                     .order_by(Render.index)).all()
    assert [execute_render(worker, render_id) for render_id in render_ids] == [Outcome.SUCCEEDED] * 3
    with transaction(embedded_farm.session_factory) as session:
        assert session.get(Job, result.job_id).status == "succeeded"
        assets = session.scalars(select(Asset).where(Asset.job_id == result.job_id).order_by(Asset.render_id)).all()
        generated = [(r.params["width"], r.params["height"]) for r in
                     session.scalars(select(Render).where(Render.job_id == result.job_id).order_by(Render.index))]
    assert generated == [(64, 112), (256, 64), (80, 64)]
    expected = [("instagram_story", 1080, 1920), ("display_leaderboard", 728, 90), ("display_mrec", 300, 250)]
    assert [(a.channel_format, a.width, a.height) for a in assets] == expected
    for asset, (name, width, height), (gen_w, gen_h) in zip(assets, expected, generated):
        png = embedded_farm.storage.get(asset.storage_key)
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (width, height)
        infotext = read_png_text(png)[PARAMETERS_KEY]
        assert f"Size: {gen_w}x{gen_h}" in infotext
        assert infotext.endswith(f"Channel format: {name}, Format size: {width}x{height}")
        assert f'"channel_format":"{name}"' in read_png_text(png)["farm"]
        assert asset.campaign_id == setup.campaign_id
    assert math.isclose(assets[0].width / assets[0].height, 1080 / 1920)
