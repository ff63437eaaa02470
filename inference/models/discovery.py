"""Discovery: one pass over the model folders into a catalog of models and assets.

A1111 and ComfyUI layouts and flat folders are understood; a file's kind and family come from its
safetensors header alone (no weights are read), a diffusers folder's from model_index.json.
A file that cannot be used becomes a one-sentence problem in the catalog, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inference.api import ModelError, ModelInfo
from inference.families import FAMILIES, FamilyRegistry
from inference.models.detect import (
    classify_weights,
    detect_checkpoint_family,
    diffusers_folder_family,
    embedding_family,
    json_value,
    lora_family,
)
from inference.models.folders import LAYOUT_FOLDERS
from inference.models.weights import read_weight_shapes

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
BUILTIN_MODELS = (
    ("builtin:tiny-sd15", "sd15", False),
    ("builtin:tiny-sdxl", "sdxl", False),
    ("builtin:tiny-sd15-inpaint", "sd15", True),
    ("builtin:tiny-sdxl-inpaint", "sdxl", True),
    ("builtin:tiny-flux-dev", "flux-dev", False),
    ("builtin:tiny-flux-schnell", "flux-schnell", False),
    ("builtin:tiny-flux-fill", "flux-fill", True),
    ("builtin:tiny-zimage", "zimage", False),
)
ASSET_KINDS = ("lora", "vae", "embedding", "taesd")
MAX_SCAN_DEPTH = 6  # folder levels below a kind folder (A1111 allows sub-folders of checkpoints)


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


class Scanner:
    """One discovery pass: walks the folders, names entries, skips duplicates, collects problems."""

    def __init__(self, detection_cache: dict, families: FamilyRegistry = FAMILIES):
        self.catalog = ModelCatalog(models=builtin_models())
        self._detection_cache = detection_cache
        self.families = families
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
            family, kind = diffusers_folder_family(folder, self.families)
        except ModelError as error:
            self.catalog.problems.append(str(error))
            return
        inpaint = json_value(folder / "unet" / "config.json", "in_channels") == 9
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
        content_kind = classify_weights(shapes, self.families)
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
            detected = detect_checkpoint_family(path, shapes, self.families)
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
    return {"taesd_decoder": "sd15", "taesdxl_decoder": "sdxl", "taef1_decoder": "flux-dev"}.get(stem, "")


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
