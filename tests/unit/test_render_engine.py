"""The render engine and the tiny models, end to end on CPU (no hub, no GPU)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from farm.errors import InvalidInput  # noqa: E402
from farm.render.engine import ModelSource, RenderEngine, detect_architecture  # noqa: E402
from farm.render.params import Txt2ImgParams  # noqa: E402
from farm.render.samplers import SAMPLER_NAMES  # noqa: E402
from farm.render.tiny_model import (  # noqa: E402
    TINY_MODEL_NAME,
    TINY_SDXL_MODEL_NAME,
    build_tiny_sdxl,
    ensure_random_model,
    ensure_tiny_model,
)

# numpy 2 deprecation chatter from inside diffusers' schedulers
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PARAMS = Txt2ImgParams(prompt="a lighthouse at dusk", negative_prompt="fog", seed=1234, steps=3,
                       cfg_scale=7.0, width=64, height=64, sampler="Euler a")


def files_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def source(path: Path, name: str = TINY_MODEL_NAME, architecture: str = "sd1") -> ModelSource:
    return ModelSource(name=name, path=path, architecture=architecture, sha256="0" * 64)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("render-models") / TINY_MODEL_NAME)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("render-models-xl") / TINY_SDXL_MODEL_NAME)


@pytest.fixture(scope="session")
def engine() -> RenderEngine:
    return RenderEngine(device="cpu", max_cached_models=2)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ---------------------------------------------------------------- tiny model builds


def test_tiny_model_build_is_deterministic_and_safetensors_only(tiny_sd, tmp_path):
    other = ensure_tiny_model(tmp_path / "elsewhere" / "tiny")
    first, second = files_digest(tiny_sd), files_digest(other)
    assert first == second
    assert "unet/diffusion_pytorch_model.safetensors" in first
    assert "text_encoder/model.safetensors" in first
    assert {"tokenizer/vocab.json", "tokenizer/merges.txt"} <= set(first)
    assert not [name for name in first if name.endswith((".bin", ".ckpt", ".pt"))]
    # nothing left behind next to the destination
    assert sorted(p.name for p in other.parent.iterdir()) == ["tiny"]


def test_tiny_model_build_is_idempotent(tmp_path):
    dest = ensure_tiny_model(tmp_path / "tiny")
    weights = dest / "unet" / "diffusion_pytorch_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert ensure_tiny_model(dest) == dest
    assert weights.stat().st_mtime_ns == stamp  # not rebuilt


def test_tiny_model_replaces_a_stale_build_but_never_a_foreign_folder(tmp_path):
    dest = ensure_tiny_model(tmp_path / "tiny")
    marker = dest / "farm_tiny_model.json"
    marker.write_text(json.dumps({"name": "tiny-sd", "configs_sha256": "old"}))
    ensure_tiny_model(dest)
    assert json.loads(marker.read_text())["configs_sha256"] != "old"

    foreign = tmp_path / "someones-model"
    foreign.mkdir()
    (foreign / "model_index.json").write_text("{}")
    with pytest.raises(InvalidInput) as raised:
        ensure_tiny_model(foreign)
    assert raised.value.field == "dest"
    assert (foreign / "model_index.json").read_text() == "{}"


def test_any_config_folder_builds_a_random_model(tmp_path):
    """configs/random-sd15 (real SD 1.5 sizes, for GPU checks) builds the same way; too big for CI,
    so this builds the tiny configs through the same entry point, and checks the big one's shape."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    built = ensure_random_model(tmp_path / "m", configs / "tiny-model")
    assert detect_architecture(built) == "sd1"
    assert files_digest(built) == files_digest(ensure_tiny_model(tmp_path / "tiny"))
    sd15 = json.loads((configs / "random-sd15" / "unet.json").read_text())
    assert sd15["block_out_channels"] == [320, 640, 1280, 1280] and sd15["cross_attention_dim"] == 768
    bad = tmp_path / "bad"
    shutil.copytree(configs / "tiny-model", bad)
    (bad / "build.json").write_text(json.dumps({"name": "x", "pipeline": "FluxPipeline", "torch_seed": 1}))
    with pytest.raises(InvalidInput, match="FluxPipeline"):
        ensure_random_model(tmp_path / "never", bad)


