"""Where discovery looks (SPEC §6): the folders given on the command line, `COLLAGEN_MODELS`, the
settings file and the default folder, and the folders a ComfyUI extra_model_paths.yaml names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inference.api import ModelError

APP_NAME = "Collagen"
ENV_MODELS = "COLLAGEN_MODELS"
SETTINGS_KEY_FOLDERS = "model_folders"
SETTINGS_KEY_EXTRA_PATHS = "extra_model_paths"  # ComfyUI extra_model_paths.yaml files to import
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
        resolved = Path(os.path.realpath(candidate))  # Path.resolve raises on a link loop (3.11)
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
    return Path(os.path.realpath(path if path.is_absolute() else base / path))
