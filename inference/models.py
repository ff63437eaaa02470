"""Local models: where they are, what they are, and loading them offline.

Discovery (SPEC §6) looks in the folders given on the command line, `COLLAGEN_MODELS`, the settings
file and the default folder, understands the A1111 and ComfyUI layouts (and a flat folder, and
ComfyUI's extra_model_paths.yaml), and tells a model's family from the safetensors header alone:
no weights are read until a model is loaded. Loading never reaches a hub: single files load with
the config folders shipped in resources/configs, diffusers folders with local_files_only=True.

torch and diffusers are imported inside the functions that need them, so the GUI can import this
module (to list models) before the model stack is loaded.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from inference.api import ModelError, ModelInfo, UnsupportedModelError
from inference.components import SDModel
from inference.safetensors_header import read_safetensors_header

APP_NAME = "Collagen"
ENV_MODELS = "COLLAGEN_MODELS"
SETTINGS_KEY_FOLDERS = "model_folders"
SETTINGS_KEY_EXTRA_PATHS = "extra_model_paths"  # ComfyUI extra_model_paths.yaml files to import
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
BUILTIN_MODELS = (
    ("builtin:tiny-sd15", "sd15", False),
    ("builtin:tiny-sdxl", "sdxl", False),
    ("builtin:tiny-sd15-inpaint", "sd15", True),
    ("builtin:tiny-sdxl-inpaint", "sdxl", True),
)
ASSET_KINDS = ("lora", "vae", "embedding", "taesd")
# Folders, relative to a root, that hold one kind of file: A1111 (models/Stable-diffusion, ...),
# ComfyUI (models/checkpoints, ...), and the same names when the root is the `models` folder itself.
LAYOUT_FOLDERS = {
    "checkpoint": ("Stable-diffusion", "checkpoints", "diffusion_models", "unet", "diffusers"),
    "lora": ("Lora", "loras", "LyCORIS"),
    "vae": ("VAE", "vae"),
    "embedding": ("embeddings",),
    "taesd": ("vae_approx", "VAE-approx"),
}
# ComfyUI extra_model_paths.yaml keys -> our kinds (other keys, e.g. controlnet, are not ours).
EXTRA_PATHS_KINDS = {
    "checkpoints": "checkpoint",
    "diffusion_models": "checkpoint",
    "unet": "checkpoint",
    "loras": "lora",
    "vae": "vae",
    "embeddings": "embedding",
    "vae_approx": "taesd",
}
# diffusers pipeline classes (model_index.json _class_name) -> (family, kind)
DIFFUSERS_PIPELINES = {
    "StableDiffusionPipeline": ("sd15", "diffusers"),
    "StableDiffusionImg2ImgPipeline": ("sd15", "diffusers"),
    "StableDiffusionInpaintPipeline": ("sd15", "diffusers"),
    "StableDiffusionXLPipeline": ("sdxl", "diffusers"),
    "StableDiffusionXLImg2ImgPipeline": ("sdxl", "diffusers"),
    "StableDiffusionXLInpaintPipeline": ("sdxl", "diffusers"),
    "StableDiffusionInstructPix2PixPipeline": ("ip2p", "edit"),
    "FluxKontextPipeline": ("flux-kontext", "edit"),
    "QwenImageEditPipeline": ("qwen-edit", "edit"),
    "QwenImageEditPlusPipeline": ("qwen-edit-plus", "edit"),
}
UNSUPPORTED_PIPELINES = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3",
    "FluxPipeline": "FLUX.1",
    "StableCascadePriorPipeline": "Stable Cascade",
    "PixArtAlphaPipeline": "PixArt",
    "PixArtSigmaPipeline": "PixArt",
    "KolorsPipeline": "Kolors",
    "HunyuanDiTPipeline": "Hunyuan-DiT",
    "QwenImagePipeline": "Qwen-Image (generation, not edit)",
}
CLIP_WIDTHS = (768, 1024, 1280)  # token embedding widths of CLIP-L, OpenCLIP-H, OpenCLIP-bigG
MAX_SCAN_DEPTH = 6  # folder levels below a kind folder (A1111 allows sub-folders of checkpoints)

# Single-file key prefixes of the original (LDM / sgm) layout.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."


# ---- where to look ---------------------------------------------------------------------------------------


@dataclass
class ModelFolders:
    """Where discovery looks: roots (layout auto-detected) and folders known to hold one kind."""

    roots: list[Path] = field(default_factory=list)
    typed: dict[str, list[Path]] = field(default_factory=dict)  # kind -> folders

    def add_typed(self, kind: str, folder: Path) -> None:
        folders = self.typed.setdefault(kind, [])
        if folder not in folders:
            folders.append(folder)


def default_settings_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME)) / "settings.json"


def default_models_folder() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def default_hash_cache_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "model_hashes.json"


_DEFAULT = object()


def find_model_folders(
    explicit: Iterable[str | os.PathLike] = (),
    *,
    environ: Mapping[str, str] | None = None,
    settings_file: Path | None | object = _DEFAULT,
    default_folder: Path | None | object = _DEFAULT,
) -> ModelFolders:
    """Model folders in priority order: explicit (--models), COLLAGEN_MODELS, settings, default.

    `settings_file=None` / `default_folder=None` leave those sources out (tests, --models only).
    Folders that do not exist are skipped; a broken settings file is an error naming it.
    """
    environ = os.environ if environ is None else environ
    folders = ModelFolders()
    candidates: list[Path] = [Path(p).expanduser() for p in explicit]
    candidates += [Path(p).expanduser() for p in environ.get(ENV_MODELS, "").split(os.pathsep) if p.strip()]
    settings_path = default_settings_file() if settings_file is _DEFAULT else settings_file
    yaml_files: list[Path] = []
    if settings_path is not None and Path(settings_path).is_file():
        settings = _read_settings(Path(settings_path))
        candidates += [Path(p).expanduser() for p in settings.get(SETTINGS_KEY_FOLDERS, [])]
        yaml_files += [Path(p).expanduser() for p in settings.get(SETTINGS_KEY_EXTRA_PATHS, [])]
    default_path = default_models_folder() if default_folder is _DEFAULT else default_folder
    if default_path is not None:
        candidates.append(Path(default_path))
    seen: set[Path] = set()
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved in seen or not resolved.is_dir():
            continue
        seen.add(resolved)
        folders.roots.append(resolved)
        # A ComfyUI install keeps its extra_model_paths.yaml at its root.
        if (resolved / "extra_model_paths.yaml").is_file():
            yaml_files.append(resolved / "extra_model_paths.yaml")
    for yaml_file in yaml_files:
        for kind, kind_folders in import_extra_model_paths(yaml_file).items():
            for folder in kind_folders:
                folders.add_typed(kind, folder)
    return folders


def _read_settings(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: the settings file cannot be read as JSON ({error}).") from error
    if not isinstance(settings, dict):
        raise ModelError(f"{path}: the settings file is not a JSON object.")
    for key in (SETTINGS_KEY_FOLDERS, SETTINGS_KEY_EXTRA_PATHS):
        value = settings.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ModelError(f"{path}: {key!r} must be a list of folder paths.")
    return settings


def import_extra_model_paths(yaml_file: str | os.PathLike) -> dict[str, list[Path]]:
    """Our kinds -> folders from a ComfyUI extra_model_paths.yaml (existing folders only).

    Each top-level section has an optional base_path (relative paths resolve against the yaml's
    folder, as ComfyUI does) and per-kind paths, several per kind separated by newlines.
    """
    import yaml

    yaml_file = Path(yaml_file)
    try:
        document = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ModelError(f"{yaml_file}: cannot be read as an extra_model_paths.yaml ({error}).") from error
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ModelError(f"{yaml_file}: an extra_model_paths.yaml must map section names to folders.")
    found: dict[str, list[Path]] = {}
    for section_name, section in document.items():
        if not isinstance(section, dict):
            raise ModelError(f"{yaml_file}: section {section_name!r} must map kinds to folders.")
        base = yaml_file.parent
        if section.get("base_path"):
            base = _resolve_against(base, str(section["base_path"]))
        for key, value in section.items():
            kind = EXTRA_PATHS_KINDS.get(str(key))
            if kind is None or value is None:
                continue
            for line in str(value).splitlines():
                if line.strip():
                    folder = _resolve_against(base, line.strip())
                    if folder.is_dir() and folder not in found.setdefault(kind, []):
                        found[kind].append(folder)
    return found


def _resolve_against(base: Path, text: str) -> Path:
    path = Path(os.path.expandvars(text)).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


# ---- what a file is --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointKind:
    family: str  # sd15 | sdxl
    inpaint: bool


def detect_checkpoint_family(path: str | os.PathLike, shapes: Mapping[str, Sequence[int]]) -> CheckpointKind:
    """SD1.5 / SDXL (and their inpaint variants) from tensor names and shapes; anything else is refused."""
    keys = shapes.keys()

    def has(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in keys)

    def first_conv_channels() -> int | None:
        shape = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
        return int(shape[1]) if shape is not None and len(shape) == 4 else None

    looks_like = _foreign_family(shapes, has)
    if looks_like:
        raise UnsupportedModelError(f"{path}: unsupported model family (looks like {looks_like}).")
    if not has(UNET_PREFIX + "input_blocks."):
        raise UnsupportedModelError(f"{path}: unsupported model family (looks like {_not_a_checkpoint(shapes, has)}).")
    channels = first_conv_channels()
    if channels not in (4, 9):
        what = "InstructPix2Pix (8 input channels; use its diffusers folder)" if channels == 8 else (
            f"a UNet with {channels} input channels"
        )
        raise UnsupportedModelError(f"{path}: unsupported model family (looks like {what}).")
    if has(SDXL_CLIP_G_PREFIX):
        if not has(SDXL_CLIP_L_PREFIX):
            raise UnsupportedModelError(f"{path}: unsupported model family (looks like an SDXL refiner).")
        return CheckpointKind("sdxl", inpaint=channels == 9)
    if has("conditioner.embedders.0.model."):
        raise UnsupportedModelError(f"{path}: unsupported model family (looks like an SDXL refiner).")
    if has("cond_stage_model.model."):
        raise UnsupportedModelError(f"{path}: unsupported model family (looks like Stable Diffusion 2.x).")
    if has(SD15_CLIP_PREFIX):
        return CheckpointKind("sd15", inpaint=channels == 9)
    raise UnsupportedModelError(
        f"{path}: unsupported model family (looks like a UNet without its text encoder, which cannot run alone)."
    )


def _foreign_family(shapes: Mapping[str, Sequence[int]], has) -> str | None:
    for prefix in ("", UNET_PREFIX):
        if prefix + "double_blocks.0.img_attn.norm.key_norm.scale" in shapes:
            return "FLUX"
        if prefix + "joint_blocks.0.context_block.adaLN_modulation.1.bias" in shapes:
            return "Stable Diffusion 3"
    if "edm_mean" in shapes:
        return "Playground v2.5"
    if has(UNET_PREFIX + "transformer_blocks.") or has(UNET_PREFIX + "patchify_proj"):
        return "a DiT video/image transformer"
    attn2 = shapes.get(UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight") or shapes.get(
        UNET_PREFIX + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
    )
    if attn2 is not None and not has(SDXL_CLIP_G_PREFIX) and int(attn2[-1]) == 1024:
        return "Stable Diffusion 2.x"
    if "clip_txt_mapper.weight" in shapes or "down_blocks.1.0.channelwise.0.weight" in shapes:
        return "Stable Cascade"
    return None


def _not_a_checkpoint(shapes: Mapping[str, Sequence[int]], has) -> str:
    kind = classify_weights(shapes)
    return {
        "lora": "a LoRA; put it in a Lora/loras folder",
        "vae": "a VAE; put it in a VAE folder",
        "embedding": "a textual-inversion embedding; put it in an embeddings folder",
    }.get(kind or "", "a diffusers-format component" if has("down_blocks.") else "an unknown network")


def classify_weights(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """checkpoint | lora | vae | embedding | None, from tensor names (a flat folder holds all of them)."""
    keys = list(shapes.keys())
    if any(key.startswith(UNET_PREFIX) for key in keys) or _foreign_family(shapes, _prefix_test(keys)):
        return "checkpoint"  # possibly of an unsupported family: detection then says which
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


def _prefix_test(keys: Iterable[str]):
    keys = list(keys)
    return lambda prefix: any(key.startswith(prefix) for key in keys)


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


def read_weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names -> shapes: the header of a .safetensors, or a weights-only (mmap) read of a pickle."""
    if path.suffix.lower() == ".safetensors":
        header = read_safetensors_header(path)
        return {name: info.shape for name, info in header.tensors.items()}
    state = load_pickled_weights(path)
    return {name: tuple(value.shape) for name, value in state.items()}


