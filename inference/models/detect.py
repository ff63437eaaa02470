"""What a file is, from tensor names and shapes (a safetensors header, no weights) or model_index.json.

Which family a checkpoint or diffusers folder belongs to is the registry's answer (each entry's
detector, inference.families); this module adds what discovery needs around it: which kind of
file a weights file is (checkpoint, LoRA, VAE, embedding) and which family a LoRA or embedding fits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.api import ModelError, UnsupportedModelError
from inference.bounded_read import read_json
from inference.families import FAMILIES, FamilyRegistry
from inference.families.foreign import foreign_checkpoint
from inference.families.sd import UNET_PREFIX

CLIP_WIDTHS = (768, 1024, 1280)  # token embedding widths of CLIP-L, OpenCLIP-H, OpenCLIP-bigG


@dataclass(frozen=True)
class CheckpointKind:
    family: str  # a registry entry's name: sd15 | sdxl | ...
    inpaint: bool


def detect_checkpoint_family(
    path: str | os.PathLike, shapes: Mapping[str, Sequence[int]], families: FamilyRegistry = FAMILIES
) -> CheckpointKind:
    """The family of a single file (and whether it is an inpaint variant); anything else is refused."""
    detected = families.detect_checkpoint(path, shapes, _not_a_checkpoint)
    return CheckpointKind(detected.family, inpaint=detected.inpaint)


def _not_a_checkpoint(shapes: Mapping[str, Sequence[int]]) -> str:
    kind = classify_weights(shapes)
    return {
        "lora": "a LoRA; put it in a Lora/loras folder",
        "vae": "a VAE; put it in a VAE folder",
        "embedding": "a textual-inversion embedding; put it in an embeddings folder",
    }.get(kind or "", "a diffusers-format component" if _has_prefix(shapes, "down_blocks.") else "an unknown network")


def classify_weights(shapes: Mapping[str, Sequence[int]], families: FamilyRegistry = FAMILIES) -> str | None:
    """checkpoint | lora | vae | embedding | None, from tensor names (a flat folder holds all of them)."""
    keys = list(shapes.keys())
    if any(key.startswith(UNET_PREFIX) for key in keys) or foreign_checkpoint(shapes):
        return "checkpoint"  # possibly of an unsupported family: detection then says which
    if families.claim_checkpoint(shapes) is not None:
        return "checkpoint"
    if any(".lora_down." in key or ".lora_up." in key or "lora_A" in key or ".hada_w1" in key for key in keys):
        return "lora"
    if any(key.startswith(("lora_unet_", "lora_te")) for key in keys):
        return "lora"
    if "encoder.conv_in.weight" in shapes and "decoder.conv_in.weight" in shapes:
        return "vae"
    if "emb_params" in shapes or "clip_l" in shapes or "clip_g" in shapes or "string_to_param.*" in shapes:
        return "embedding"
    if len(keys) == 1 and len(shapes[keys[0]]) in (1, 2) and int(shapes[keys[0]][-1]) in CLIP_WIDTHS:
        return "embedding"  # diffusers learned_embeds: {"<token>": [n, dim]}
    return None


def _has_prefix(shapes: Mapping[str, Sequence[int]], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in shapes)


def lora_family(shapes: Mapping[str, Sequence[int]]) -> str:
    """sd15 | sdxl | "" — kohya names SDXL's two text encoders te1/te2 and its UNet blocks input_blocks_*."""
    keys = shapes.keys()
    if any(key.startswith(("lora_te1_", "lora_te2_")) for key in keys):
        return "sdxl"
    for key, shape in shapes.items():
        if "attn2_to_k" in key and "lora_down" in key and len(shape) == 2:
            return {768: "sd15", 2048: "sdxl"}.get(int(shape[1]), "")
    return ""


def embedding_family(shapes: Mapping[str, Sequence[int]]) -> str:
    if "clip_g" in shapes:
        return "sdxl"
    for shape in shapes.values():
        if shape and int(shape[-1]) == 768:
            return "sd15"
    return ""


def diffusers_folder_family(folder: Path, families: FamilyRegistry = FAMILIES) -> tuple[str, str]:
    """(family, kind) of a diffusers folder from model_index.json; unsupported ones are refused."""
    index = read_json(folder / "model_index.json", what="model_index.json")  # capped: a 3 GiB one costs nothing
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if isinstance(class_name, list):  # diffusers' custom-pipeline form: ["my_module", "MyPipeline"]
        named = ".".join(str(part) for part in class_name if isinstance(part, str)) or "unnamed"
        raise UnsupportedModelError(
            f"{folder}: a custom pipeline ({named}), whose code would have to be run; Collagen runs only the "
            "pipelines it knows."
        )
    if not isinstance(class_name, str):
        raise ModelError(f"{folder}: its model_index.json does not name a pipeline (no _class_name).")
    entry = families.detect_diffusers_folder(folder, class_name)
    return entry.name, "edit" if entry.loop == "edit" else "diffusers"


def json_value(path: Path, key: str) -> Any:
    """One key of a JSON config, or None when the file is missing, too large, not JSON or not an object."""
    try:
        document = read_json(path)
    except ModelError:
        return None
    return document.get(key) if isinstance(document, dict) else None
