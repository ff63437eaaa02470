"""Latent formats and linear preview factors that several families share.

- SD 1.5 / SDXL: the factors in SPEC §5 (SDXL with a bias).
- FLUX.1 (16 channels, also Kontext): ComfyUI `comfy/latent_formats.py`, class `Flux`
  (latent_rgb_factors and latent_rgb_factors_bias), fitted on the FLUX.1 VAE.
- Qwen-Image (16 channels): Qwen-Image uses the Wan 2.1 VAE (same latents_mean/latents_std), so
  ComfyUI's `Wan21` latent format factors apply.

Every projection maps latent channels, in the space the denoiser works in, to RGB in [-1, 1].
"""

from __future__ import annotations

from inference.families.entry import LatentFormat, PreviewFactors

SD15_LATENTS = LatentFormat(channels=4, scaling_factor=0.18215)
SDXL_LATENTS = LatentFormat(channels=4, scaling_factor=0.13025)
FLUX_LATENTS = LatentFormat(channels=16, scaling_factor=0.3611, shift_factor=0.1159, packed=True)
# Qwen-Image normalises per channel with the Wan 2.1 VAE's latents_mean/latents_std instead.
QWEN_IMAGE_LATENTS = LatentFormat(channels=16, scaling_factor=1.0, packed=True)

SD15_PREVIEW = PreviewFactors(
    rgb=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
)
SDXL_PREVIEW = PreviewFactors(
    rgb=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    bias=(0.1084, -0.0175, -0.0011),
)
FLUX_PREVIEW = PreviewFactors(
    rgb=(
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
    ),
    bias=(-0.0329, -0.0718, -0.0851),
)
QWEN_IMAGE_PREVIEW = PreviewFactors(  # Wan 2.1 VAE
    rgb=(
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
    ),
    bias=(-0.1835, -0.0868, -0.3360),
)