def load_pickled_weights(path: Path) -> dict[str, Any]:
    """A .ckpt/.pt/.pth/.bin read with weights_only=True (never a full unpickle); tensors only."""
    import torch

    mmap = zipfile.is_zipfile(path)  # mmap needs the zip container; old pickles are read whole
    loaded = load_weights_only(path, "a PyTorch weights file", mmap=mmap)
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelError(f"{path}: does not contain a dictionary of weights.")
    weights = {str(key): value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    for key, value in loaded.items():  # one level of nesting, e.g. A1111 embeddings' string_to_param
        if isinstance(value, dict):
            weights.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, torch.Tensor)})
    return weights


def load_weights_only(path: Path, what: str, *, mmap: bool = False) -> Any:
    """`torch.load(weights_only=True)`: a pickle that names any Python callable is refused, never run.

    Every failure is a ModelError naming the file: a refused object, or a damaged file (torch's
    restricted unpickler fails on damaged bytes with many exception types, none of them ours).
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:  # a forbidden object, or damaged pickle bytes
        raise ModelError(
            f"{path}: refused to load: it is not a plain weights pickle ({_last_line(error)}); Collagen never "
            "fully unpickles files (convert it to .safetensors)."
        ) from error
    except MemoryError as error:
        raise ModelError(f"{path}: not enough memory to read {what}.") from error
    except Exception as error:  # noqa: BLE001 - damaged bytes: IndexError, KeyError, struct.error, ...
        raise ModelError(f"{path}: cannot be read as {what} ({_first_line(error)}).") from error


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip() and not line.startswith("Check the")]
    line = lines[-1].strip() if lines else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def diffusers_folder_family(folder: Path) -> tuple[str, str]:
    """(family, kind) of a diffusers folder from model_index.json; unsupported ones are refused."""
    index_file = folder / "model_index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{index_file}: cannot be read as JSON ({error}).") from error
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if class_name in UNSUPPORTED_PIPELINES:
        raise UnsupportedModelError(
            f"{folder}: unsupported model family (looks like {UNSUPPORTED_PIPELINES[class_name]})."
        )
    if class_name not in DIFFUSERS_PIPELINES:
        raise UnsupportedModelError(f"{folder}: unsupported model family (pipeline {class_name!r}).")
    family, kind = DIFFUSERS_PIPELINES[class_name]
    if family == "sd15":
        cross_attention = _json_value(folder / "unet" / "config.json", "cross_attention_dim")
        if cross_attention == 1024:
            raise UnsupportedModelError(f"{folder}: unsupported model family (looks like Stable Diffusion 2.x).")
    if family == "sdxl" and not (folder / "text_encoder").is_dir():
        raise UnsupportedModelError(f"{folder}: unsupported model family (looks like an SDXL refiner).")
    return family, kind


def _json_value(path: Path, key: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


# ---- discovery ---------------------------------------------------------------------------------------------


@dataclass
class ModelCatalog:
    """Everything discovery found; `problems` are one-sentence notes on files that were skipped."""

    models: list[ModelInfo] = field(default_factory=list)
    loras: list[ModelInfo] = field(default_factory=list)
    vaes: list[ModelInfo] = field(default_factory=list)
    embeddings: list[ModelInfo] = field(default_factory=list)
    taesd: list[ModelInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[ModelInfo]:
        return {"lora": self.loras, "vae": self.vaes, "embedding": self.embeddings, "taesd": self.taesd}[kind]


def builtin_models() -> list[ModelInfo]:
    return [
        ModelInfo(
            name=name,
            path=name,
            family=family,
            kind="builtin",
            extra={"inpaint": inpaint, "note": "random weights built in code: the output is noise"},
        )
        for name, family, inpaint in BUILTIN_MODELS
    ]


class _Scanner:
    """One discovery pass: walks the folders, names entries, skips duplicates, collects problems."""

    def __init__(self, detection_cache: dict):
        self.catalog = ModelCatalog(models=builtin_models())
        self._detection_cache = detection_cache
        self._seen_paths: set[Path] = set()
        self._names: dict[str, set[str]] = {}

    def scan_root(self, root: Path) -> None:
        if (root / "model_index.json").is_file():
            self._add_diffusers_folder(root, root.name)
            return
        kind_folders = []
        for base in (root / "models", root):
            for kind, names in LAYOUT_FOLDERS.items():
                kind_folders += [(kind, base / name) for name in names if (base / name).is_dir()]
        for kind, folder in kind_folders:
            self.scan_kind_folder(kind, folder)
        # What lies directly in the root (a flat folder) is sorted by its content.
        for path in sorted(root.iterdir(), key=lambda p: p.name.lower()):
            if path.is_dir() and (path / "model_index.json").is_file():
                self._add_diffusers_folder(path, path.name)
            elif path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES:
                self._add_file(None, path, path.stem)

    def scan_kind_folder(self, kind: str, folder: Path) -> None:
        for path, name in _walk_weight_files(folder, kind):
            if path.is_dir():
                if kind == "vae":
                    self._add_vae_folder(path, name)
                elif kind == "checkpoint":
                    self._add_diffusers_folder(path, name)
            else:
                self._add_file(kind, path, name)

    def _claim(self, path: Path) -> bool:
        resolved = path.resolve()
        if resolved in self._seen_paths:
            return False
        self._seen_paths.add(resolved)
        return True

    def _unique_name(self, group: str, name: str) -> str:
        taken = self._names.setdefault(group, set())
        candidate, counter = name, 2
        while candidate in taken:
            candidate, counter = f"{name}~{counter}", counter + 1
        taken.add(candidate)
        return candidate

    def _add_diffusers_folder(self, folder: Path, name: str) -> None:
        if not self._claim(folder):
            return
        try:
            family, kind = diffusers_folder_family(folder)
        except ModelError as error:
            self.catalog.problems.append(str(error))
            return
        inpaint = _json_value(folder / "unet" / "config.json", "in_channels") == 9
        self.catalog.models.append(
            ModelInfo(
                name=self._unique_name("model", name),
                path=str(folder),
                family=family,
                kind=kind,
                extra={"format": "diffusers", "inpaint": inpaint},
            )
        )

    def _add_vae_folder(self, folder: Path, name: str) -> None:
        if self._claim(folder):
            info = ModelInfo(self._unique_name("vae", name), str(folder), "", "vae", {"format": "diffusers"})
            self.catalog.vaes.append(info)

    def _add_file(self, kind: str | None, path: Path, name: str) -> None:
        if not self._claim(path):
            return
        if kind == "taesd" or (kind is None and _taesd_family(path)):
            family = _taesd_family(path)
            if family:
                self.catalog.taesd.append(ModelInfo(self._unique_name("taesd", name), str(path), family, "taesd"))
            return
        try:
            shapes = self._shapes(path)
        except ModelError as error:
            self.catalog.problems.append(str(error))
            return
        except OSError as error:  # vanished or unreadable while we looked
            self.catalog.problems.append(f"{path}: cannot be read ({error.strerror or error}).")
            return
        content_kind = classify_weights(shapes)
        if kind is None:
            kind = content_kind
            if kind is None:
                return  # some other network in a flat folder (upscaler, controlnet, ...): not ours
        if kind == "checkpoint":
            self._add_checkpoint(path, name, shapes)
        elif kind == "lora":
            self.catalog.loras.append(
                ModelInfo(self._unique_name("lora", name), str(path), lora_family(shapes), "lora")
            )
        elif kind == "vae":
            self.catalog.vaes.append(ModelInfo(self._unique_name("vae", name), str(path), "", "vae"))
        elif kind == "embedding":
            self.catalog.embeddings.append(
                ModelInfo(self._unique_name("embedding", name), str(path), embedding_family(shapes), "embedding")
            )

    def _add_checkpoint(self, path: Path, name: str, shapes: Mapping[str, Sequence[int]]) -> None:
        try:
            detected = detect_checkpoint_family(path, shapes)
        except ModelError as error:
            self.catalog.problems.append(str(error))
            return
        self.catalog.models.append(
            ModelInfo(
                name=self._unique_name("model", name),
                path=str(path),
                family=detected.family,
                kind="inpaint" if detected.inpaint else "checkpoint",
                extra={"format": "single-file", "inpaint": detected.inpaint},
            )
        )

    def _shapes(self, path: Path) -> Mapping[str, Sequence[int]]:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._detection_cache:
            self._detection_cache[key] = read_weight_shapes(path)
        return self._detection_cache[key]


def _taesd_family(path: Path) -> str:
    stem = path.name.split(".")[0].lower()
    return {"taesd_decoder": "sd15", "taesdxl_decoder": "sdxl"}.get(stem, "")


def _walk_weight_files(folder: Path, kind: str) -> list[tuple[Path, str]]:
    """(path, name) of weight files and diffusers folders under `folder`; names keep sub-folders.

    A diffusers model is a folder with model_index.json; in a VAE folder, one with config.json.
    """
    marker = "config.json" if kind == "vae" else "model_index.json"
    found: list[tuple[Path, str]] = []

    def walk(current: Path, depth: int) -> None:
        try:
            entries = sorted(current.iterdir(), key=lambda p: p.name.lower())
        except OSError:
            return
        for path in entries:
            if path.name.startswith("."):
                continue
            relative = path.relative_to(folder).as_posix()
            if path.is_dir():
                if (path / marker).is_file():
                    found.append((path, relative))
                elif not (path / "config.json").is_file() and depth < MAX_SCAN_DEPTH:
                    walk(path, depth + 1)
            elif path.suffix.lower() in WEIGHT_SUFFIXES:
                found.append((path, relative[: -len(path.suffix)]))

    walk(folder, 0)
    return found


# ---- device, dtype, hash -----------------------------------------------------------------------------------


def choose_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(device: str, prefer_bf16: bool = False):
    """float32 on CPU (half precision is slow or unsupported there); fp16 on GPUs, bf16 when asked and able."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if prefer_bf16 and torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


