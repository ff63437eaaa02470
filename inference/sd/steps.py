"""Where each latent pixel's denoising starts: the img2img cut of the schedule, per pixel."""

from __future__ import annotations

import numpy as np


def start_steps(latent_strength: np.ndarray, steps: int, order: int, run_start: int, run_length: int) -> np.ndarray:
    """For each latent pixel, the index into the run's timesteps at which it starts being denoised.

    Mirrors the img2img timestep cut: strength s skips the first `steps - int(steps * s)` steps of
    the full schedule (times the scheduler's order). Pixels asking to start before the run does
    start with it; pixels that never start (strength 0) get `run_length`.
    """
    init_steps = np.minimum((steps * latent_strength.astype(np.float64) + 1e-6).astype(np.int64), steps)
    absolute = (steps - init_steps) * order
    return np.clip(absolute - run_start, 0, run_length).astype(np.int64)
