"""Discovery: one pass over the model folders into a catalog of models and assets.

A1111 and ComfyUI layouts and flat folders are understood; a file's kind and family come from its
safetensors header alone (no weights are read), a diffusers folder's from model_index.json.
A file that cannot be used becomes a one-sentence entry of the catalog's `skipped` list, never an
exception: one bad entry (a symlink loop, a FIFO, a damaged or 3 GiB model_index.json, a custom
pipeline) never hides the others. Folder walks follow a linked folder once (a seen-set of
device/inode pairs, so links to `.` cost nothing) and stop MAX_SCAN_DEPTH folders down.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inference.api import ModelError, ModelInfo
from inference.bounded_read import describe_kind
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
    # instruction-edit pipelines (inference/edit/tiny.py); the names are BUILTIN_EDIT_MODELS'
    ("builtin:tiny-ip2p", "ip2p", False),
    ("builtin:tiny-kontext", "flux-kontext", False),
    ("builtin:tiny-qwen-edit", "qwen-edit", False),
    ("builtin:tiny-qwen-edit-plus", "qwen-edit-plus", False),
)
ASSET_KINDS = ("lora", "vae", "embedding", "taesd")
MAX_SCAN_DEPTH = 8  # folder levels below a kind folder (A1111 allows sub-folders of checkpoints)


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder discovery did not list, and why (one sentence, without the path)."""

    path: str
    reason: str
    name: str = ""  # the name it would have been listed under, so asking for it can say why

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ModelCatalog:
    """Everything discovery found; `skipped` says which files were left out and why."""

    models: list[ModelInfo] = field(default_factory=list)
    loras: list[ModelInfo] = field(default_factory=list)
    vaes: list[ModelInfo] = field(default_factory=list)
    embeddings: list[ModelInfo] = field(default_factory=list)
    taesd: list[ModelInfo] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """The skipped entries as `path: reason` sentences."""
        return [str(entry) for entry in self.skipped]

    def of_kind(self, kind: str) -> list[ModelInfo]:
        return {"lora": self.loras, "vae": self.vaes, "embedding": self.embeddings, "taesd": self.taesd}[kind]

    def skipped_named(self, name_or_path: str) -> SkippedFile | None:
        """The skipped entry a user's name or path means, if any (to say why instead of 'not found')."""
        wanted = name_or_path.strip()
        if not wanted:
            return None
        real = os.path.realpath(os.path.expanduser(wanted))
        for entry in self.skipped:
            if wanted in (entry.name, entry.path) or real == os.path.realpath(entry.path):
                return entry
        for entry in self.skipped:  # A1111 names files by their bare name whatever their sub-folder
            if entry.name and entry.name.rsplit("/", 1)[-1] == wanted:
                return entry
        return None


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


def family_facts(entry) -> dict:
    """What a model's family lets the user choose, for the GUI, which reads ModelInfo and not the registry.

    modes: the modes it runs; samplers: the names one may pick (empty: it always runs `sampler`);
    guidance: "cfg" (classifier-free guidance scale), "guidance" (distilled guidance, FLUX dev / Kontext)
    or "none" (FLUX schnell: neither); true_cfg / image_guidance: whether those scales apply.
    """
    defaults = entry.defaults
    guidance = "cfg" if defaults.cfg is not None else "guidance" if defaults.guidance is not None else "none"
    return {"modes": list(entry.supports.modes), "samplers": list(entry.supports.samplers),
            "sampler": defaults.sampler, "guidance": guidance, "true_cfg": entry.supports.true_cfg,
            "image_guidance": entry.supports.image_guidance}


def with_family_facts(models: list[ModelInfo], families: FamilyRegistry) -> list[ModelInfo]:
    for info in models:
        entry = families.find(info.family)
        if entry is not None:
            info.extra.update(family_facts(entry))
    return models


