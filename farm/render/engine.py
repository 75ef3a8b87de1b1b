"""The render engine: diffusers pipelines, loaded once, cached, driven by plain parameters.

One engine per worker process (one process per GPU). It knows nothing about the database or
the settings: callers hand it a `ModelSource` and `Txt2ImgParams` and get PIL images back.

Reproducibility: image i of a request is drawn from its own CPU `torch.Generator` seeded with
seed+i (and, for the "DPM++ SDE" samplers, a Brownian tree seeded the same way), so its pixels
depend on its own seed only. With the default `max_batch_size=1` each image is its own pipeline
call, which makes image i of a batch *bit-identical* to a single render with seed+i: convolution
kernels (oneDNN on CPU, cuDNN on GPU) pick different algorithms for different batch sizes, so a
batched call agrees with single renders only to float rounding (a few 1e-6 in the latents,
sometimes 1 step in an 8-bit pixel). A larger `max_batch_size` trades that for GPU throughput.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from farm.errors import InvalidInput
from farm.models.hashing import HashVerifier
from farm.render.params import Txt2ImgParams, validate_batch, validate_txt2img
from farm.render.samplers import make_scheduler

ARCHITECTURES = ("sd1", "sd2", "sdxl")

_PIPELINE_CLASSES = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}

# Components holding weights that a render loads; each needs safetensors weights.
_WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")

# SD 2.x conditions on OpenCLIP ViT-H (1024 wide); SD 1.x on OpenAI CLIP ViT-L (768).
_SD2_CROSS_ATTENTION_DIM = 1024

ProgressCallback = Callable[[int, int], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    name: str
    path: Path
    architecture: str  # "sd1" | "sd2" | "sdxl"
    sha256: str


def detect_architecture(path: Path) -> str:
    """"sd1", "sd2" or "sdxl" for a diffusers text-to-image folder; InvalidInput("model") otherwise."""
    path = Path(path)
    model_index = _read_json_or_none(path / "model_index.json")
    if model_index is None:
        raise InvalidInput("model", f"{path} is not a diffusers model folder (no readable model_index.json)")
    class_name = model_index.get("_class_name")
    unet_config = _read_json_or_none(path / "unet" / "config.json") or {}
    if unet_config.get("in_channels", 4) != 4:
        raise InvalidInput("model", f"{path}: a UNet with {unet_config['in_channels']} input channels is not a text-to-image model")
    if class_name == "StableDiffusionXLPipeline":
        return "sdxl"
    if class_name == "StableDiffusionPipeline":
        if unet_config.get("cross_attention_dim") == _SD2_CROSS_ATTENTION_DIM:
            return "sd2"
        return "sd1"
    raise InvalidInput(
        "model", f"{path}: pipeline {class_name!r} is not supported; expected StableDiffusionPipeline or StableDiffusionXLPipeline"
    )


def check_model_source(model: ModelSource) -> None:
    """What can be said of a ModelSource without touching the disk; InvalidInput("model") if bad."""
    if not isinstance(model, ModelSource):
        raise InvalidInput("model", f"expected a ModelSource, got {type(model).__name__}")
    if model.architecture not in ARCHITECTURES:
        raise InvalidInput("model", f"architecture {model.architecture!r} is not one of {', '.join(ARCHITECTURES)}")


def check_model_folder(model: ModelSource) -> None:
    """Everything we can say about a model folder without loading it; InvalidInput("model") if bad."""
    check_model_source(model)
    path = Path(model.path)
    if not path.is_dir():
        raise InvalidInput("model", f"{path} is not a folder; the engine loads diffusers model folders only")
    detected = detect_architecture(path)
    if detected != model.architecture:
        raise InvalidInput("model", f"{model.name} is registered as {model.architecture} but {path} holds an {detected} model")
    model_index = _read_json_or_none(path / "model_index.json") or {}
    for component in _WEIGHT_COMPONENTS:
        if _is_listed(model_index.get(component)):
            _require_safetensors(path / component, model.name)


def _is_listed(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None


def _require_safetensors(folder: Path, model_name: str) -> None:
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    if any(p.suffix == ".safetensors" for p in files):
        return
    pickled = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise InvalidInput(
            "model",
            f"{model_name}: {folder.name}/ has only pickle weights ({', '.join(pickled)}); loading them could run "
            "arbitrary code. Convert the model to safetensors first.",
        )
    raise InvalidInput("model", f"{model_name}: no .safetensors weights in {folder}")


class RenderEngine:
    """Loads pipelines on demand (LRU cache by path and sha256) and renders with them.

    One render runs at a time per engine; the lock keeps a concurrent caller from swapping the
    scheduler of a pipeline that is mid-render.
    """

    def __init__(
        self,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        max_cached_models: int = 2,
        max_batch_size: int = 1,
        model_cache_bytes: int | None = None,
        verify_hashes: bool = False,
    ):
        if isinstance(max_cached_models, bool) or not isinstance(max_cached_models, int) or max_cached_models < 1:
            raise InvalidInput("max_cached_models", f"must be a whole number of at least 1, got {max_cached_models!r}")
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise InvalidInput("max_batch_size", f"must be a whole number of at least 1, got {max_batch_size!r}")
        self.device = torch.device(device)
        self.dtype = dtype if dtype is not None else (torch.float16 if self.device.type == "cuda" else torch.float32)
        if model_cache_bytes is not None and (isinstance(model_cache_bytes, bool) or not isinstance(model_cache_bytes, int)
                                              or model_cache_bytes < 1):
            raise InvalidInput("model_cache_bytes", f"must be a positive whole number, got {model_cache_bytes!r}")
        self.max_cached_models = max_cached_models
        self.max_batch_size = max_batch_size
        # Warm models are bounded by count and by the memory their weights take: by default
        # half of the GPU's memory (the rest is for activations), or a quarter of RAM on a CPU.
        self.model_cache_bytes = model_cache_bytes or _default_cache_bytes(self.device)
        self._pipelines: OrderedDict[tuple[str, str], _LoadedModel] = OrderedDict()
        self._lock = threading.RLock()
        # With verify_hashes (as workers run), files are checked against their registered sha256
        # before every load from disk, hashed once per process while their sizes and mtimes stay
        # the same (farm.models.hashing).
        self.hashes = HashVerifier() if verify_hashes else None

    def txt2img(
        self,
        model: ModelSource,
        params: Txt2ImgParams,
        batch_count: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Image.Image]:
        """Render `batch_count` images; image i uses seed params.seed + i.

        `progress(done, total)` is called after every sampling step, with
        total = params.steps * batch_count (second-order samplers such as Heun evaluate the
        model twice per step; their steps are still counted as the user asked for them).
        """
        validate_txt2img(params)
        validate_batch(params, batch_count)
        check_model_folder(model)

        with self._lock:
            loaded = self._load(model)
            seeds = [params.seed + i for i in range(batch_count)]
            counter = _StepCounter(params.steps, batch_count, progress)
            images: list[Image.Image] = []
            size = (params.width, params.height)
            batch = min(self.max_batch_size, loaded.batch_limits.get(size, self.max_batch_size))
            while len(images) < batch_count:
                chunk = seeds[len(images) : len(images) + batch]
                try:
                    images.extend(self._generate(loaded, params, chunk, counter))
                except torch.OutOfMemoryError:
                    counter.abandon_call()
                    self._free_cached_memory()
                    batch = self._after_out_of_memory(loaded, size, len(chunk))
            return images

    def _after_out_of_memory(self, loaded: _LoadedModel, size: tuple[int, int], failed_batch: int) -> int:
        """The batch size to try after a CUDA out-of-memory error, or raise it again.

        Halve the batch, and remember the limit for this model and size so the next render does
        not hit the wall again; at one image, switch the VAE to tiled decoding once (the decode of
        a large image is the usual peak). Sliced attention is not used: with PyTorch's SDPA it
        saves little and slows renders badly (diffusers' own warning). Past that the error goes
        up: the render fails this attempt and is retried, perhaps on a worker with more memory.
        """
        if len(self._pipelines) > 1:
            # Other warm models hold memory this render needs: let them go before shrinking.
            self._evict_oldest(keep=loaded)
            log.warning("%s: out of GPU memory; unloaded a warm model to make room", loaded.model.name)
            return failed_batch
        if failed_batch > 1:
            batch = failed_batch // 2
            loaded.batch_limits[size] = batch
            log.warning("%s: out of GPU memory at batch %d (%dx%d); retrying at batch %d",
                        loaded.model.name, failed_batch, *size, batch)
            return batch
        if not loaded.low_memory:
            loaded.low_memory = True
            loaded.pipeline.vae.enable_tiling()
            log.warning("%s: out of GPU memory for one %dx%d image; retrying with tiled VAE decoding",
                        loaded.model.name, *size)
            return 1
        raise torch.OutOfMemoryError(
            f"{loaded.model.name}: one {size[0]}x{size[1]} image does not fit in GPU memory, even with VAE tiling")

    def _free_cached_memory(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def loaded_model_names(self) -> list[str]:
        """Names of the models held in memory, most recently used last.

        Deliberately lock-free: a worker's heartbeat asks while a render holds the lock, and a
        snapshot of the cache (copied atomically under the GIL) is all it needs.
        """
        return [loaded.model.name for loaded in list(self._pipelines.values())]

    def unload_all(self) -> None:
        with self._lock:
            while self._pipelines:
                self._evict_oldest()

    # ------------------------------------------------------------------ internals

    def _generate(self, loaded: _LoadedModel, params: Txt2ImgParams, seeds: list[int], counter: _StepCounter):
        pipeline = loaded.pipeline
        # One seed -> a plain int; the Brownian tree treats an int and a one-item list alike.
        pipeline.scheduler = make_scheduler(params.sampler, loaded.scheduler_config, seeds[0] if len(seeds) == 1 else seeds)
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        counter.start_call(len(seeds))
        with torch.inference_mode():
            result = pipeline(
                prompt=params.prompt,
                negative_prompt=params.negative_prompt or None,
                num_inference_steps=params.steps,
                guidance_scale=float(params.cfg_scale),
                width=params.width,
                height=params.height,
                num_images_per_prompt=len(seeds),
                generator=generators,
                output_type="pil",
                callback_on_step_end=counter.on_step_end,
            )
        return list(result.images)

    def _load(self, model: ModelSource) -> _LoadedModel:
        key = (str(Path(model.path).resolve()), model.sha256)
        loaded = self._pipelines.get(key)
        if loaded is not None:
            self._pipelines.move_to_end(key)
            return loaded
        # Never load files that are not the ones registered (swapped, edited, half-copied):
        # ModelHashMismatch names the model and both hashes, and nothing is loaded or evicted.
        if self.hashes is not None:
            self.hashes.verify(model.name, Path(model.path), model.sha256)
        # Make room first, by an estimate from the files; then by the measured size.
        expected = _weight_file_bytes(Path(model.path))
        while self._pipelines and (len(self._pipelines) >= self.max_cached_models
                                   or self.cached_bytes() + expected > self.model_cache_bytes):
            self._evict_oldest()
        pipeline = self._load_pipeline(model)
        loaded = _LoadedModel(model, pipeline, dict(pipeline.scheduler.config), weight_bytes=_weight_bytes(pipeline))
        self._pipelines[key] = loaded
        while len(self._pipelines) > 1 and self.cached_bytes() > self.model_cache_bytes:
            self._evict_oldest()
        return loaded

    def cached_bytes(self) -> int:
        """Memory taken by the weights of the models held warm."""
        return sum(loaded.weight_bytes for loaded in list(self._pipelines.values()))

    def _load_pipeline(self, model: ModelSource):
        import diffusers
        import transformers

        # "Loading pipeline components" / "Loading weights" bars would fill worker logs.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()

        pipeline_class = getattr(diffusers, _PIPELINE_CLASSES[model.architecture])
        extra = {"add_watermarker": False} if model.architecture == "sdxl" else {
            "safety_checker": None,
            "feature_extractor": None,
            "requires_safety_checker": False,
        }
        pipeline = pipeline_class.from_pretrained(
            Path(model.path),
            local_files_only=True,
            use_safetensors=True,
            dtype=self.dtype,
            image_encoder=None,
            **extra,
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(self.device)

    def _evict_oldest(self, keep: _LoadedModel | None = None) -> None:
        key = next(k for k, v in self._pipelines.items() if v is not keep)
        del self._pipelines[key]
        self._free_cached_memory()


@dataclass
class _LoadedModel:
    model: ModelSource
    pipeline: object
    scheduler_config: dict  # the model's own, kept apart from the per-request scheduler
    weight_bytes: int = 0  # memory its weights take on the device
    # Learned from out-of-memory errors: the largest batch that fits, by (width, height).
    batch_limits: dict[tuple[int, int], int] = field(default_factory=dict)
    low_memory: bool = False  # tiled VAE decoding switched on after an OOM at one image


class _StepCounter:
    """Turns the pipeline's per-model-call callback into user-facing step progress."""

    def __init__(self, steps: int, batch_count: int, progress: ProgressCallback | None):
        self.steps = steps
        self.total = steps * batch_count
        self.progress = progress
        self.images_done = 0
        self.images_in_call = 0
        self.reported = 0

    def start_call(self, images: int) -> None:
        self.images_done += self.images_in_call
        self.images_in_call = images

    def abandon_call(self) -> None:
        """The call failed and will be made again: its images are not done."""
        self.images_in_call = 0

    def on_step_end(self, pipeline, index: int, timestep, callback_kwargs: dict) -> dict:
        if self.progress is not None:
            # Second-order samplers make about two model calls per step (Heun: 2*steps-1).
            calls = max(int(pipeline.num_timesteps), 1)
            step = min(self.steps, math.ceil((index + 1) * self.steps / calls))
            done = self.images_done * self.steps + step * self.images_in_call
            if done > self.reported:
                self.reported = done
                self.progress(done, self.total)
        return callback_kwargs


def _default_cache_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def _weight_bytes(pipeline) -> int:
    total = 0
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in component.parameters())
            total += sum(t.numel() * t.element_size() for t in component.buffers())
    return total


def _weight_file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.safetensors"))


def _read_json_or_none(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
