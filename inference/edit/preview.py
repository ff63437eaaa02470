"""Step previews for the edit pipelines: latents -> RGB with a linear projection, no VAE decode.

Flux and Qwen-Image pipelines keep their latents packed as 2x2 patches (B, tokens, C*4); they are
unpacked with the pipeline's own `_unpack_latents` first. The projections map the latent channels
(in the pipeline's normalised latent space, i.e. after `(z - shift) * scale` for Flux and
`(z - mean) / std` for Qwen-Image) to RGB in [-1, 1]:

- SD 1.5 (InstructPix2Pix): the factors in SPEC §5.
- FLUX.1 (16 channels): ComfyUI `comfy/latent_formats.py`, class `Flux` (latent_rgb_factors and
  latent_rgb_factors_bias), fitted on the FLUX.1 VAE.
- Qwen-Image (16 channels): Qwen-Image uses the Wan 2.1 VAE (same latents_mean/latents_std), so
  ComfyUI's `Wan21` latent format factors apply.

A latent with another channel count (a model we have no fit for) is previewed as the grey mean of
its channels, so a preview always appears.
"""

from __future__ import annotations

import numpy as np

from inference.edit.model import FAMILY_IP2P, FAMILY_KONTEXT, FAMILY_QWEN_EDIT, FAMILY_QWEN_EDIT_PLUS

SD15_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SD15_RGB_BIAS = (0.0, 0.0, 0.0)

FLUX_RGB_FACTORS = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX_RGB_BIAS = (-0.0329, -0.0718, -0.0851)

QWEN_IMAGE_RGB_FACTORS = (  # Wan 2.1 VAE
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
QWEN_IMAGE_RGB_BIAS = (-0.1835, -0.0868, -0.3360)

RGB_PROJECTIONS = {
    FAMILY_IP2P: (SD15_RGB_FACTORS, SD15_RGB_BIAS),
    FAMILY_KONTEXT: (FLUX_RGB_FACTORS, FLUX_RGB_BIAS),
    FAMILY_QWEN_EDIT: (QWEN_IMAGE_RGB_FACTORS, QWEN_IMAGE_RGB_BIAS),
    FAMILY_QWEN_EDIT_PLUS: (QWEN_IMAGE_RGB_FACTORS, QWEN_IMAGE_RGB_BIAS),
}


def unpack_latents(pipeline, family: str, latents, height: int, width: int):
    """(B, C, h, w) latents from what `callback_on_step_end` receives."""
    if family == FAMILY_IP2P:
        return latents
    unpacked = pipeline._unpack_latents(latents, height, width, pipeline.vae_scale_factor)
    if unpacked.ndim == 5:  # Qwen-Image: (B, C, frames=1, h, w)
        unpacked = unpacked[:, :, 0]
    return unpacked


def latents_to_rgb(latents: np.ndarray, family: str) -> np.ndarray:
    """HxWx3 uint8 from one (C, h, w) float latent."""
    factors, bias = RGB_PROJECTIONS.get(family, ((), ()))
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
