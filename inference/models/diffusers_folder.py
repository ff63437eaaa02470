"""diffusers-format folders of the UNet families (SD1.5/SDXL), loaded from their local files only (no hub, ever)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.families import FAMILIES, FamilyRegistry
from inference.models.configs import load_clip_tokenizer, read_scheduler_config, weights_variant


def load_diffusers_folder(
    folder: Path, family: str, *, device: str, dtype, load_vae: bool = True, families: FamilyRegistry = FAMILIES
) -> dict[str, Any]:
    """The components of a diffusers-format folder of a UNet family, from local files only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    def pretrained(cls, subfolder: str):
        variant = weights_variant(folder / subfolder)
        model = cls.from_pretrained(
            str(folder), subfolder=subfolder, local_files_only=True, dtype=dtype, variant=variant
        )
        return model.to(device)

    components: dict[str, Any] = {"scheduler_config": read_scheduler_config(folder)}
    components["unet"] = pretrained(UNet2DConditionModel, "unet")
    for encoder in families.get(family).prompts.encoders:
        cls = CLIPTextModelWithProjection if encoder.with_projection else CLIPTextModel
        components[encoder.component] = pretrained(cls, encoder.component)
        components[encoder.tokenizer] = folder_tokenizer(folder / encoder.tokenizer)
    if load_vae:
        components["vae"] = pretrained(AutoencoderKL, "vae")
    return components


def folder_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    return load_clip_tokenizer(folder)  # config only: use the shipped vocabulary
