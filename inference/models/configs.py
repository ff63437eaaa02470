"""The configuration files Collagen ships (resources/): model config folders and the CLIP tokenizer.

Single files have no configs of their own, and loading never reaches a hub, so every architecture
and tokenizer comes from here or from a diffusers folder's own files.
"""

from __future__ import annotations

import json
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from inference.api import ModelError


def bundled_config_root() -> Path:
    return Path(str(importlib_resources.files("resources") / "configs"))


def shipped_tokenizer_folder() -> Path:
    return Path(str(importlib_resources.files("resources") / "tokenizer"))


def config_folder_for(family: str, inpaint: bool, config_root: Path | None = None) -> Path:
    folder = (config_root or bundled_config_root()) / (family + ("-inpaint" if inpaint else ""))
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"{folder}: the bundled model configuration is missing (broken installation).")
    return folder


def load_clip_tokenizer(tokenizer_config_folder: Path | None = None):
    """The CLIP tokenizer from the shipped BPE files; a config folder's tokenizer_config.json sets padding."""
    from transformers import CLIPTokenizer

    options: dict[str, Any] = {"model_max_length": 77}
    if tokenizer_config_folder is not None and (tokenizer_config_folder / "tokenizer_config.json").is_file():
        config = json.loads((tokenizer_config_folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        options.update({k: config[k] for k in ("pad_token", "model_max_length") if k in config})
    return CLIPTokenizer.from_pretrained(str(shipped_tokenizer_folder()), local_files_only=True, **options)


def read_scheduler_config(folder: Path) -> dict:
    path = folder / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: the scheduler configuration cannot be read ({error}).") from error


def weights_variant(folder: Path) -> str | None:
    """None when plain weights exist, else the variant (fp16, ...) that does: many folders ship only fp16."""
    names = [path.name for path in folder.glob("*")] if folder.is_dir() else []
    plain = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
             "pytorch_model.bin", "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")
    if any(name in names for name in plain):
        return None
    for name in names:
        parts = name.split(".")
        if len(parts) >= 3 and parts[-1] in ("safetensors", "bin") and parts[0] in ("diffusion_pytorch_model", "model"):
            return parts[-2]
    return None