class ModelHashes:
    """A1111 'AutoV2' short hashes (first 10 hex of the file's sha256), cached by (path, size, mtime)."""

    def __init__(self, cache_file: Path | None = None):
        self.cache_file = cache_file
        self._cache: dict[str, str] = self._read_cache()

    def short_hash(self, path: str | os.PathLike) -> str:
        path = Path(path)
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in self._cache:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(16 * 1024 * 1024), b""):
                    digest.update(chunk)
            self._cache[key] = digest.hexdigest()[:10]
            self._write_cache()
        return self._cache[key]

    def _read_cache(self) -> dict[str, str]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            cached = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}  # a cache is only a shortcut: a broken one is rebuilt
        return {str(k): str(v) for k, v in cached.items()} if isinstance(cached, dict) else {}

    def _write_cache(self) -> None:
        if self.cache_file is None:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.cache_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(self._cache, indent=0), encoding="utf-8")
            os.replace(temporary, self.cache_file)
        except OSError:
            pass  # hashing still worked; the next run hashes again


# ---- loading -------------------------------------------------------------------------------------------------


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


def _read_scheduler_config(folder: Path) -> dict:
    path = folder / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: the scheduler configuration cannot be read ({error}).") from error


class _CheckpointWeights:
    """Reads one component's tensors at a time from a single file, so peak memory stays ~one component."""

    def __init__(self, path: Path):
        self.path = path
        self._pickled: dict[str, Any] | None = None
        if path.suffix.lower() != ".safetensors":
            self._pickled = load_pickled_weights(path)
            self.keys = list(self._pickled)
        else:
            self.keys = list(read_safetensors_header(path).tensors)

    def part(self, prefix: str) -> dict[str, Any]:
        wanted = [key for key in self.keys if key.startswith(prefix)]
        if self._pickled is not None:
            return {key: self._pickled[key] for key in wanted}
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as handle:
                return {key: handle.get_tensor(key) for key in wanted}
        except Exception as error:  # safetensors raises its own error types for corrupt data
            raise ModelError(f"{self.path}: the weights cannot be read ({_first_line(error)}).") from error