class Scanner:
    """One discovery pass: walks the folders, names entries, skips duplicates, collects problems."""

    def __init__(self, detection_cache: dict, families: FamilyRegistry = FAMILIES):
        self.catalog = ModelCatalog(models=builtin_models())
        self.families = families
        self._detection_cache = detection_cache
        self.families = families
        self._seen_paths: set[str] = set()
        self._names: dict[str, set[str]] = {}

    def skip(self, path: Path | str, reason: str | BaseException, name: str = "") -> None:
        """Note a skipped entry; a ModelError's `path: sentence` text is split into its two parts."""
        text, where = str(reason).strip(), str(path)
        if isinstance(reason, BaseException) and not isinstance(reason, ModelError):
            text = f"could not be examined (unexpected {type(reason).__name__}: {_first_line(reason)})."
        elif text.startswith(where):
            cut = text.find(": ", len(where))
            if cut != -1 and "\n" not in text[:cut]:
                where, text = text[:cut], text[cut + 2:]
        self.catalog.skipped.append(SkippedFile(where, text, name))

    def _guarded(self, path: Path, name: str, add: Callable[[], None]) -> None:
        """Run one entry's examination; whatever goes wrong in it skips that entry only."""
        try:
            add()
        except ModelError as error:
            self.skip(path, error, name)
        except OSError as error:  # vanished or unreadable while we looked
            self.skip(path, f"cannot be read ({error.strerror or error}).", name)
        except Exception as error:  # noqa: BLE001 - one bad entry must never hide the others
            self.skip(path, error, name)

    def scan_root(self, root: Path) -> None:
        if (root / "model_index.json").is_file():
            self._guarded(root, root.name, lambda: self._add_diffusers_folder(root, root.name))
            return
        kind_folders = []
        for base in (root / "models", root):
            for kind, names in LAYOUT_FOLDERS.items():
                kind_folders += [(kind, base / name) for name in names if (base / name).is_dir()]
        for kind, folder in kind_folders:
            self.scan_kind_folder(kind, folder)
        # What lies directly in the root (a flat folder) is sorted by its content.
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name.lower())
        except OSError as error:
            self.skip(root, f"cannot be listed ({error.strerror or error}).")
            return
        for entry in entries:
            path = Path(entry.path)
            mode = self._mode(path, path.stem, report=path.suffix.lower() in WEIGHT_SUFFIXES or entry.is_symlink())
            if mode is None:
                continue
            if stat.S_ISDIR(mode) and (path / "model_index.json").is_file():
                self._guarded(path, path.name, lambda path=path: self._add_diffusers_folder(path, path.name))
            elif path.suffix.lower() in WEIGHT_SUFFIXES:
                if stat.S_ISREG(mode):
                    self._guarded(path, path.stem, lambda path=path: self._add_file(None, path, path.stem))
                elif not stat.S_ISDIR(mode):
                    self.skip(path, f"is {describe_kind(mode)}, not a regular file.", path.stem)

    def scan_kind_folder(self, kind: str, folder: Path) -> None:
        for path, name in self._walk(folder, kind):
            if path.is_dir():
                if kind == "vae":
                    self._guarded(path, name, lambda path=path, name=name: self._add_vae_folder(path, name))
                elif kind == "checkpoint":
                    self._guarded(path, name, lambda path=path, name=name: self._add_diffusers_folder(path, name))
            else:
                self._guarded(path, name, lambda path=path, name=name: self._add_file(kind, path, name))

    def _mode(self, path: Path, name: str, *, report: bool = True) -> int | None:
        """The file type of `path` with links followed, or None (noted as skipped when `report`)."""
        try:
            return os.stat(path).st_mode
        except OSError as error:
            if report:
                if error.errno == errno.ELOOP:
                    reason = "is a symbolic link loop (it never reaches a file)."
                elif os.path.islink(path) and isinstance(error, FileNotFoundError):
                    reason = "is a broken symbolic link (its target does not exist)."
                else:
                    reason = f"cannot be read ({error.strerror or error})."
                self.skip(path, reason, name)
            return None

    def _walk(self, folder: Path, kind: str) -> list[tuple[Path, str]]:
        """(path, name) of weight files and diffusers folders under `folder`; names keep sub-folders.

        A diffusers model is a folder with model_index.json; in a VAE folder, one with config.json.
        Each folder is entered once, however many links lead to it, and at most MAX_SCAN_DEPTH deep.
        """
        marker = "config.json" if kind == "vae" else "model_index.json"
        found: list[tuple[Path, str]] = []
        try:
            top = os.stat(folder)
        except OSError as error:
            self.skip(folder, f"cannot be read ({error.strerror or error}).")
            return found
        entered = {(top.st_dev, top.st_ino)}

        def walk(current: Path, depth: int) -> None:
            try:
                entries = sorted(os.scandir(current), key=lambda e: e.name.lower())
            except OSError as error:
                self.skip(current, f"cannot be listed ({error.strerror or error}).")
                return
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                relative = path.relative_to(folder).as_posix()
                is_weights = path.suffix.lower() in WEIGHT_SUFFIXES
                name = relative[: -len(path.suffix)] if is_weights else relative
                try:
                    info = os.stat(path)
                except OSError:
                    self._mode(path, name, report=is_weights or entry.is_symlink())
                    continue
                if stat.S_ISDIR(info.st_mode):
                    if (info.st_dev, info.st_ino) in entered:
                        self.skip(path, "leads back to a folder that is already scanned (a link loop); it was "
                                        "scanned once.")
                    elif (path / marker).is_file():
                        entered.add((info.st_dev, info.st_ino))
                        found.append((path, relative))
                    elif (path / "config.json").is_file():
                        entered.add((info.st_dev, info.st_ino))  # a bare component folder: not a model
                    elif depth >= MAX_SCAN_DEPTH:
                        self.skip(path, f"lies more than {MAX_SCAN_DEPTH} folders deep; deeper folders are not "
                                        "scanned.")
                    else:
                        entered.add((info.st_dev, info.st_ino))
                        walk(path, depth + 1)
                elif is_weights:
                    if stat.S_ISREG(info.st_mode):
                        found.append((path, name))
                    else:
                        self.skip(path, f"is {describe_kind(info.st_mode)}, not a regular file.", name)

        walk(folder, 0)
        return found

    def _claim(self, path: Path) -> bool:
        resolved = os.path.realpath(path)  # never raises on a link loop, unlike Path.resolve on 3.11
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
        family, kind = diffusers_folder_family(folder, self.families)
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
        if kind in (None, "checkpoint") and paired_checkpoint(path) is not None:
            kind = "vae"  # A1111: name.vae.safetensors beside name.safetensors is that checkpoint's VAE
        if kind == "taesd" or (kind is None and _taesd_family(path)):
            family = _taesd_family(path)
            if family:
                self.catalog.taesd.append(ModelInfo(self._unique_name("taesd", name), str(path), family, "taesd"))
            return
        shapes = self._shapes(path)
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
        detected = detect_checkpoint_family(path, shapes, self.families)
        extra = {"format": "single-file", "inpaint": detected.inpaint}
        vae = paired_vae(path)
        if vae is not None:
            extra["paired_vae"] = str(vae)
        self.catalog.models.append(
            ModelInfo(
                name=self._unique_name("model", name),
                path=str(path),
                family=detected.family,
                kind="inpaint" if detected.inpaint else "checkpoint",
                extra=extra,
            )
        )

    def _shapes(self, path: Path) -> Mapping[str, Sequence[int]]:
        info = path.stat()
        key = (os.path.realpath(path), info.st_size, info.st_mtime_ns)
        if key not in self._detection_cache:
            self._detection_cache[key] = read_weight_shapes(path)
        return self._detection_cache[key]


PAIRED_VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")


def paired_vae(checkpoint: Path) -> Path | None:
    """A1111's pairing: `name.vae.safetensors` (or .pt/.ckpt) beside `name.safetensors` is its VAE."""
    for suffix in PAIRED_VAE_SUFFIXES:
        candidate = checkpoint.with_name(f"{checkpoint.stem}.vae{suffix}")
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    return None


def paired_checkpoint(path: Path) -> Path | None:
    """The checkpoint a `name.vae.*` file is paired with (the file beside it), or None."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    if not stem.lower().endswith(".vae") or path.suffix.lower() not in PAIRED_VAE_SUFFIXES:
        return None
    for suffix in WEIGHT_SUFFIXES:
        candidate = path.with_name(stem[:-4] + suffix)
        if candidate.is_file():
            return candidate
    return None


def _taesd_family(path: Path) -> str:
    stem = path.name.split(".")[0].lower()
    return {"taesd_decoder": "sd15", "taesdxl_decoder": "sdxl", "taef1_decoder": "flux-dev"}.get(stem, "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 160 else line[:157] + "..."
