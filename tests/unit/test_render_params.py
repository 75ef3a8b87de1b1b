"""Parameter validation and sampler mapping: no model needed."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses  # noqa: E402

import pytest  # noqa: E402

from farm.errors import InvalidInput  # noqa: E402
from farm.render.params import MAX_BATCH_COUNT, Txt2ImgParams, validate_batch, validate_txt2img  # noqa: E402
from farm.render.samplers import SAMPLER_NAMES, make_scheduler  # noqa: E402

GOOD = Txt2ImgParams(
    prompt="a lighthouse at dusk", negative_prompt="", seed=1, steps=20, cfg_scale=7.0,
    width=512, height=768, sampler="Euler a",
)

SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
}


def test_good_params_pass_including_edges():
    validate_txt2img(GOOD)
    for edge in (
        dict(width=64, height=2048), dict(steps=1), dict(steps=150), dict(cfg_scale=0), dict(cfg_scale=30),
        dict(seed=0), dict(seed=2**32 - 1), dict(prompt=""), dict(sampler="LCM", steps=50),
    ):
        validate_txt2img(dataclasses.replace(GOOD, **edge))


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(width=60), "width"),
        (dict(width=2056), "width"),
        (dict(width=260), "width"),
        (dict(width=256.0), "width"),
        (dict(width=True), "width"),
        (dict(height=56), "height"),
        (dict(height=1001), "height"),
        (dict(height="512"), "height"),
        (dict(steps=0), "steps"),
        (dict(steps=151), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(sampler="LCM", steps=51), "steps"),
        (dict(cfg_scale=-0.5), "cfg_scale"),
        (dict(cfg_scale=30.01), "cfg_scale"),
        (dict(cfg_scale=float("nan")), "cfg_scale"),
        (dict(cfg_scale="7"), "cfg_scale"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**32), "seed"),
        (dict(seed=None), "seed"),
        (dict(sampler="euler a"), "sampler"),
        (dict(sampler="DPM++ 3M"), "sampler"),
        (dict(sampler=None), "sampler"),
        (dict(prompt=None), "prompt"),
        (dict(negative_prompt=3), "negative_prompt"),
    ],
)
def test_bad_params_name_their_field(changes, field):
    with pytest.raises(InvalidInput) as raised:
        validate_txt2img(dataclasses.replace(GOOD, **changes))
    assert raised.value.field == field


@pytest.mark.parametrize("count", [0, -1, MAX_BATCH_COUNT + 1, 2.0, True])
def test_bad_batch_count(count):
    with pytest.raises(InvalidInput) as raised:
        validate_batch(GOOD, count)
    assert raised.value.field == "batch_count"


def test_batch_seeds_must_stay_valid_seeds():
    validate_batch(dataclasses.replace(GOOD, seed=2**32 - 4), 4)
    with pytest.raises(InvalidInput) as raised:
        validate_batch(dataclasses.replace(GOOD, seed=2**32 - 4), 5)
    assert raised.value.field == "seed"


def test_sampler_names_cover_the_a1111_basics():
    required = {"Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M Karras",
                "DPM++ 2M SDE", "DPM++ SDE Karras", "DDIM", "UniPC", "LCM"}
    assert required <= set(SAMPLER_NAMES)
    assert len(set(SAMPLER_NAMES)) == len(SAMPLER_NAMES)


def test_unknown_sampler_lists_the_choices():
    with pytest.raises(InvalidInput) as raised:
        make_scheduler("k_euler", SD15_SCHEDULER_CONFIG)
    assert raised.value.field == "sampler"
    assert "unknown sampler 'k_euler'" in raised.value.message
    assert "DPM++ 2M Karras" in raised.value.message


@pytest.mark.parametrize(
    "sampler, class_name, expected",
    [
        ("Euler a", "EulerAncestralDiscreteScheduler", {}),
        ("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
        ("LMS", "LMSDiscreteScheduler", {"use_karras_sigmas": False}),
        ("Heun", "HeunDiscreteScheduler", {"use_karras_sigmas": False}),
        ("DPM2", "KDPM2DiscreteScheduler", {"use_karras_sigmas": False}),
        ("DPM2 a", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": False}),
        ("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
        ("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
        ("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False}),
        ("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True, "noise_sampler_seed": 42}),
        ("DDIM", "DDIMScheduler", {}),
        ("UniPC", "UniPCMultistepScheduler", {}),
        ("LCM", "LCMScheduler", {}),
    ],
)
def test_make_scheduler_maps_names_to_diffusers(sampler, class_name, expected):
    scheduler = make_scheduler(sampler, SD15_SCHEDULER_CONFIG, seed=42)
    assert type(scheduler).__name__ == class_name
    for key, value in expected.items():
        assert scheduler.config[key] == value, key
    # the model's training schedule carries over
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == 0.012


def test_switches_from_the_base_config_do_not_leak_into_other_samplers():
    karras_sde_base = dict(SD15_SCHEDULER_CONFIG, _class_name="DPMSolverMultistepScheduler",
                           algorithm_type="sde-dpmsolver++", use_karras_sigmas=True, prediction_type="v_prediction")
    plain = make_scheduler("DPM++ 2M", karras_sde_base)
    assert plain.config.use_karras_sigmas is False
    assert plain.config.algorithm_type == "dpmsolver++"
    assert plain.config.prediction_type == "v_prediction"
    assert make_scheduler("Euler", karras_sde_base).config.use_karras_sigmas is False


def test_sde_noise_is_seeded_even_without_a_seed():
    assert make_scheduler("DPM++ SDE Karras", SD15_SCHEDULER_CONFIG).config.noise_sampler_seed == 0
    assert make_scheduler("DPM++ SDE", SD15_SCHEDULER_CONFIG, seed=[5, 6]).config.noise_sampler_seed == [5, 6]