def _normalise_sd15_clip_keys(part: dict[str, Any]) -> dict[str, Any]:
    """Some old SD1.x files lack the `text_model.` level under cond_stage_model.transformer."""
    normalised = {}
    for key, value in part.items():
        if key.startswith(SD15_CLIP_PREFIX) and not key.startswith(SD15_CLIP_PREFIX + "text_model."):
            key = SD15_CLIP_PREFIX + "text_model." + key[len(SD15_CLIP_PREFIX) :]
        normalised[key] = value
    return normalised


def _empty_component(cls, config_folder: Path, subfolder: str):
    """The component with its architecture from the config folder and no memory behind its weights.

    The weight initialisers are switched off as well (what from_pretrained does): on meta tensors they
    compute nothing useful, but torch still runs its Python reference kernels for them (~0.3 s for a
    UNet), and every weight is replaced by the file's tensors right after.
    """
    from accelerate import init_empty_weights

    if hasattr(cls, "load_config"):  # diffusers models
        from diffusers.models.modeling_utils import no_init_weights

        config = cls.load_config(str(config_folder), subfolder=subfolder, local_files_only=True)
        with init_empty_weights(), no_init_weights():
            return cls.from_config(config)
    from transformers.initialization import no_init_weights

    config = cls.config_class.from_pretrained(str(config_folder), subfolder=subfolder, local_files_only=True)
    with init_empty_weights(), no_init_weights():
        return cls(config)