def test_tokenizer_is_clip_layout(tiny_sd):
    vocab = json.loads((tiny_sd / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert list(vocab)[-2:] == ["<|startoftext|>", "<|endoftext|>"]
    assert (tiny_sd / "tokenizer" / "merges.txt").read_text().startswith("#version: 0.2\n")


def test_detect_architecture(tiny_sd, tiny_sdxl, tmp_path):
    assert detect_architecture(tiny_sd) == "sd1"
    assert detect_architecture(tiny_sdxl) == "sdxl"

    sd2 = tmp_path / "sd2"
    (sd2 / "unet").mkdir(parents=True)
    (sd2 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (sd2 / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 1024, "in_channels": 4}))
    assert detect_architecture(sd2) == "sd2"

    (sd2 / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(InvalidInput) as raised:
        detect_architecture(sd2)
    assert raised.value.field == "model"
    with pytest.raises(InvalidInput):
        detect_architecture(tmp_path / "missing")


# ---------------------------------------------------------------- rendering


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_renders(engine, tiny_sd, sampler):
    images = engine.txt2img(source(tiny_sd), dataclasses.replace(PARAMS, sampler=sampler, steps=3))
    assert len(images) == 1
    assert images[0].size == (64, 64) and images[0].mode == "RGB"
    assert pixels(images[0]).std() > 1  # an image, not a blank


def test_non_square_size_is_width_by_height(engine, tiny_sd):
    image, = engine.txt2img(source(tiny_sd), dataclasses.replace(PARAMS, width=96, height=64, steps=2))
    assert image.size == (96, 64)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras", "DPM++ 2M SDE"])
def test_same_params_same_pixels(engine, tiny_sd, sampler):
    params = dataclasses.replace(PARAMS, sampler=sampler)
    first, = engine.txt2img(source(tiny_sd), params)
    second, = engine.txt2img(source(tiny_sd), params)
    fresh, = RenderEngine().txt2img(source(tiny_sd), params)
    assert first.tobytes() == second.tobytes() == fresh.tobytes()


def test_different_seeds_differ(engine, tiny_sd):
    a, = engine.txt2img(source(tiny_sd), PARAMS)
    b, = engine.txt2img(source(tiny_sd), dataclasses.replace(PARAMS, seed=PARAMS.seed + 1))
    assert np.abs(pixels(a) - pixels(b)).mean() > 1


def test_prompt_changes_the_image(engine, tiny_sd):
    a, = engine.txt2img(source(tiny_sd), PARAMS)
    b, = engine.txt2img(source(tiny_sd), dataclasses.replace(PARAMS, prompt="a red bicycle"))
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras", "DPM++ 2M SDE"])
def test_batch_image_i_equals_single_render_with_seed_plus_i(engine, tiny_sd, sampler):
    params = dataclasses.replace(PARAMS, sampler=sampler)
    batch = engine.txt2img(source(tiny_sd), params, batch_count=2)
    alone = [engine.txt2img(source(tiny_sd), dataclasses.replace(params, seed=params.seed + i))[0] for i in (0, 1)]
    assert [image.tobytes() for image in batch] == [image.tobytes() for image in alone]
    assert batch[0].tobytes() != batch[1].tobytes()


def test_batched_calls_use_per_image_seeds(tiny_sd):
    """max_batch_size > 1 runs one pipeline call; equal to single renders up to float rounding."""
    params = dataclasses.replace(PARAMS, sampler="DPM++ SDE Karras")
    batched = RenderEngine(max_batch_size=4).txt2img(source(tiny_sd), params, batch_count=2)
    alone = RenderEngine().txt2img(source(tiny_sd), params, batch_count=2)
    for b, a in zip(batched, alone):
        assert np.abs(pixels(b) - pixels(a)).max() <= 2
    assert np.abs(pixels(batched[0]) - pixels(batched[1])).mean() > 1


def test_progress_reports_each_step(engine, tiny_sd):
    for sampler in ("Euler a", "Heun", "DPM++ SDE Karras", "PLMS"):
        calls = []
        engine.txt2img(source(tiny_sd), dataclasses.replace(PARAMS, sampler=sampler, steps=4),
                       progress=lambda step, total: calls.append((step, total)))
        assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)], sampler


def test_progress_counts_over_the_whole_batch(tiny_sd):
    one_by_one, together = [], []
    params = dataclasses.replace(PARAMS, steps=2)
    RenderEngine().txt2img(source(tiny_sd), params, batch_count=2, progress=lambda *a: one_by_one.append(a))
    RenderEngine(max_batch_size=2).txt2img(source(tiny_sd), params, batch_count=2,
                                           progress=lambda *a: together.append(a))
    assert one_by_one == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert together == [(2, 4), (4, 4)]


# ---------------------------------------------------------------- out of GPU memory
# A GPU that fits only so much is simulated where the memory would run out: hooks on the real
# diffusers modules raise torch's own OutOfMemoryError, as CUDA's allocator does.


def _pipeline(engine: RenderEngine):
    return next(iter(engine._pipelines.values())).pipeline


