"""The instant engine: RenderEngine's interface, solid images from the seed, real validation."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
import torch

from farm.errors import InvalidInput
from farm.queue.runtime import build_worker_context
from farm.render.engine import ModelSource, RenderEngine
from farm.render.instant import InstantEngine, seed_colour
from farm.render.params import Txt2ImgParams
from farm.settings import load_settings

PARAMS = Txt2ImgParams(prompt="a lighthouse at dusk", negative_prompt="", seed=1234, steps=3,
                       cfg_scale=7.0, width=96, height=64, sampler="Euler a")
# No folder behind it: the instant engine must not need one.
MODEL = ModelSource(name="tiny-sd", path=Path("/nonexistent/tiny-sd"), architecture="sd1", sha256="0" * 64)


def test_images_have_the_requested_size_and_one_colour_per_seed():
    images = InstantEngine().txt2img(MODEL, PARAMS, batch_count=3)
    assert len(images) == 3
    for offset, image in enumerate(images):
        assert image.size == (96, 64) and image.mode == "RGB"
        # One colour over the whole image, the one its own seed gives.
        assert image.getcolors() == [(96 * 64, seed_colour(1234 + offset))]
    assert len({image.getpixel((0, 0)) for image in images}) == 3  # neighbouring seeds differ


def test_same_seed_same_pixels_whatever_the_batch():
    # As with the real engine, image i of a batch equals a single render with seed+i.
    engine = InstantEngine()
    batch = engine.txt2img(MODEL, PARAMS, batch_count=2)
    alone = InstantEngine().txt2img(MODEL, dataclasses.replace(PARAMS, seed=1235))
    assert batch[1].tobytes() == alone[0].tobytes()


def test_seed_colour_is_fixed_across_processes():
    # A hash of the seed's bytes, not Python's salted hash(): these values must never change.
    assert seed_colour(0) == seed_colour(0)
    assert seed_colour(1234) != seed_colour(1235)
    assert all(0 <= channel <= 255 for channel in seed_colour(2**32 - 1))


def test_progress_is_reported_once_as_all_steps_done():
    calls = []
    InstantEngine().txt2img(MODEL, PARAMS, batch_count=4, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(12, 12)]


def test_an_exception_from_progress_stops_the_render():
    # The worker's progress writer raises to cancel a render; the engine must let it through.
    class Stop(Exception):
        pass

    def cancel(done, total):
        raise Stop

    with pytest.raises(Stop):
        InstantEngine().txt2img(MODEL, PARAMS, progress=cancel)


@pytest.mark.parametrize("change, field", [
    ({"width": 100}, "width"),              # not a multiple of 8
    ({"height": 4096}, "height"),
    ({"steps": 0}, "steps"),
    ({"cfg_scale": 31.0}, "cfg_scale"),
    ({"sampler": "Warp drive"}, "sampler"),
    ({"seed": -1}, "seed"),
    ({"prompt": None}, "prompt"),
])
def test_bad_params_are_refused_naming_the_field(change, field):
    with pytest.raises(InvalidInput) as raised:
        InstantEngine().txt2img(MODEL, dataclasses.replace(PARAMS, **change))
    assert raised.value.field == field


def test_bad_batches_and_models_are_refused():
    engine = InstantEngine()
    with pytest.raises(InvalidInput) as raised:
        engine.txt2img(MODEL, PARAMS, batch_count=65)
    assert raised.value.field == "batch_count"
    with pytest.raises(InvalidInput) as raised:
        engine.txt2img(MODEL, dataclasses.replace(PARAMS, seed=2**32 - 1), batch_count=2)
    assert raised.value.field == "seed"
    with pytest.raises(InvalidInput) as raised:
        engine.txt2img("tiny-sd", PARAMS)
    assert raised.value.field == "model"
    with pytest.raises(InvalidInput) as raised:
        engine.txt2img(dataclasses.replace(MODEL, architecture="sd9"), PARAMS)
    assert raised.value.field == "model"
    assert engine.loaded_model_names() == []  # nothing refused counts as used


def test_reports_the_models_it_rendered_with_like_a_bounded_cache():
    engine = InstantEngine(max_cached_models=2)
    assert engine.device == torch.device("cpu")
    for name in ("a", "b", "a", "c"):
        engine.txt2img(dataclasses.replace(MODEL, name=name), PARAMS)
    assert engine.loaded_model_names() == ["a", "c"]  # most recently used last; "b" was evicted
    engine.unload_all()
    assert engine.loaded_model_names() == []


def test_loaded_model_names_is_safe_while_another_thread_renders():
    # The worker's heartbeat thread asks while renders run on the main thread.
    engine = InstantEngine(max_cached_models=3)
    stop = threading.Event()
    errors = []

    def render_many():
        try:
            for i in range(2000):
                engine.txt2img(dataclasses.replace(MODEL, name=f"m{i % 7}"), dataclasses.replace(PARAMS, width=64))
        except Exception as error:  # noqa: BLE001
            errors.append(error)
        finally:
            stop.set()

    thread = threading.Thread(target=render_many)
    thread.start()
    while not stop.is_set():
        assert len(engine.loaded_model_names()) <= 3
    thread.join()
    assert errors == []


def test_has_the_interface_the_worker_uses():
    for name in ("txt2img", "loaded_model_names", "unload_all"):
        assert callable(getattr(InstantEngine, name)) and callable(getattr(RenderEngine, name))
    with pytest.raises(InvalidInput):
        InstantEngine(max_cached_models=0)


@pytest.mark.parametrize("engine_name, engine_class", [("instant", InstantEngine), ("diffusers", RenderEngine)])
def test_worker_context_picks_the_engine_from_settings(tmp_path, engine_name, engine_class):
    settings = load_settings({"FARM_HOME": str(tmp_path), "FARM_RENDER_ENGINE": engine_name, "FARM_DEVICE": "cpu"})
    ctx = build_worker_context(settings, worker_name="test:cpu")
    try:
        assert type(ctx.engine) is engine_class and ctx.engine.device.type == "cpu"
    finally:
        ctx.session_factory.kw["bind"].dispose()
