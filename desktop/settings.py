"""The editor's own settings (not the project's): model folders, device, previews, autosave, theme.

Stored as JSON in the platformdirs user config dir, in the same file model discovery reads
(`inference.models.default_settings_file`: `model_folders`, `extra_model_paths`), so a folder
added in the editor is found by `collagen models` too. Keys this version does not know are kept
on save. On Linux the path honours XDG_CONFIG_HOME, which is how tests get a private file.
A settings file that cannot be read gives the defaults and a message, never a crash.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args

import platformdirs

from canvas.model.generations import DEFAULT_BUDGET_MB
from inference.api import PreviewMethod
from inference.models import APP_NAME, default_models_folder, default_settings_file
from inference.sd.fastpath import FAST_PATH_SETTINGS

DEVICES = ("auto", "cpu", "cuda", "mps")
PREVIEW_METHODS: tuple[str, ...] = get_args(PreviewMethod)
THEMES = ("system", "light", "dark")
MAX_RECENT = 10
LOG_FILE_NAME = "collagen.log"
AUTOSAVE_MINUTES_RANGE = (0.1, 120.0)
GENERATIONS_MB_RANGE = (16, 65536)  # the project's kept generations (canvas.model.generations)


class SettingsError(Exception):
    """The settings file could not be read or written (one sentence)."""


@dataclass
class AppSettings:
    model_folders: list[str] = field(default_factory=list)
    extra_model_paths: list[str] = field(default_factory=list)  # ComfyUI extra_model_paths.yaml files
    device: str = "auto"
    fast_path: str = "auto"  # UNet fast path (inference/sd/fastpath.py): auto = on CUDA, on, off
    preview: str = "linear"
    autosave_minutes: float = 1.0
    autosave_keep: int = 5
    generations_mb: int = DEFAULT_BUDGET_MB  # "Generations kept": PNG bytes of generated images a project keeps
    theme: str = "system"
    recent_files: list[str] = field(default_factory=list)
    last_directory: str = ""
    window_geometry: str = ""  # base64 of QMainWindow.saveGeometry()
    window_state: str = ""  # base64 of QMainWindow.saveState()
    # Where jobs run: empty = the local engine; else "local" and/or ComfyUI URLs (inference/backends/config.py)
    backends: list[str] = field(default_factory=list)
    first_run_dismissed: bool = False  # the "no models found yet" card was closed: it does not come back

    def normalised(self) -> AppSettings:
        """A copy with every value inside its allowed range (a hand-edited file may say anything)."""
        out = AppSettings(**asdict(self))
        out.model_folders = list(dict.fromkeys(str(p) for p in out.model_folders if str(p).strip()))
        out.extra_model_paths = list(dict.fromkeys(str(p) for p in out.extra_model_paths if str(p).strip()))
        out.device = out.device if out.device in DEVICES else "auto"
        out.fast_path = out.fast_path if out.fast_path in FAST_PATH_SETTINGS else "auto"
        out.preview = out.preview if out.preview in PREVIEW_METHODS else "linear"
        lo, hi = AUTOSAVE_MINUTES_RANGE
        out.autosave_minutes = float(min(max(out.autosave_minutes, lo), hi))
        out.autosave_keep = int(min(max(out.autosave_keep, 1), 100))
        out.generations_mb = int(min(max(out.generations_mb, GENERATIONS_MB_RANGE[0]), GENERATIONS_MB_RANGE[1]))
        out.theme = out.theme if out.theme in THEMES else "system"
        out.recent_files = list(dict.fromkeys(str(p) for p in out.recent_files))[:MAX_RECENT]
        out.backends = list(dict.fromkeys(" ".join(str(b).split()) for b in out.backends if str(b).strip()))
        return out

    def with_recent(self, path: str | os.PathLike[str]) -> AppSettings:
        """`path` first in the recent files, without duplicates."""
        out = AppSettings(**asdict(self))
        path = str(Path(path).resolve())
        out.recent_files = [path] + [p for p in self.recent_files if p != path][: MAX_RECENT - 1]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSettings:
        out = cls()
        for f in fields(cls):
            if f.name not in data:
                continue
            default = getattr(out, f.name)
            value = data[f.name]
            try:
                if isinstance(default, list):
                    value = [str(v) for v in value] if isinstance(value, list) else default
                elif isinstance(default, bool):
                    value = bool(value)
                elif isinstance(default, int):
                    value = int(value)
                elif isinstance(default, float):
                    value = float(value)
                else:
                    value = str(value)
            except (TypeError, ValueError):
                continue
            setattr(out, f.name, value)
        return out.normalised()


def data_dir() -> Path:
    """Autosaves and the crash log live here (next to the default models folder)."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_models_dir() -> Path:
    """Where models go when the user has not said otherwise (SPEC §6)."""
    return default_models_folder()


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME))


def open_log_file() -> logging.Handler | None:
    """The rotating log file in the user log dir (INFO and up), or None when it cannot be opened.
    The editor and the CLI both write there; `handler.baseFilename` is its path."""
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(folder / LOG_FILE_NAME, maxBytes=2_000_000, backupCount=3,
                                                       encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    return handler


class SettingsStore:
    """Loads and atomically saves `AppSettings` at one path (the default under config_dir())."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else default_settings_file()
        self.load_problem = ""  # a sentence when the file existed but could not be used
        self._unknown: dict[str, Any] = {}  # keys of other versions / other tools, written back as they were

    def load(self) -> AppSettings:
        self.load_problem = ""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AppSettings()
        except OSError as exc:
            self.load_problem = f"The settings file {self.path} could not be read ({exc.strerror}); using defaults."
            return AppSettings()
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            self.load_problem = f"The settings file {self.path} is damaged; using defaults."
            return AppSettings()
        known = {f.name for f in fields(AppSettings)}
        self._unknown = {k: v for k, v in data.items() if k not in known}
        return AppSettings.from_dict(data)

    def save(self, settings: AppSettings) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**self._unknown, **asdict(settings.normalised())}, indent=2)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise SettingsError(f"The settings could not be saved to {self.path} ({exc.strerror}).") from None
