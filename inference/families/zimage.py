"""Z-Image (Turbo), run by inference/flow with its own context (inference/flow/zimage.py).

A 6B single-stream DiT: image tokens (2x2 patches of FLUX.1's 16-channel latents) and the Qwen3-4B
caption features run through noise and context refiners, then one unified sequence of layers.
Turbo is distilled: 8 steps without CFG (guidance 0), the scheduler's fixed shift of 3, 1024².
Inpainting is diffusers' ZImageInpaintPipeline's: latent blending, the unmasked latents held to the
original re-noised to the next step.
"""

from __future__ import annotations

from inference.families.entry import (
    Defaults,
    Detected,
    Family,
    LoadSpec,
    PromptEncoding,
    Shapes,
    Supports,
    TextEncoder,
)
from inference.families.latents import FLUX_LATENTS, FLUX_PREVIEW

ZIMAGE_MODES = ("generate", "inpaint")
# The original layout (ComfyUI diffusion_models/, bare or in an all-in-one file) and diffusers' (as
# diffusers' single-file detection reads them): the main layers' adaLN and the noise refiner.
ZIMAGE_PREFIXES = ("", "model.diffusion_model.", "transformer.")


def detect_zimage(shapes: Shapes) -> Detected | None:
    for prefix in ZIMAGE_PREFIXES:
        if prefix + "layers.0.adaLN_modulation.0.weight" in shapes and \
                any(key.startswith(prefix + "noise_refiner.") for key in shapes):
            return Detected("zimage")
    return None


ZIMAGE = Family(
    name="zimage",
    label="Z-Image",
    kind="flow",
    loop="flow",
    load=LoadSpec(
        formats=("split_files",),
        components=("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    ),
    prompts=PromptEncoding(
        encoders=(TextEncoder("text_encoder", "tokenizer", "qwen3", max_tokens=512),),
        style="pipeline",
    ),
    latent=FLUX_LATENTS,  # the FLUX.1 VAE
    preview=FLUX_PREVIEW,
    # `guidance` is the pipeline's guidance_scale (CFG; 0 = off); `cfg` does not apply.
    defaults=Defaults(steps=8, sampler="Euler", guidance=0.0, width=1024, height=1024),
    supports=Supports(modes=ZIMAGE_MODES, region_methods=(), lora=False, inpaint="blend", planned=("regions",)),
    detect_checkpoint=detect_zimage,
    native_area=1024 * 1024,
)

ZIMAGE_FAMILY_ENTRIES = (ZIMAGE,)
