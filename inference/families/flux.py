"""The FLUX.1 families run by inference/flow: dev, schnell and Fill (Kontext is an edit family).

A file is recognised by its transformer's tensors: the Black Forest Labs layout
(`double_blocks.N.img_attn.norm.key_norm.scale`, bare as in ComfyUI's diffusion_models/ or under
`model.diffusion_model.` in an all-in-one file) or diffusers' (`transformer_blocks.N.attn.norm_added_k`).
schnell has no guidance embedder; Fill takes 384 input features per packed token (64 latent +
64 masked-image latent + 256 mask) instead of 64. Kontext has dev's tensors exactly, so a single
file is dev here; Kontext runs from its diffusers folder (inference/families/edit.py).
"""

from __future__ import annotations

import json
from pathlib import Path

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

BFL_PREFIXES = ("", "model.diffusion_model.")  # ComfyUI diffusion_models/ file, all-in-one checkpoint
DIFFUSERS_PREFIXES = ("", "transformer.", "model.diffusion_model.")
FLUX_INPUT_WIDTHS = {64: "", 384: "fill"}  # packed 2x2 patches of 16 channels (+ Fill's conditions)
FLUX_MODES = ("generate", "inpaint", "regions", "composite", "refine")
FLUX_REGION_METHODS = ("attention", "latent")


def flux_transformer(shapes: Shapes) -> tuple[int, bool] | None:
    """(input width, has a guidance embedder) of a FLUX.1 transformer in these tensors, or None.

    FLUX.2 (`double_stream_modulation`) and Chroma (`distilled_guidance_layer`) share block names
    but not the architecture.
    """
    if any("double_stream_modulation" in key or "distilled_guidance_layer" in key for key in shapes):
        return None
    for prefix in BFL_PREFIXES:
        if prefix + "double_blocks.0.img_attn.norm.key_norm.scale" in shapes:
            image_in = shapes.get(prefix + "img_in.weight")
            guidance = prefix + "guidance_in.in_layer.weight" in shapes
            return (int(image_in[-1]), guidance) if image_in is not None and len(image_in) == 2 else None
    for prefix in DIFFUSERS_PREFIXES:
        if prefix + "transformer_blocks.0.attn.norm_added_k.weight" in shapes:
            image_in = shapes.get(prefix + "x_embedder.weight")
            guidance = prefix + "time_text_embed.guidance_embedder.linear_1.weight" in shapes
            return (int(image_in[-1]), guidance) if image_in is not None and len(image_in) == 2 else None
    return None


def detect_flux_family(shapes: Shapes) -> str | None:
    """flux-dev | flux-schnell | flux-fill, or None (another family, or a FLUX width we cannot run)."""
    found = flux_transformer(shapes)
    if found is None or found[0] not in FLUX_INPUT_WIDTHS:
        return None
    width, guidance = found
    if FLUX_INPUT_WIDTHS[width] == "fill":
        return "flux-fill"
    return "flux-dev" if guidance else "flux-schnell"


def _detector(family: str):
    def detect(shapes: Shapes) -> Detected | None:
        return Detected(family, inpaint=family == "flux-fill") if detect_flux_family(shapes) == family else None

    return detect


def explain_flux_refusal(shapes: Shapes) -> str | None:
    """What a FLUX-shaped transformer no entry took looks like (Depth, other widths), or None."""
    found = flux_transformer(shapes)
    if found is None or found[0] in FLUX_INPUT_WIDTHS:
        return None
    if found[0] == 128:
        return "FLUX.1 Depth (128 input features; not supported)"
    return f"a FLUX transformer with {found[0]} input features"


def flux_folder_family(folder: Path) -> str:
    """flux-dev | flux-schnell | flux-fill of a diffusers folder, from its transformer's config."""
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    if config.get("in_channels") == 384:
        return "flux-fill"
    return "flux-dev" if config.get("guidance_embeds", True) else "flux-schnell"


FLUX_LOAD = LoadSpec(
    formats=("split_files", "single_file", "diffusers_folder"),
    components=("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
    checkpoint_prefixes={"transformer": "model.diffusion_model."},
)
FLUX_PROMPTS = PromptEncoding(
    encoders=(
        TextEncoder("text_encoder", "tokenizer", "clip-l", "text_encoders.clip_l.transformer."),
        TextEncoder("text_encoder_2", "tokenizer_2", "t5-xxl", "text_encoders.t5xxl.transformer.", max_tokens=512),
    ),
    style="t5-clip",
    pooled_from="text_encoder",
)


def flux_family(name: str, label: str, defaults: Defaults, inpaint, pipelines: tuple[str, ...]) -> Family:
    return Family(
        name=name,
        label=label,
        kind="flow",
        loop="flow",
        load=LoadSpec(
            formats=FLUX_LOAD.formats,
            components=FLUX_LOAD.components,
            config_folder=name,
            checkpoint_prefixes=FLUX_LOAD.checkpoint_prefixes,
        ),
        prompts=FLUX_PROMPTS,
        latent=FLUX_LATENTS,
        preview=FLUX_PREVIEW,
        defaults=defaults,
        supports=Supports(modes=FLUX_MODES, region_methods=FLUX_REGION_METHODS, lora=True, inpaint=inpaint,
                          true_cfg=True),  # with a negative prompt (inference/flow/run.py)
        detect_checkpoint=_detector(name),
        diffusers_pipelines=pipelines,
        diffusers_variant=flux_folder_family,
        native_area=1024 * 1024,
    )


# FluxPipeline folders of dev and schnell differ only in the transformer config (guidance_embeds):
# the dev entry lists the pipeline and flux_folder_family tells the two apart.
FLUX_DEV = flux_family(
    "flux-dev", "FLUX.1 dev",
    Defaults(steps=28, sampler="FlowMatchEuler", guidance=3.5, width=1024, height=1024), "blend", ("FluxPipeline",),
)
FLUX_SCHNELL = flux_family(
    "flux-schnell", "FLUX.1 schnell",
    Defaults(steps=4, sampler="FlowMatchEuler", width=1024, height=1024), "blend", (),
)
FLUX_FILL = flux_family(
    "flux-fill", "FLUX.1 Fill",
    Defaults(steps=50, sampler="FlowMatchEuler", guidance=30.0, width=1024, height=1024), "fill-model", ("FluxFillPipeline",),
)

FLUX_FAMILY_ENTRIES = (FLUX_DEV, FLUX_SCHNELL, FLUX_FILL)
