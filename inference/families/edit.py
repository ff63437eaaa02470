"""The instruction-edit families run by inference/edit with their diffusers pipelines as they are.

They load from diffusers folders only (the pipelines need every component's config), and run the
`edit` mode only. Their latent formats are what the step previews unpack and project.
"""

from __future__ import annotations

from inference.families.entry import Defaults, Family, LoadSpec, PromptEncoding, Supports, TextEncoder
from inference.families.latents import (
    FLUX_LATENTS,
    FLUX_PREVIEW,
    QWEN_IMAGE_LATENTS,
    QWEN_IMAGE_PREVIEW,
    SD15_LATENTS,
    SD15_PREVIEW,
)

EDIT_SUPPORTS = Supports(modes=("edit",), inpaint="pipeline", true_cfg=True)  # Kontext and Qwen edit
QWEN_VL = TextEncoder("text_encoder", "tokenizer", "qwen2.5-vl", max_tokens=1024)

IP2P = Family(
    name="ip2p",
    label="InstructPix2Pix",
    kind="edit",
    loop="edit",
    load=LoadSpec(formats=("diffusers_folder",), components=("unet", "vae", "text_encoder", "tokenizer", "scheduler")),
    prompts=PromptEncoding(encoders=(TextEncoder("text_encoder", "tokenizer", "clip-l"),), style="pipeline"),
    latent=SD15_LATENTS,
    preview=SD15_PREVIEW,
    defaults=Defaults(steps=20, sampler="Euler a", cfg=7.5, width=512, height=512),
    supports=Supports(modes=("edit",), inpaint="pipeline", image_guidance=True),  # no true CFG
    diffusers_pipelines=("StableDiffusionInstructPix2PixPipeline",),
    native_area=512 * 512,
)

FLUX_KONTEXT = Family(
    name="flux-kontext",
    label="FLUX.1 Kontext",
    kind="edit",
    loop="edit",
    load=LoadSpec(
        formats=("diffusers_folder",),
        components=("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
    ),
    prompts=PromptEncoding(
        encoders=(
            TextEncoder("text_encoder", "tokenizer", "clip-l"),
            TextEncoder("text_encoder_2", "tokenizer_2", "t5-xxl", max_tokens=512),
        ),
        style="pipeline",
        pooled_from="text_encoder",
    ),
    latent=FLUX_LATENTS,
    preview=FLUX_PREVIEW,
    defaults=Defaults(steps=28, sampler="FlowMatchEuler", guidance=2.5, width=1024, height=1024),
    supports=EDIT_SUPPORTS,
    diffusers_pipelines=("FluxKontextPipeline",),
    native_area=1024 * 1024,
)

QWEN_EDIT = Family(
    name="qwen-edit",
    label="Qwen-Image-Edit",
    kind="edit",
    loop="edit",
    load=LoadSpec(
        formats=("diffusers_folder",),
        components=("transformer", "vae", "text_encoder", "tokenizer", "processor", "scheduler"),
    ),
    prompts=PromptEncoding(encoders=(QWEN_VL,), style="pipeline"),
    latent=QWEN_IMAGE_LATENTS,
    preview=QWEN_IMAGE_PREVIEW,
    defaults=Defaults(steps=50, sampler="FlowMatchEuler", cfg=4.0, width=1024, height=1024),
    supports=EDIT_SUPPORTS,
    diffusers_pipelines=("QwenImageEditPipeline",),
    native_area=1024 * 1024,
)

QWEN_EDIT_PLUS = Family(
    name="qwen-edit-plus",
    label="Qwen-Image-Edit-Plus",
    kind="edit",
    loop="edit",
    load=QWEN_EDIT.load,
    prompts=QWEN_EDIT.prompts,
    latent=QWEN_IMAGE_LATENTS,
    preview=QWEN_IMAGE_PREVIEW,
    defaults=QWEN_EDIT.defaults,
    supports=EDIT_SUPPORTS,
    diffusers_pipelines=("QwenImageEditPlusPipeline",),
    native_area=1024 * 1024,
)

EDIT_FAMILY_ENTRIES = (IP2P, FLUX_KONTEXT, QWEN_EDIT, QWEN_EDIT_PLUS)
