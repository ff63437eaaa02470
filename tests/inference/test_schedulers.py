"""inference.schedulers: SPEC §4 sampler names -> diffusers classes, always from the pristine config."""

import copy

import pytest

from inference.api import SAMPLERS, RequestError
from inference.schedulers import build_scheduler
from inference.tiny import SD_SCHEDULER_CONFIG

EXPECTED = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_maps_to_its_class_with_its_flags(name):
    pristine = copy.deepcopy(SD_SCHEDULER_CONFIG)
    scheduler = build_scheduler(name, pristine, seed=42)
    class_name, flags = EXPECTED[name]
    assert type(scheduler).__name__ == class_name
    for flag, value in flags.items():
        assert scheduler.config[flag] == value
    # The pristine config's noise schedule survives, and the config itself is left untouched.
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_start == 0.00085 and scheduler.config.beta_end == 0.012
    assert scheduler.config.steps_offset == 1
    assert pristine == SD_SCHEDULER_CONFIG


def test_sde_sampler_gets_the_seed_for_its_brownian_noise():
    assert build_scheduler("DPM++ SDE Karras", SD_SCHEDULER_CONFIG, seed=77).config.noise_sampler_seed == 77


def test_each_build_is_fresh():
    first = build_scheduler("Euler", SD_SCHEDULER_CONFIG)
    first.set_timesteps(4)
    second = build_scheduler("Euler", SD_SCHEDULER_CONFIG)
    assert second is not first
    assert second.num_inference_steps is None and first.num_inference_steps == 4


def test_unknown_sampler_names_the_choices():
    with pytest.raises(RequestError) as error:
        build_scheduler("Heun++ Turbo", SD_SCHEDULER_CONFIG)
    message = str(error.value)
    assert "Heun++ Turbo" in message
    for name in SAMPLERS:
        assert name in message