def _materialise(module, converted: Mapping[str, Any], path: Path, what: str, device: str, dtype):
    """Fill an empty component from diffusers-format tensors, after checking that every weight is there.

    Checking first matters: a missing tensor would otherwise stay on the meta device and fail later
    with an error that names neither the file nor the problem.
    """
    import torch
    from diffusers.models.model_loading_utils import load_model_dict_into_meta

    empty_state = module.state_dict()
    expected = list(empty_state.keys())
    missing = [key for key in expected if key not in converted]
    if missing:
        raise ModelError(
            f"{path}: the file has no weights for {len(missing)} tensors of the {what} "
            f"(for example {missing[0]}); it is incomplete or of another architecture."
        )
    wrong = [key for key in expected if tuple(converted[key].shape) != tuple(empty_state[key].shape)]
    if wrong:
        raise ModelError(
            f"{path}: {len(wrong)} tensors of the {what} have other shapes than {what} of this family expects "
            f"(for example {wrong[0]}: {tuple(converted[wrong[0]].shape)})."
        )
    load_model_dict_into_meta(
        module, {key: converted[key] for key in expected}, dtype=dtype, device_map={"": torch.device(device)}
    )
    return module.eval()


def _load_unet_from_part(part, path: Path, config_folder: Path, device: str, dtype):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = _empty_component(UNet2DConditionModel, config_folder, "unet")
    converted = convert_ldm_unet_checkpoint(part, dict(unet.config))
    return _materialise(unet, converted, path, "UNet", device, dtype)


