"""The UNet families run by inference/sd: Stable Diffusion 1.5 and SDXL (and their inpaint checkpoints).

A single file is recognised by the original (LDM / sgm) key layout: the UNet under
`model.diffusion_model.` with 4 input channels (9 for an inpaint checkpoint), and the text encoders
that tell the two apart (CLIP-L alone for SD1.5, CLIP-L and OpenCLIP bigG for SDXL). Files with a
UNet that neither entry accepts get one sentence saying what they look like (`explain_unet_refusal`).
"""

from __future__ import annotations

import json
from pathlib import Path

from inference.api import SAMPLERS, UnsupportedModelError
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
from inference.families.latents import SD15_LATENTS, SD15_PREVIEW, SDXL_LATENTS, SDXL_PREVIEW

# Single-file key prefixes of the original (LDM / sgm) layout.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."
UNET_INPUT_CHANNELS = (4, 9)  # plain, inpaint (latents + mask + masked-image latents)

SD_MODES = ("generate", "inpaint", "regions", "composite", "refine")
SD_REGION_METHODS = ("attention", "latent")


def has_prefix(shapes: Shapes, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in shapes)


def unet_input_channels(shapes: Shapes) -> int | None:
    shape = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    return int(shape[1]) if shape is not None and len(shape) == 4 else None


def detect_sd15(shapes: Shapes) -> Detected | None:
    channels = unet_input_channels(shapes)
    if channels not in UNET_INPUT_CHANNELS or not has_prefix(shapes, SD15_CLIP_PREFIX):
        return None
    if any(has_prefix(shapes, prefix) for prefix in (SDXL_CLIP_G_PREFIX, "conditioner.embedders.0.model.",
                                                      "cond_stage_model.model.")):
        return None  # SDXL (or its refiner) or SD 2.x, whatever else the file holds
    return Detected("sd15", inpaint=channels == 9)


def detect_sdxl(shapes: Shapes) -> Detected | None:
    channels = unet_input_channels(shapes)
    if channels not in UNET_INPUT_CHANNELS:
        return None
    if not (has_prefix(shapes, SDXL_CLIP_G_PREFIX) and has_prefix(shapes, SDXL_CLIP_L_PREFIX)):
        return None
    return Detected("sdxl", inpaint=channels == 9)


def explain_unet_refusal(shapes: Shapes) -> str | None:
    """What an original-layout UNet checkpoint that no entry took looks like (None: it has no such UNet)."""
    if not has_prefix(shapes, UNET_PREFIX + "input_blocks."):
        return None
    channels = unet_input_channels(shapes)
    if channels not in UNET_INPUT_CHANNELS:
        if channels == 8:
            return "InstructPix2Pix (8 input channels; use its diffusers folder)"
        return f"a UNet with {channels} input channels"
    if has_prefix(shapes, SDXL_CLIP_G_PREFIX) or has_prefix(shapes, "conditioner.embedders.0.model."):
        return "an SDXL refiner"
    if has_prefix(shapes, "cond_stage_model.model."):
        return "Stable Diffusion 2.x"
    return "a UNet without its text encoder, which cannot run alone"


def check_sd15_folder(folder: Path) -> None:
    if _json_value(folder / "unet" / "config.json", "cross_attention_dim") == 1024:
        raise UnsupportedModelError(f"{folder}: unsupported model family (looks like Stable Diffusion 2.x).")


def check_sdxl_folder(folder: Path) -> None:
    if not (folder / "text_encoder").is_dir():
        raise UnsupportedModelError(f"{folder}: unsupported model family (looks like an SDXL refiner).")


def _json_value(path: Path, key: str):
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SD_PREFIXES = {"unet": UNET_PREFIX, "vae": VAE_PREFIX}
SD_SUPPORTS = Supports(modes=SD_MODES, region_methods=SD_REGION_METHODS, lora=True, samplers=SAMPLERS,
                       inpaint="blend+9-channel")

SD15 = Family(
    name="sd15",
    label="Stable Diffusion 1.5",
    kind="unet",
    loop="sd",
    load=LoadSpec(
        formats=("single_file", "diffusers_folder"),
        components=SD_COMPONENTS,
        config_folder="sd15",
        checkpoint_prefixes=SD_PREFIXES,
    ),
    prompts=PromptEncoding(
        encoders=(TextEncoder("text_encoder", "tokenizer", "clip-l", SD15_CLIP_PREFIX),),
    ),
    latent=SD15_LATENTS,
    preview=SD15_PREVIEW,
    defaults=Defaults(steps=20, sampler="Euler a", cfg=7.0, width=512, height=512),
    supports=SD_SUPPORTS,
    detect_checkpoint=detect_sd15,
    diffusers_pipelines=(
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
    ),
    check_diffusers_folder=check_sd15_folder,
    native_area=512 * 512,
)

SDXL = Family(
    name="sdxl",
    label="Stable Diffusion XL",
    kind="unet",
    loop="sd",
    load=LoadSpec(
        formats=("single_file", "diffusers_folder"),
        components=(*SD_COMPONENTS, "text_encoder_2", "tokenizer_2"),
        config_folder="sdxl",
        checkpoint_prefixes=SD_PREFIXES,
    ),
    prompts=PromptEncoding(
        encoders=(
            TextEncoder("text_encoder", "tokenizer", "clip-l", SDXL_CLIP_L_PREFIX),
            TextEncoder("text_encoder_2", "tokenizer_2", "openclip-bigg", SDXL_CLIP_G_PREFIX, with_projection=True),
        ),
        pooled_from="text_encoder_2",
    ),
    latent=SDXL_LATENTS,
    preview=SDXL_PREVIEW,
    defaults=Defaults(steps=20, sampler="Euler a", cfg=7.0, width=1024, height=1024),
    supports=SD_SUPPORTS,
    detect_checkpoint=detect_sdxl,
    diffusers_pipelines=(
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    ),
    check_diffusers_folder=check_sdxl_folder,
    native_area=1024 * 1024,
)
