"""AUTOMATIC1111 sampler names mapped to diffusers schedulers.

The mapping follows the table in diffusers' scheduler overview ("A1111/k-diffusion" column),
with one deliberate difference: A1111's "DPM++ SDE" samplers are k-diffusion's
`sample_dpmpp_sde`, a stochastic sampler driven by a Brownian tree. diffusers implements that
sampler as `DPMSolverSDEScheduler` (the overview table points at the deterministic
`DPMSolverSinglestepScheduler`), so we use `DPMSolverSDEScheduler` with a seeded noise sampler.

A scheduler is always built with `from_config(model's own scheduler config, **overrides)`, so the
model's training choices (betas, prediction type, timestep offset) carry over and only the
sampling algorithm changes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from farm.errors import InvalidInput


@dataclass(frozen=True)
class _Sampler:
    scheduler_class: str
    overrides: dict[str, Any] = field(default_factory=dict)
    karras: bool = False
    seeded_noise: bool = False  # needs noise_sampler_seed (Brownian tree) to be reproducible


_SAMPLERS: dict[str, _Sampler] = {
    "Euler a": _Sampler("EulerAncestralDiscreteScheduler"),
    "Euler": _Sampler("EulerDiscreteScheduler"),
    "LMS": _Sampler("LMSDiscreteScheduler"),
    "LMS Karras": _Sampler("LMSDiscreteScheduler", karras=True),
    "Heun": _Sampler("HeunDiscreteScheduler"),
    "DPM2": _Sampler("KDPM2DiscreteScheduler"),
    "DPM2 Karras": _Sampler("KDPM2DiscreteScheduler", karras=True),
    "DPM2 a": _Sampler("KDPM2AncestralDiscreteScheduler"),
    "DPM2 a Karras": _Sampler("KDPM2AncestralDiscreteScheduler", karras=True),
    "DPM++ 2M": _Sampler("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": _Sampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, karras=True
    ),
    "DPM++ 2M SDE": _Sampler("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ 2M SDE Karras": _Sampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, karras=True
    ),
    "DPM++ SDE": _Sampler("DPMSolverSDEScheduler", seeded_noise=True),
    "DPM++ SDE Karras": _Sampler("DPMSolverSDEScheduler", karras=True, seeded_noise=True),
    "DDIM": _Sampler("DDIMScheduler"),
    "PLMS": _Sampler("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": _Sampler("UniPCMultistepScheduler"),
    "LCM": _Sampler("LCMScheduler"),
}

SAMPLER_NAMES: tuple[str, ...] = tuple(_SAMPLERS)

# Samplers that cannot run more steps than this (LCMScheduler refuses more steps than its
# `original_inference_steps`, 50 by default).
SAMPLER_MAX_STEPS: dict[str, int] = {"LCM": 50}

# Noise-schedule switches that a base config may carry from another sampler; each new
# scheduler states all of them, so "Euler" built from a Karras config is plain Euler.
_SIGMA_SCHEDULE_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")


def check_sampler(sampler: object) -> str:
    """Return the sampler name if known, else raise InvalidInput("sampler", ...)."""
    if not isinstance(sampler, str) or sampler not in _SAMPLERS:
        raise InvalidInput("sampler", f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
    return sampler


def make_scheduler(sampler: str, base_scheduler_config: dict, seed: int | Sequence[int] | None = None):
    """A fresh diffusers scheduler for `sampler`, built from a model's scheduler config.

    `seed` feeds the Brownian-tree noise of the "DPM++ SDE" samplers (ignored by the others,
    which draw their noise from the pipeline's generators). Pass one seed per image of a batch
    to make image i match a single render with seed[i]. Without a seed those samplers use 0,
    so they stay reproducible.
    """
    import diffusers

    spec = _SAMPLERS[check_sampler(sampler)]
    scheduler_class = getattr(diffusers, spec.scheduler_class)
    accepted = set(inspect.signature(scheduler_class.__init__).parameters)

    overrides = {flag: False for flag in _SIGMA_SCHEDULE_FLAGS if flag in accepted}
    if spec.karras:
        overrides["use_karras_sigmas"] = True
    overrides.update(spec.overrides)
    if spec.seeded_noise:
        overrides["noise_sampler_seed"] = _noise_seed(seed)

    # The base config goes in whole: diffusers reads its private keys (`_use_default_values`)
    # to let the new class use its own defaults where the model never chose a value.
    return scheduler_class.from_config(dict(base_scheduler_config), **overrides)


def _noise_seed(seed: int | Sequence[int] | None) -> int | list[int]:
    if seed is None:
        return 0
    if isinstance(seed, Sequence):
        return [int(s) for s in seed]
    return int(seed)
