"""Per-pixel denoising strength: latent blending for inpaint and differential diffusion.

A pixel of strength s behaves as if the whole image were img2img'd at strength s: it is held to
the original (re-noised to the current step's noise level, with the run's own noise) until the
step where an img2img at strength s would start, and denoised from then on. Strength 0 keeps the
original latents through the end; strength 1 takes part in every step.

Inpaint on 4-channel models is the special case {0 outside the mask, the request strength inside};
`refine` passes a continuous map (strong at collage seams, weak on the background).
The run itself starts at the largest strength of the map, so set the request strength to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.api import RequestError
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.masks import cell_mean


@dataclass(frozen=True)
class StrengthMap:
    """Per-pixel denoising strength at the generation's pixel size: HxW float32 in [0, 1]."""

    values: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        if values.ndim != 2:
            raise RequestError(f"A strength map must be a 2-D HxW array, not shape {values.shape}.")
        if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
            raise RequestError("A strength map must hold values between 0 and 1.")
        object.__setattr__(self, "values", values.astype(np.float32))


    def latent_values(self, cell: int) -> np.ndarray:
        """Mean strength of each latent pixel (cell x cell block of pixels)."""
        h, w = self.values.shape
        if h % cell or w % cell:
            raise RequestError(f"A strength map of {w}x{h} does not fit the {cell}-pixel latent grid.")
        return cell_mean(self.values, cell)


class StrengthBlend(LoopExtension):
    """Holds each latent pixel to the (re-noised) original until its own start step.

    Give either a pixel-space `StrengthMap` or `latent_strength` (h x w at latent size).
    """

    def __init__(self, strength_map: StrengthMap | None = None, *, latent_strength: np.ndarray | None = None):
        if (strength_map is None) == (latent_strength is None):
            raise ValueError("give exactly one of strength_map and latent_strength")
        self.strength_map = strength_map
        self.latent_strength = latent_strength
        self.start = None  # 1 x 1 x h x w tensor of start steps

    def prepare(self, ctx: DenoiseContext) -> None:
        import torch

        if ctx.image_latents is None:
            raise RequestError("Per-pixel strength needs an input image to hold pixels to.")
        latent_strength = self.latent_strength
        if latent_strength is None:
            if self.strength_map.values.shape != (ctx.height, ctx.width):
                raise RequestError(
                    f"The strength map is {self.strength_map.values.shape[1]}x{self.strength_map.values.shape[0]}"
                    f" but the generation is {ctx.width}x{ctx.height}."
                )
            latent_strength = self.strength_map.latent_values(ctx.model.vae_scale_factor)
        if latent_strength.shape != ctx.latent_size:
            raise RequestError("The latent strength map does not match the latent size.")
        start = ctx.start_steps(latent_strength)
        self.start = torch.from_numpy(start)[None, None].to(ctx.device)

    def after_step(self, ctx: DenoiseContext, step_index: int, latents):
        import torch

        held = self.start > step_index
        if not bool(held.any()):
            return latents
        next_index = step_index + 1
        if next_index < len(ctx.timesteps):
            t_next = ctx.timesteps[next_index : next_index + 1]
            target = ctx.scheduler.add_noise(ctx.image_latents, ctx.noise, t_next)
        else:
            target = ctx.image_latents
        return torch.where(held, target.to(latents.dtype), latents)