def _load_vae_from_part(part, path: Path, config_folder: Path, device: str, dtype):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = _empty_component(AutoencoderKL, config_folder, "vae")
    if set(vae.state_dict()) <= set(part):
        converted = part  # already diffusers names (e.g. the VAE files published with diffusers)
    else:
        converted = convert_ldm_vae_checkpoint(part, dict(vae.config))
    return _materialise(vae, converted, path, "VAE", device, dtype)


def _load_clip_from_part(cls, part, path: Path, config_folder: Path, subfolder: str, device: str, dtype):
    """CLIP-L (HF layout inside the file) or OpenCLIP bigG (fused q/k/v, transposed projection)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    what = "second text encoder" if subfolder == "text_encoder_2" else "text encoder"
    if not part:
        raise ModelError(f"{path}: the checkpoint has no weights for its {what}.")
    encoder = _empty_component(cls, config_folder, subfolder)
    if any(key.startswith(SDXL_CLIP_G_PREFIX) for key in part):
        converted = convert_open_clip_checkpoint(encoder, part, prefix=SDXL_CLIP_G_PREFIX)
    else:
        converted = convert_ldm_clip_checkpoint(part)
    if not hasattr(encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        converted = {key.removeprefix("text_model."): value for key, value in converted.items()}
    return _materialise(encoder, converted, path, what, device, dtype)


def load_single_file(
    path: Path, family: str, inpaint: bool, *, device: str, dtype, config_root: Path | None = None,
    load_vae: bool = True,
) -> dict[str, Any]:
    """The components of a single-file SD1.5/SDXL checkpoint, converted with the bundled configs."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config_folder = config_folder_for(family, inpaint, config_root)
    weights = _CheckpointWeights(path)
    components: dict[str, Any] = {"scheduler_config": _read_scheduler_config(config_folder)}
    components["unet"] = _load_unet_from_part(weights.part(UNET_PREFIX), path, config_folder, device, dtype)
    if family == "sd15":
        clip_part = _normalise_sd15_clip_keys(weights.part(SD15_CLIP_PREFIX))
        components["text_encoder"] = _load_clip_from_part(
            CLIPTextModel, clip_part, path, config_folder, "text_encoder", device, dtype
        )
        components["tokenizer"] = load_clip_tokenizer(config_folder / "tokenizer")
    else:
        components["text_encoder"] = _load_clip_from_part(
            CLIPTextModel, weights.part(SDXL_CLIP_L_PREFIX), path, config_folder, "text_encoder", device, dtype
        )
        components["text_encoder_2"] = _load_clip_from_part(
            CLIPTextModelWithProjection, weights.part(SDXL_CLIP_G_PREFIX), path, config_folder,
            "text_encoder_2", device, dtype,
        )
        components["tokenizer"] = load_clip_tokenizer(config_folder / "tokenizer")
        components["tokenizer_2"] = load_clip_tokenizer(config_folder / "tokenizer_2")
    if load_vae:
        vae_part = weights.part(VAE_PREFIX)
        if not vae_part:
            raise ModelError(f"{path}: the checkpoint has no VAE inside; choose a separate VAE file for it.")
        components["vae"] = _load_vae_from_part(vae_part, path, config_folder, device, dtype)
    return components


