"""The "instant" render engine: the RenderEngine interface without a model.

Picked with `render_engine: instant` (FARM_RENDER_ENGINE=instant). It returns, at once, images of
the requested size in one solid colour derived from the seed, so everything around the engine
(queue, lease, PNG + thumbnail, storage, rows) can be measured (bench/dispatch.py) or tried on a
new farm without a GPU or model weights. Parameters are validated exactly as the real engine
validates them, so a job that the instant engine accepts is one the real engine accepts too.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch
from PIL import Image

from farm.errors import InvalidInput
from farm.render.engine import ModelSource, ProgressCallback, check_model_source
from farm.render.params import Txt2ImgParams, validate_batch, validate_txt2img


def seed_colour(seed: int) -> tuple[int, int, int]:
    """An RGB colour that depends on the seed only (the same in every process and on every machine).

    A hash rather than, say, seed % 256: neighbouring seeds (image i of a batch uses seed+i) get
    visibly different colours, so a mix-up of images is easy to see.
    """
    digest = hashlib.blake2b(seed.to_bytes(8, "big"), digest_size=3).digest()
    return digest[0], digest[1], digest[2]


class InstantEngine:
    """Same methods and `device` as RenderEngine; renders take microseconds and load nothing.

    `loaded_model_names()` reports the models it was asked to render with, most recently used
    last, as if it held them (bounded like RenderEngine's cache): the heartbeat publishes these
    as warm models, so warm-model routing sees an instant worker as it would see a real one.
    """

    def __init__(self, max_cached_models: int = 2):
        if isinstance(max_cached_models, bool) or not isinstance(max_cached_models, int) or max_cached_models < 1:
            raise InvalidInput("max_cached_models", f"must be a whole number of at least 1, got {max_cached_models!r}")
        self.device = torch.device("cpu")
        self.max_cached_models = max_cached_models
        self._models: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def txt2img(
        self,
        model: ModelSource,
        params: Txt2ImgParams,
        batch_count: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Image.Image]:
        """`batch_count` solid images, image i in the colour of seed params.seed + i.

        `progress(total, total)` is called once, with total = params.steps * batch_count, as the
        real engine's last call would be (the worker's progress writer leaves that one to the finish).
        """
        validate_txt2img(params)
        validate_batch(params, batch_count)
        # No folder is read (a dry-run farm may have none); the disk-free checks still apply.
        check_model_source(model)
        with self._lock:
            self._models.pop(model.name, None)
            self._models[model.name] = None
            while len(self._models) > self.max_cached_models:
                self._models.popitem(last=False)
        images = [Image.new("RGB", (params.width, params.height), seed_colour(params.seed + i))
                  for i in range(batch_count)]
        if progress is not None:
            total = params.steps * batch_count
            progress(total, total)
        return images

    def loaded_model_names(self) -> list[str]:
        # Unlike RenderEngine's render lock, this one is held for microseconds, so the heartbeat
        # thread may take it (copying an OrderedDict that another thread changes can raise).
        with self._lock:
            return list(self._models)

    def unload_all(self) -> None:
        with self._lock:
            self._models.clear()

