"""The upscale render kind on the embedded farm: same lease, storage and provenance as txt2img."""

import io
import json

import pytest
from PIL import Image
from sqlalchemy import func, select

from farm.db.models import Asset, Job, Render
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.jobs.dispatch import submit_prompt, submit_upscale_job
from farm.jobs.execution import Outcome, execute_render
from farm.queue.routing import UPSCALE_QUEUE
from farm.queue.runtime import build_worker_context
from farm.render.png import read_png_text
from farm.render.upscale import upscaled_size


def _one_render(farm, job_id):
    with transaction(farm.session_factory) as session:
        return session.scalars(select(Render).where(Render.job_id == job_id)).one()


def _rendered_asset(farm, worker):
    job_id = submit_prompt(farm, prompt="a red shoe", seed=7, params={"steps": 2, "width": 96, "height": 64})
    assert execute_render(worker, _one_render(farm, job_id).id) is Outcome.SUCCEEDED
    with transaction(farm.session_factory) as session:
        return session.scalars(select(Asset)).one()


def test_an_upscale_render_makes_a_larger_child_asset_with_provenance(embedded_farm):
    worker = build_worker_context(embedded_farm.settings, worker_name="w1")
    source = _rendered_asset(embedded_farm, worker)
    job_id = submit_upscale_job(embedded_farm, asset_ids=[source.id], scale=2)
    render = _one_render(embedded_farm, job_id)
    assert (render.kind, render.queue) == ("upscale", UPSCALE_QUEUE)
    assert execute_render(worker, render.id) is Outcome.SUCCEEDED

    with transaction(embedded_farm.session_factory) as session:
        job = session.get(Job, job_id)
        child = session.scalars(select(Asset).where(Asset.render_id == render.id)).one()
        assert (job.kind, job.status, job.model.name) == ("upscale", "succeeded", "lanczos")
        assert (child.width, child.height, child.parent_asset_id) == (192, 128, source.id)
    png = embedded_farm.storage.get(child.storage_key)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (192, 128)
    text = read_png_text(png)
    # The source's generation parameters, then what upscaled it, as A1111's extras tab writes.
    assert text["parameters"].startswith("a red shoe\nSteps: 2,")
    assert "Seed: 7" in text["parameters"]
    assert text["parameters"].endswith("Postprocess upscale by: 2, Postprocess upscaler: lanczos")
    farm_chunk = json.loads(text["farm"])
    assert farm_chunk["source_asset_id"] == source.id and farm_chunk["source_model"] == "tiny-sd"
    assert farm_chunk["model"] == "lanczos" and len(farm_chunk["model_sha256"]) == 64


@pytest.mark.parametrize("asset_ids, scale, field, message", [
    ([], 2, "assets", "at least one"),
    ([999], 2, "assets", "no asset 999"),
    (None, 1, "scale", "above 1"),
    (None, 8.5, "scale", "at most 8"),
    (None, "2", "scale", "must be a number"),
    (None, True, "scale", "must be a number"),
])
def test_bad_upscale_requests_name_the_field_and_write_nothing(embedded_farm, asset_ids, scale, field, message):
    worker = build_worker_context(embedded_farm.settings, worker_name="w1")
    source = _rendered_asset(embedded_farm, worker)
    with pytest.raises(InvalidInput) as caught:
        submit_upscale_job(embedded_farm, asset_ids=[source.id] if asset_ids is None else asset_ids, scale=scale)
    assert caught.value.field == field and message in caught.value.message
    with transaction(embedded_farm.session_factory) as session:
        assert session.scalar(select(func.count(Job.id))) == 1


def test_an_unknown_or_wrong_kind_of_upscaler_is_refused(embedded_farm):
    worker = build_worker_context(embedded_farm.settings, worker_name="w1")
    source = _rendered_asset(embedded_farm, worker)
    for upscaler, expected in (("esrgan-4x", "unknown model"), ("tiny-sd", "not an upscaler")):
        with pytest.raises(InvalidInput) as caught:
            submit_upscale_job(embedded_farm, asset_ids=[source.id], scale=2, upscaler=upscaler)
        assert caught.value.field == "upscaler" and expected in caught.value.message


def test_upscaled_size_refuses_outputs_too_large():
    assert upscaled_size(512, 512, 4) == (2048, 2048)
    assert upscaled_size(100, 50, 1.5) == (150, 75)
    with pytest.raises(InvalidInput) as caught:
        upscaled_size(2048, 1024, 5)
    assert caught.value.field == "scale" and "8192" in caught.value.message
