"""Probes the region/composite/refine tests put into the denoise loop, shared so each test file
reads as what it checks."""

from __future__ import annotations

import numpy as np

from inference.sd.context import LoopExtension


class RecordLatents(LoopExtension):
    """Keeps the latents after the last step (the loop's own state, before the decode)."""

    latents = None
    image_latents = None

    def after_step(self, ctx, step_index, latents):
        self.latents = latents.clone()
        self.image_latents = ctx.image_latents
        return latents


class CountUnetInputs:
    """Wraps the UNet's forward to count calls and batch entries."""

    def __init__(self, unet):
        self.unet = unet
        self.calls: list[int] = []

    def __enter__(self):
        original = self.unet.forward

        def counting(sample, *args, **kwargs):
            self.calls.append(int(sample.shape[0]))
            return original(sample, *args, **kwargs)

        self.unet.forward = counting
        return self

    def __exit__(self, *exc):
        del self.unet.forward


def left_half(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    mask[:, : size // 2] = 1.0
    return mask
