"""Sampler names (SPEC §4, what users see) -> diffusers schedulers.

A scheduler is always built fresh from the model's pristine config, `Cls.from_config(config, **flags)`,
so no sampler's flags (Karras sigmas, a noise seed) leak into the next generation.
"""

from __future__ import annotations

from inference.api import SAMPLERS, RequestError

# name -> (diffusers class name, flags given to from_config)
SAMPLER_CLASSES: dict[str, tuple[str, dict]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
assert tuple(SAMPLER_CLASSES) == SAMPLERS, "the sampler table and the API's SAMPLERS must list the same names"

# Samplers whose randomness comes from a seed given to the scheduler rather than from a generator.
SEEDED_SAMPLERS = {"DPM++ SDE Karras"}


def check_sampler(name: str) -> None:
    if name not in SAMPLER_CLASSES:
        raise RequestError(f"Unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}.")


def build_scheduler(name: str, pristine_config: dict, *, seed: int | None = None):
    """A new scheduler for sampler `name`; `seed` feeds samplers with their own noise source (SDE)."""
    check_sampler(name)
    import diffusers

    class_name, flags = SAMPLER_CLASSES[name]
    flags = dict(flags)
    if name in SEEDED_SAMPLERS:
        flags["noise_sampler_seed"] = seed
    if name == "DPM++ SDE Karras":
        import importlib.util

        if importlib.util.find_spec("torchsde") is None:
            raise RequestError("The sampler 'DPM++ SDE Karras' needs the torchsde package, which is not installed.")
    cls = getattr(diffusers, class_name)
    return cls.from_config(pristine_config, **flags)
