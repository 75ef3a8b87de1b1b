"""Fully resolved text-to-image parameters, and their validation.

Validation happens before any model is touched, and every problem names its field so the CLI,
the API and the forms can point at it. An empty prompt is acceptable here: templates decide
whether a campaign allows one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from farm.errors import InvalidInput
from farm.render.samplers import SAMPLER_MAX_STEPS, check_sampler

MAX_BATCH_COUNT = 64

MIN_SIDE = 64
MAX_SIDE = 2048
SIDE_MULTIPLE = 8
MIN_STEPS = 1
MAX_STEPS = 150
MIN_CFG_SCALE = 0.0
MAX_CFG_SCALE = 30.0
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Txt2ImgParams:
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    cfg_scale: float
    width: int
    height: int
    sampler: str


def validate_txt2img(params: Txt2ImgParams) -> None:
    """Raise InvalidInput naming the first unacceptable field; return None if all are fine."""
    for name in ("prompt", "negative_prompt"):
        if not isinstance(getattr(params, name), str):
            raise InvalidInput(name, "must be text")
    for name in ("width", "height"):
        _check_side(name, getattr(params, name))
    sampler = check_sampler(params.sampler)
    max_steps = min(MAX_STEPS, SAMPLER_MAX_STEPS.get(sampler, MAX_STEPS))
    _check_int("steps", params.steps, MIN_STEPS, max_steps, suffix=f" for sampler {sampler}" if max_steps < MAX_STEPS else "")
    _check_cfg_scale(params.cfg_scale)
    _check_int("seed", params.seed, 0, MAX_SEED)


def validate_batch(params: Txt2ImgParams, batch_count: int) -> None:
    """A batch of `batch_count` images uses seeds seed .. seed+batch_count-1; all must be valid seeds."""
    _check_int("batch_count", batch_count, 1, MAX_BATCH_COUNT)
    if params.seed + batch_count - 1 > MAX_SEED:
        raise InvalidInput(
            "seed",
            f"seed {params.seed} + batch of {batch_count} images goes past {MAX_SEED}; "
            f"use a seed of at most {MAX_SEED - batch_count + 1}",
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(field: str, value: object, low: int, high: int, suffix: str = "") -> None:
    if not _is_int(value):
        raise InvalidInput(field, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}{suffix}, got {value}")


def _check_side(field: str, value: object) -> None:
    _check_int(field, value, MIN_SIDE, MAX_SIDE)
    if value % SIDE_MULTIPLE:
        raise InvalidInput(field, f"must be a multiple of {SIDE_MULTIPLE}, got {value}")


def _check_cfg_scale(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput("cfg_scale", f"must be a number, got {value!r}")
    if not MIN_CFG_SCALE <= value <= MAX_CFG_SCALE:
        raise InvalidInput("cfg_scale", f"must be between {MIN_CFG_SCALE:g} and {MAX_CFG_SCALE:g}, got {value}")