def load_diffusers_folder(folder: Path, family: str, *, device: str, dtype, load_vae: bool = True) -> dict[str, Any]:
    """The components of a diffusers-format SD1.5/SDXL folder, from local files only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    def pretrained(cls, subfolder: str):
        variant = _weights_variant(folder / subfolder)
        model = cls.from_pretrained(
            str(folder), subfolder=subfolder, local_files_only=True, dtype=dtype, variant=variant
        )
        return model.to(device)

    components: dict[str, Any] = {"scheduler_config": _read_scheduler_config(folder)}
    components["unet"] = pretrained(UNet2DConditionModel, "unet")
    components["text_encoder"] = pretrained(CLIPTextModel, "text_encoder")
    components["tokenizer"] = _folder_tokenizer(folder / "tokenizer")
    if family == "sdxl":
        components["text_encoder_2"] = pretrained(CLIPTextModelWithProjection, "text_encoder_2")
        components["tokenizer_2"] = _folder_tokenizer(folder / "tokenizer_2")
    if load_vae:
        components["vae"] = pretrained(AutoencoderKL, "vae")
    return components


def _weights_variant(folder: Path) -> str | None:
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


def _folder_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    return load_clip_tokenizer(folder)  # config only: use the shipped vocabulary


def load_vae_file(path: Path, family: str, *, device: str, dtype, config_root: Path | None = None):
    """A separate VAE: a single file (original or diffusers key layout) or a diffusers VAE folder."""
    from diffusers import AutoencoderKL

    if path.is_dir():
        subfolder = "vae" if (path / "vae" / "config.json").is_file() else None
        variant = _weights_variant(path / subfolder if subfolder else path)
        vae = AutoencoderKL.from_pretrained(
            str(path), subfolder=subfolder, local_files_only=True, dtype=dtype, variant=variant
        )
        return vae.to(device)
    shapes = read_weight_shapes(path)
    if classify_weights(shapes) not in ("vae", "checkpoint"):
        raise ModelError(f"{path}: is not a VAE (no encoder/decoder weights in it).")
    weights = _CheckpointWeights(path)
    part = weights.part(VAE_PREFIX) or weights.part("")
    config_folder = config_folder_for(family, False, config_root)
    return _load_vae_from_part(part, path, config_folder, device, dtype)


def _wrap_load_errors(path: Path, what: str, load):
    """Loader failures become one sentence naming the file; our own errors pass through."""
    try:
        return load()
    except ModelError:
        raise
    except MemoryError as error:
        raise ModelError(f"{path}: not enough memory to load this {what}.") from error
    except Exception as error:  # diffusers/transformers/safetensors raise many types for bad files
        raise ModelError(f"{path}: could not be loaded as {what} ({_first_line(error)}).") from error


# ---- the manager -----------------------------------------------------------------------------------------------


class ModelManager:
    """Finds models and keeps one loaded; switching models frees the previous one first.

    `folders`: a ModelFolders, a list of roots, or None for the usual sources (find_model_folders()).
    `config_root`: where the sd15/sdxl(-inpaint) config folders are (default: the bundled ones).
    """

    def __init__(
        self,
        folders: ModelFolders | Iterable[str | os.PathLike] | None = None,
        *,
        config_root: Path | None = None,
        device: str | None = None,
        dtype: Any = None,
        prefer_bf16: bool = False,
        hash_cache_file: Path | None = None,
    ):
        if folders is None:
            folders = find_model_folders()
        elif not isinstance(folders, ModelFolders):
            folders = ModelFolders(roots=[Path(p) for p in folders])
        self.folders = folders
        self.config_root = config_root
        self._device = device
        self._dtype = dtype
        self.prefer_bf16 = prefer_bf16
        self.hashes = ModelHashes(hash_cache_file)
        self._catalog: ModelCatalog | None = None
        self._detection_cache: dict = {}
        self._loaded_key: tuple | None = None
        self._loaded: Any = None

    # -- discovery

    def discover(self) -> list[ModelInfo]:
        """Scan the folders again; returns the runnable models (built-ins first). Never raises for a bad file."""
        scanner = _Scanner(self._detection_cache)
        for root in self.folders.roots:
            scanner.scan_root(root)
        for kind, kind_folders in self.folders.typed.items():
            for folder in kind_folders:
                scanner.scan_kind_folder(kind, folder)
        self._catalog = scanner.catalog
        return list(self._catalog.models)

    @property
    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            self.discover()
        return self._catalog

    def find(self, name_or_path: str) -> ModelInfo:
        """A model by discovered name, builtin name, or path to a file / diffusers folder."""
        for info in self.catalog.models:
            if name_or_path in (info.name, info.path):
                return info
        path = Path(name_or_path).expanduser()
        if path.is_dir() and (path / "model_index.json").is_file():
            family, kind = diffusers_folder_family(path)
            inpaint = _json_value(path / "unet" / "config.json", "in_channels") == 9
            return ModelInfo(path.name, str(path.resolve()), family, kind, {"format": "diffusers", "inpaint": inpaint})
        if path.is_file():
            detected = detect_checkpoint_family(path, read_weight_shapes(path))
            kind = "inpaint" if detected.inpaint else "checkpoint"
            return ModelInfo(path.stem, str(path.resolve()), detected.family, kind,
                             {"format": "single-file", "inpaint": detected.inpaint})
        raise ModelError(f"No model named {name_or_path!r} was found in the model folders, and it is not a file.")

    def find_asset(self, kind: str, name_or_path: str) -> ModelInfo:
        """A LoRA / VAE / embedding / TAESD decoder by discovered name or path."""
        if kind not in ASSET_KINDS:
            raise ModelError(f"Unknown kind of model file {kind!r}.")
        for info in self.catalog.of_kind(kind):
            if name_or_path in (info.name, info.path):
                return info
        path = Path(name_or_path).expanduser()
        if path.exists():
            return ModelInfo(path.stem, str(path.resolve()), "", kind)
        raise ModelError(f"No {kind} named {name_or_path!r} was found in the model folders, and it is not a file.")

    def lora_path(self, name: str) -> Path:
        """The LoRA file a prompt's `<lora:name:w>` or the LoRA list means (a discovered name or a path)."""
        return Path(self.find_asset("lora", name).path)

    def embeddings(self, family: str = "") -> dict[str, Path]:
        """Name -> file of discovered textual-inversion embeddings (those that may fit `family` when given)."""
        if family:
            return self.embedding_files(family)
        return {info.name: Path(info.path) for info in self.catalog.embeddings}

    def taesd_decoder(self, family: str) -> Path | None:
        """The TAESD decoder found in vae_approx/ for this family (taesd_decoder / taesdxl_decoder), if any."""
        return next((Path(info.path) for info in self.catalog.taesd if info.family == family), None)

    def embedding_files(self, family: str) -> dict[str, Path]:
        """Name -> file of the discovered embeddings that may fit `family` (unknown family: let loading tell)."""
        return {info.name: Path(info.path) for info in self.catalog.embeddings if info.family in ("", family)}

    # -- device

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = choose_device()
        return self._device

    @property
    def dtype(self):
        if self._dtype is None:
            self._dtype = choose_dtype(self.device, self.prefer_bf16)
        return self._dtype

    # -- loading

    def load(self, name_or_path: str, vae: str | None = None) -> SDModel:
        """The SD1.5/SDXL model ready to run; the same (model, vae) comes from the cache."""
        info = self.find(name_or_path)
        if info.kind == "edit":
            raise ModelError(f"{info.name} is an instruction-edit model; it runs through the edit pipeline.")
        vae_info = self.find_asset("vae", vae) if vae else None
        key = ("sd", info.path, vae_info.path if vae_info else None)
        if self._loaded_key == key:
            return self._loaded
        if self._loaded_key is not None and self._loaded_key[:2] == key[:2] and info.kind != "builtin":
            return self._swap_vae(info, vae_info, key)
        self.unload()
        model = _wrap_load_errors(Path(info.path), f"an {info.family} model", lambda: self._load_sd(info, vae_info))
        self._loaded_key, self._loaded = key, model
        return model

    def _swap_vae(self, info: ModelInfo, vae_info: ModelInfo | None, key: tuple) -> SDModel:
        """Only the VAE changed: load that one (a few hundred MB) instead of the whole model again.

        The new VAE loads before the old one is dropped, so a bad VAE file leaves the model as it was.
        """
        model: SDModel = self._loaded
        if vae_info is None:
            path = Path(info.path)
            vae = _wrap_load_errors(path, "the model's own VAE", lambda: self._load_own_vae(info))
        else:
            path = Path(vae_info.path)
            vae = _wrap_load_errors(path, "a VAE", lambda: self._load_vae_file(info, vae_info))
        model.vae = vae.eval().requires_grad_(False)
        if vae_info is None:
            model.extra.pop("vae", None)
        else:
            model.extra["vae"] = vae_info.name
        self._loaded_key = key
        gc.collect()
        return model

    def load_edit_pipeline(self, name_or_path: str):
        """An instruction-edit diffusers pipeline (InstructPix2Pix, Kontext, Qwen edit) from its local folder."""
        info = self.find(name_or_path)
        if info.kind != "edit":
            raise ModelError(f"{info.name} is not an instruction-edit model.")
        key = ("edit", info.path, None)
        if self._loaded_key == key:
            return self._loaded
        self.unload()

        def load():
            # inference.edit plans placement (GPU, CPU offload, or a clear refusal) from free memory.
            from inference.edit import load_edit_model

            # dtype None: bf16 on GPU, fp32 on CPU (the edit models' own choice)
            return load_edit_model(Path(info.path), info.family, self.device, self._dtype, name=info.name)

        pipeline = _wrap_load_errors(Path(info.path), "an instruction-edit model", load)
        self._loaded_key, self._loaded = key, pipeline
        return pipeline

    def unload(self) -> None:
        """Drop the loaded model and give its memory back before the next one loads."""
        if self._loaded is None:
            return
        self._loaded_key, self._loaded = None, None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def model_hash(self, path: str | os.PathLike) -> str:
        return self.hashes.short_hash(path)

    def _load_sd(self, info: ModelInfo, vae_info: ModelInfo | None) -> SDModel:
        if info.kind == "builtin":
            model = self._load_builtin(info)
        else:
            path = Path(info.path)
            inpaint = bool(info.extra.get("inpaint"))
            options = dict(device=self.device, dtype=self.dtype, load_vae=vae_info is None)
            if path.is_dir():
                parts = load_diffusers_folder(path, info.family, **options)
                model_hash = ""
            else:
                parts = load_single_file(path, info.family, inpaint, config_root=self.config_root, **options)
                model_hash = self.model_hash(path)
            for module in parts.values():
                if hasattr(module, "requires_grad_"):
                    module.eval().requires_grad_(False)
            model = SDModel(
                name=info.name,
                family=info.family,
                model_hash=model_hash,
                device=self.device,
                dtype=self.dtype,
                vae=parts.get("vae"),
                **{k: v for k, v in parts.items() if k != "vae"},
            )
        if vae_info is not None:
            vae = _wrap_load_errors(Path(vae_info.path), "a VAE", lambda: self._load_vae_file(info, vae_info))
            model.vae = vae.eval().requires_grad_(False)
            model.extra["vae"] = vae_info.name
        return model

    def _load_vae_file(self, info: ModelInfo, vae_info: ModelInfo):
        return load_vae_file(
            Path(vae_info.path), info.family, device=self.device, dtype=self.dtype, config_root=self.config_root
        )

    def _load_own_vae(self, info: ModelInfo):
        path = Path(info.path)
        if path.is_dir():
            return load_vae_file(path, info.family, device=self.device, dtype=self.dtype)
        part = _CheckpointWeights(path).part(VAE_PREFIX)
        if not part:
            raise ModelError(f"{path}: the checkpoint has no VAE inside; choose a separate VAE file for it.")
        config_folder = config_folder_for(info.family, bool(info.extra.get("inpaint")), self.config_root)
        return _load_vae_from_part(part, path, config_folder, self.device, self.dtype)

    def _load_builtin(self, info: ModelInfo) -> SDModel:
        from inference.tiny import build_tiny

        model = build_tiny(info.family, inpaint=bool(info.extra.get("inpaint")))
        if (self.device, self.dtype) != (model.device, model.dtype):
            for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
                module = getattr(model, name)
                if module is not None:
                    setattr(model, name, module.to(device=self.device, dtype=self.dtype))
        model.device, model.dtype = self.device, self.dtype
        return model
