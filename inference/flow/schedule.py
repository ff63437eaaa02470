"""FlowMatchEuler with the family's shift, and the img2img cut, as the FLUX pipelines compute them.

- sigmas: linspace(1, 1/steps, steps); FLUX dev/Fill shift them by `mu`, which grows linearly with
  the number of image tokens (diffusers' `calculate_shift`: 0.5 at 256 tokens, 1.15 at 4096);
  schnell has a fixed shift of 1 (no shift).
- strength s runs the last part of the schedule: `int(steps - steps * s)` steps are skipped (the
  FLUX img2img pipelines' rounding, which differs from SD's by one step for some strengths); the
  per-pixel strength of blending follows the same cut (`start_steps`). A tolerance of 1e-6 makes
  float32 strength maps and the request's float agree; where steps * s lies within it above a whole
  number (10 x 0.7 = 7.000000000000001) diffusers skips one step fewer than we do.

The scheduler the loop gets is diffusers' FlowMatchEulerDiscreteScheduler with the three names the
shared extensions use on SD schedulers: `add_noise` (the flow-matching forward process at a given
timestep), `scale_model_input` (the identity) and `init_noise_sigma` (1).
"""

from __future__ import annotations

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler


class FlowMatchEuler(FlowMatchEulerDiscreteScheduler):
    init_noise_sigma = 1.0

    def add_noise(self, original, noise, timesteps):
        """x_t = sigma(t) * noise + (1 - sigma(t)) * x_0 for the (one) timestep given, whatever step is current."""
        schedule = self.timesteps.to(timesteps.device)
        index = self.index_for_timestep(timesteps[0], schedule)
        sigma = self.sigmas[index].to(device=original.device, dtype=original.dtype)
        return sigma * noise + (1.0 - sigma) * original

    def scale_model_input(self, sample, timestep=None):
        return sample


def calculate_mu(image_tokens: int, config: dict) -> float:
    """The dynamic shift for this many image tokens (linear between the config's two anchors)."""
    base_tokens = config.get("base_image_seq_len", 256)
    max_tokens = config.get("max_image_seq_len", 4096)
    base_shift = config.get("base_shift", 0.5)
    max_shift = config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_tokens - base_tokens)
    return image_tokens * slope + (base_shift - slope * base_tokens)


def build_flow_scheduler(config: dict, steps: int, image_tokens: int, device, sigmas=None) -> FlowMatchEuler:
    """`sigmas` before the shift: linspace(1, 1/steps, steps) in float64 (the FLUX pipelines) unless given."""
    scheduler = FlowMatchEuler.from_config(config)
    if sigmas is None:
        sigmas = np.linspace(1.0, 1 / steps, steps)
    scheduler.set_timesteps(sigmas=sigmas, device=device, mu=calculate_mu(image_tokens, config))
    return scheduler


def skipped_steps(steps: int, strength) -> np.ndarray:
    """Steps of the full schedule that strength s skips: int(steps - min(steps * s, steps)) (+ tolerance)."""
    strength = np.asarray(strength, dtype=np.float64)
    return np.floor(np.maximum(steps - np.minimum(steps * strength, steps), 0) + 1e-6).astype(np.int64)


def start_steps(latent_strength: np.ndarray, steps: int, run_start: int, run_length: int) -> np.ndarray:
    """Per latent pixel, the index into the run's timesteps where it starts being denoised (strength 0: never)."""
    return np.clip(skipped_steps(steps, latent_strength) - run_start, 0, run_length).astype(np.int64)
