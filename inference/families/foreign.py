"""Families Collagen recognises but does not run (yet): files of them are refused in one sentence.

When one of these gets a registry entry, its line here goes: the entry's detector then claims the
file before the refusal is looked for.
"""

from __future__ import annotations

from inference.families.entry import Shapes
from inference.families.flux import flux_transformer
from inference.families.sd import SDXL_CLIP_G_PREFIX, UNET_PREFIX, has_prefix

# diffusers pipeline classes (model_index.json _class_name) of families without an entry
UNSUPPORTED_PIPELINES = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3",
    "StableCascadePriorPipeline": "Stable Cascade",
    "PixArtAlphaPipeline": "PixArt",
    "PixArtSigmaPipeline": "PixArt",
    "KolorsPipeline": "Kolors",
    "HunyuanDiTPipeline": "Hunyuan-DiT",
    "QwenImagePipeline": "Qwen-Image (generation, not edit)",
}


def foreign_checkpoint(shapes: Shapes) -> str | None:
    """What a single file of a family without an entry looks like, or None."""
    for prefix in ("", UNET_PREFIX):
        if prefix + "joint_blocks.0.context_block.adaLN_modulation.1.bias" in shapes:
            return "Stable Diffusion 3"
    if "edm_mean" in shapes:
        return "Playground v2.5"
    if flux_transformer(shapes) is not None:
        return None  # FLUX.1: its entries claim it, or explain_flux_refusal says which variant it is
    if has_prefix(shapes, UNET_PREFIX + "transformer_blocks.") or has_prefix(shapes, UNET_PREFIX + "patchify_proj"):
        return "a DiT video/image transformer"
    attn2 = shapes.get(UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight") or shapes.get(
        UNET_PREFIX + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
    )
    if attn2 is not None and not has_prefix(shapes, SDXL_CLIP_G_PREFIX) and int(attn2[-1]) == 1024:
        return "Stable Diffusion 2.x"
    if "clip_txt_mapper.weight" in shapes or "down_blocks.1.0.channelwise.0.weight" in shapes:
        return "Stable Cascade"
    return None
