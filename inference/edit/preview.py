"""Step previews for the edit pipelines: latents -> RGB with a linear projection, no VAE decode.

Flux and Qwen-Image pipelines keep their latents packed as 2x2 patches (B, tokens, C*4); they are
unpacked with the pipeline's own `_unpack_latents` first. The projections map the latent channels
(in the pipeline's normalised latent space, i.e. after `(z - shift) * scale` for Flux and
`(z - mean) / std` for Qwen-Image) to RGB in [-1, 1]. The factors are each family's registry entry's preview factors (inference/families/latents.py
says where they come from).

A latent with another channel count (a model we have no fit for) is previewed as the grey mean of
its channels, so a preview always appears.
"""

from __future__ import annotations

import numpy as np

from inference.families import FAMILIES


def unpack_latents(pipeline, family: str, latents, height: int, width: int):
    """(B, C, h, w) latents from what `callback_on_step_end` receives."""
    if not FAMILIES.get(family).latent.packed:  # InstructPix2Pix: SD 1.5 latents as they are
        return latents
    unpacked = pipeline._unpack_latents(latents, height, width, pipeline.vae_scale_factor)
    if unpacked.ndim == 5:  # Qwen-Image: (B, C, frames=1, h, w)
        unpacked = unpacked[:, :, 0]
    return unpacked


def latents_to_rgb(latents: np.ndarray, family: str) -> np.ndarray:
    """HxWx3 uint8 from one (C, h, w) float latent."""
    entry = FAMILIES.find(family)
    factors, bias = (entry.preview.rgb, entry.preview.bias) if entry and entry.preview else ((), ())
    channels = latents.shape[0]
    if len(factors) == channels:
        rgb = np.einsum("chw,cr->hwr", latents, np.asarray(factors, dtype=np.float32))
        rgb = rgb + np.asarray(bias, dtype=np.float32)
    else:
        grey = latents.mean(axis=0)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    return np.clip(np.rint((rgb + 1.0) * 127.5), 0, 255).astype(np.uint8)


def preview_image(pipeline, family: str, latents, height: int, width: int) -> np.ndarray:
    """The first batch item of the step's latents as a small RGB picture (latent resolution)."""
    unpacked = unpack_latents(pipeline, family, latents, height, width)
    first = unpacked[0].detach().float().cpu().numpy()
    return latents_to_rgb(first, family)