def _fit_unet_batches_up_to(engine, images: int, raised: list):
    def hook(module, args):
        if args[0].shape[0] > 2 * images:  # classifier-free guidance runs two rows per image
            raised.append(args[0].shape[0] // 2)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return _pipeline(engine).unet.register_forward_pre_hook(hook)


def test_out_of_memory_halves_the_batch_and_remembers_it(tiny_sd):
    engine = RenderEngine(max_batch_size=4)
    params = dataclasses.replace(PARAMS, steps=2)
    engine.txt2img(source(tiny_sd), params)  # loads the model
    raised, progress = [], []
    handle = _fit_unet_batches_up_to(engine, 2, raised)
    try:
        images = engine.txt2img(source(tiny_sd), params, batch_count=5, progress=lambda *a: progress.append(a))
        assert raised == [4]  # one failure at 4, then batches of 2, 2 and 1
        assert progress[-1] == (10, 10) and progress == sorted(progress)
        alone = RenderEngine().txt2img(source(tiny_sd), params, batch_count=5)
        for got, want in zip(images, alone):
            assert np.abs(pixels(got) - pixels(want)).max() <= 2
        engine.txt2img(source(tiny_sd), params, batch_count=4)
        assert raised == [4]  # the next render starts at the batch that fits
    finally:
        handle.remove()


def test_out_of_memory_at_one_image_switches_to_low_memory_mode_once(tiny_sd):
    engine = RenderEngine()
    engine.txt2img(source(tiny_sd), PARAMS)
    pipeline = _pipeline(engine)
    expected = engine.txt2img(source(tiny_sd), PARAMS)[0]
    decodes_refused = []

    def full_resolution_decode_does_not_fit(module, args):
        if not pipeline.vae.use_tiling:
            decodes_refused.append(args[0].shape)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")

    handle = pipeline.vae.decoder.register_forward_pre_hook(full_resolution_decode_does_not_fit)
    try:
        image = engine.txt2img(source(tiny_sd), PARAMS)[0]
    finally:
        handle.remove()
    assert len(decodes_refused) == 1 and pipeline.vae.use_tiling
    # At 64x64 the tiled decode is one tile: the same image.
    assert np.abs(pixels(image) - pixels(expected)).max() <= 2

    refused = pipeline.unet.register_forward_pre_hook(
        lambda module, args: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory")))
    try:
        with pytest.raises(torch.OutOfMemoryError, match="does not fit in GPU memory, even with VAE tiling"):
            engine.txt2img(source(tiny_sd), PARAMS)
    finally:
        refused.remove()


def test_sdxl_model_renders_through_the_sdxl_pipeline(tiny_sdxl):
    engine = RenderEngine()
    model = source(tiny_sdxl, name=TINY_SDXL_MODEL_NAME, architecture="sdxl")
    images = engine.txt2img(model, dataclasses.replace(PARAMS, negative_prompt=""), batch_count=2)
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert images[0].tobytes() != images[1].tobytes()
    loaded, = engine._pipelines.values()
    assert type(loaded.pipeline).__name__ == "StableDiffusionXLPipeline"
    again = engine.txt2img(model, dataclasses.replace(PARAMS, negative_prompt="", seed=PARAMS.seed + 1))
    assert again[0].tobytes() == images[1].tobytes()


def test_models_are_cached_lru(tiny_sd, tiny_sdxl):
    engine = RenderEngine(max_cached_models=1)
    sd, xl = source(tiny_sd), source(tiny_sdxl, name=TINY_SDXL_MODEL_NAME, architecture="sdxl")
    assert engine.loaded_model_names() == []
    engine.txt2img(sd, PARAMS)
    first = next(iter(engine._pipelines.values())).pipeline
    engine.txt2img(sd, PARAMS)
    assert next(iter(engine._pipelines.values())).pipeline is first  # not reloaded
    engine.txt2img(xl, PARAMS)
    assert engine.loaded_model_names() == [TINY_SDXL_MODEL_NAME]

    two = RenderEngine(max_cached_models=2)
    two.txt2img(sd, PARAMS)
    two.txt2img(xl, PARAMS)
    two.txt2img(sd, PARAMS)
    assert two.loaded_model_names() == [TINY_SDXL_MODEL_NAME, TINY_MODEL_NAME]


def test_the_model_cache_is_bounded_by_memory_too(tiny_sd, tiny_sdxl):
    sd, xl = source(tiny_sd), source(tiny_sdxl, name=TINY_SDXL_MODEL_NAME, architecture="sdxl")
    probe = RenderEngine()
    probe.txt2img(sd, PARAMS)
    sd_bytes = probe.cached_bytes()
    # The tiny model's weights in float32: what its safetensors files hold, plus a few buffers
    # (position ids) that are not saved.
    saved = sum(p.stat().st_size for p in tiny_sd.rglob("*.safetensors")) - _safetensors_headers(tiny_sd)
    assert saved <= sd_bytes < saved * 1.01
    roomy = RenderEngine(max_cached_models=4, model_cache_bytes=10 * sd_bytes + (1 << 20))
    roomy.txt2img(sd, PARAMS)
    roomy.txt2img(xl, PARAMS)
    assert roomy.loaded_model_names() == [TINY_MODEL_NAME, TINY_SDXL_MODEL_NAME]
    tight = RenderEngine(max_cached_models=4, model_cache_bytes=sd_bytes + 1)
    tight.txt2img(sd, PARAMS)
    tight.txt2img(xl, PARAMS)  # does not fit beside tiny-sd: the older one goes
    assert tight.loaded_model_names() == [TINY_SDXL_MODEL_NAME]


def _safetensors_headers(folder: Path) -> int:
    # Each safetensors file starts with an 8-byte length and a JSON header of that length.
    return sum(8 + int.from_bytes(p.read_bytes()[:8], "little") for p in folder.rglob("*.safetensors"))


def test_out_of_memory_first_unloads_other_warm_models(tiny_sd, tiny_sdxl):
    sd, xl = source(tiny_sd), source(tiny_sdxl, name=TINY_SDXL_MODEL_NAME, architecture="sdxl")
    engine = RenderEngine(max_cached_models=2, max_batch_size=2)
    engine.txt2img(xl, PARAMS)
    engine.txt2img(sd, PARAMS)
    loaded = engine._pipelines[next(reversed(engine._pipelines))]
    raised = []

    def fits_only_alone(module, args):
        if len(engine._pipelines) > 1:
            raised.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory")

    handle = loaded.pipeline.unet.register_forward_pre_hook(fits_only_alone)
    try:
        assert len(engine.txt2img(sd, PARAMS, batch_count=2)) == 2
    finally:
        handle.remove()
    assert raised == [True] and engine.loaded_model_names() == [TINY_MODEL_NAME]
    assert loaded.batch_limits == {}  # the batch was not cut: the other model made the room


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(width=63), "width"),
        (dict(height=4096), "height"),
        (dict(steps=0), "steps"),
        (dict(cfg_scale=31.0), "cfg_scale"),
        (dict(seed=-5), "seed"),
        (dict(sampler="Euler A"), "sampler"),
    ],
)
def test_bad_params_are_refused_before_any_model_is_loaded(changes, field, tmp_path):
    engine = RenderEngine()
    nowhere = source(tmp_path / "no-such-model")
    with pytest.raises(InvalidInput) as raised:
        engine.txt2img(nowhere, dataclasses.replace(PARAMS, **changes))
    assert raised.value.field == field
    assert engine.loaded_model_names() == []


@pytest.mark.parametrize("count", [0, 65])
def test_bad_batch_count_is_refused(count, tiny_sd):
    with pytest.raises(InvalidInput) as raised:
        RenderEngine().txt2img(source(tiny_sd), PARAMS, batch_count=count)
    assert raised.value.field == "batch_count"


def test_pickle_only_weights_are_refused(tiny_sd, tmp_path):
    model = tmp_path / "pickled"
    shutil.copytree(tiny_sd, model)
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (model / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"never unpickled")
    engine = RenderEngine()
    with pytest.raises(InvalidInput) as raised:
        engine.txt2img(source(model), PARAMS)
    assert raised.value.field == "model"
    assert "diffusion_pytorch_model.bin" in raised.value.message and "safetensors" in raised.value.message
    assert engine.loaded_model_names() == []


def test_model_problems_are_refused(tiny_sd, tiny_sdxl, tmp_path):
    engine = RenderEngine()
    single_file = tmp_path / "model.safetensors"
    single_file.write_bytes(b"")
    for model in (
        source(tmp_path / "missing"),
        source(single_file),
        source(tiny_sdxl, architecture="sd1"),  # registered wrongly
        source(tiny_sd, architecture="sd3"),
    ):
        with pytest.raises(InvalidInput) as raised:
            engine.txt2img(model, PARAMS)
        assert raised.value.field == "model"
    assert engine.loaded_model_names() == []


def test_engine_settings_are_checked():
    for kwargs, field in ((dict(max_cached_models=0), "max_cached_models"), (dict(max_batch_size=0), "max_batch_size")):
        with pytest.raises(InvalidInput) as raised:
            RenderEngine(**kwargs)
        assert raised.value.field == field
