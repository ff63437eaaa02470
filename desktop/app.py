"""Start the editor: offline environment, QApplication + qasync loop, theme, crash handler, wiring.

`run_editor(path, models_dir)` is what `collagen [PROJECT.ora]` calls. The window opens before
the model stack loads: torch and diffusers are imported on the inference thread, the first time
a generation (or model discovery) needs the engine.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import logging.handlers
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

log = logging.getLogger("collagen")


def prepare_environment() -> None:
    """Offline before anything can import huggingface_hub, diffusers or transformers."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ[key] = value


prepare_environment()

from PySide6.QtCore import QObject, Qt, QTimer, Signal  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox, QStyleFactory  # noqa: E402

from desktop import dialogs  # noqa: E402
from desktop.actions import app_icon, resources_dir  # noqa: E402
from desktop.autosave import Autosave  # noqa: E402
from desktop.main_window import MainWindow  # noqa: E402
from desktop.settings import SettingsStore, data_dir, open_log_file  # noqa: E402
from desktop.worker import InferenceWorker  # noqa: E402

# ---- theme -------------------------------------------------------------------------------------


class Theme(QObject):
    """Fusion with a light or dark palette that follows the system (or the settings' choice)."""

    changed = Signal(str)  # "light" or "dark"

    def __init__(self, app: QApplication, preference: str = "system"):
        super().__init__(app)
        self.app = app
        self.preference = preference
        self.current = ""
        self._stylesheet = _read_theme_file("common.qss")
        if app.style().name().lower() != "fusion":
            app.setStyle(QStyleFactory.create("Fusion"))
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(lambda _: self.apply())
        self.apply()

    def set_preference(self, preference: str) -> None:
        if preference != self.preference:
            self.preference = preference
            self.apply()

    def resolved(self) -> str:
        if self.preference in ("light", "dark"):
            return self.preference
        scheme = QGuiApplication.styleHints().colorScheme()
        return "light" if scheme == Qt.ColorScheme.Light else "dark"

    def apply(self) -> None:
        name = self.resolved()
        if name == self.current:
            return
        self.current = name
        palette = palette_from_file(f"{name}.json")
        sheet = self._stylesheet + spin_arrows(name)
        if self.app.palette() == palette and self.app.styleSheet() == sheet:
            return  # already so (another window of this process applied it)
        self.app.setPalette(palette)
        # palette() references in the style sheet are resolved when it is set: set it again
        self.app.setStyleSheet("")
        self.app.setStyleSheet(sheet)
        self.changed.emit(name)


def spin_arrows(theme: str) -> str:
    """Spin boxes styled by the sheet lose the style's own arrows: their buttons, and arrows drawn in the
    theme's text colour (resources/themes/spin-{up,down}-THEME.svg)."""
    folder = (resources_dir() / "themes").as_posix()
    boxes = ("QSpinBox", "QDoubleSpinBox")

    def rule(part: str, body: str) -> str:
        return ", ".join(f"{box}::{part}" for box in boxes) + " { " + body + " }\n"

    return ("\n" + ", ".join(boxes) + " { padding-right: 20px; }\n"
            + rule("up-button", "subcontrol-origin: border; subcontrol-position: top right; width: 18px; "
                   "border-left: 1px solid palette(mid); border-top-right-radius: 4px;")
            + rule("down-button", "subcontrol-origin: border; subcontrol-position: bottom right; width: 18px; "
                   "border-left: 1px solid palette(mid); border-bottom-right-radius: 4px;")
            + rule("up-button:hover", "background: palette(midlight);")
            + rule("down-button:hover", "background: palette(midlight);")
            + rule("up-arrow", f"image: url({folder}/spin-up-{theme}.svg); width: 10px; height: 10px;")
            + rule("down-arrow", f"image: url({folder}/spin-down-{theme}.svg); width: 10px; height: 10px;"))


def _read_theme_file(name: str) -> str:
    try:
        return (resources_dir() / "themes" / name).read_text(encoding="utf-8")
    except OSError as exc:
        log.warning("theme file %s is missing: %s", name, exc)
        return ""


def palette_from_file(name: str) -> QPalette:
    palette = QPalette()
    try:
        data = json.loads(_read_theme_file(name) or "{}")
    except ValueError:
        return palette
    disabled = data.pop("disabled", {})
    for role_name, color in data.items():
        role = getattr(QPalette.ColorRole, role_name, None)
        if role is not None:
            palette.setColor(QPalette.ColorGroup.All, role, QColor(color))
    for role_name, color in disabled.items():
        role = getattr(QPalette.ColorRole, role_name, None)
        if role is not None:
            palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(color))
    return palette


# ---- crash handling ---------------------------------------------------------------------------------


class CrashHandler:
    """sys.excepthook: log the traceback, autosave the document, say one sentence in a dialog.

    The editor keeps running after an unexpected error in a slot (that is how Qt treats Python
    exceptions); the autosave makes sure nothing is lost if it cannot.
    """

    def __init__(self, log_file: Path | None):
        self.log_file = log_file
        self.window: MainWindow | None = None
        self._handling = False
        self._previous_hook = sys.excepthook

    def install(self) -> None:
        sys.excepthook = self.handle
        threading.excepthook = self._handle_thread

    def uninstall(self) -> None:
        sys.excepthook = self._previous_hook
        threading.excepthook = threading.__excepthook__

    def handle(self, kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            QApplication.quit()
            return
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(kind, error, tb)))
        if self._handling:  # an error while showing the dialog: logged, nothing more
            return
        self._handling = True
        try:
            saved = None
            if self.window is not None:
                try:
                    saved = self.window.autosave_now(force=True)
                except Exception:  # noqa: BLE001 - the dialog must still come
                    log.exception("emergency autosave failed")
            first = str(error).strip().splitlines()[0] if str(error).strip() else kind.__name__
            message = f"Something went wrong inside Collagen ({kind.__name__}: {first[:200]})."
            message += " Your work was autosaved." if saved else ""
            if self.log_file is not None:
                message += f" Details are in {self.log_file}."
            QMessageBox.critical(self.window, "Collagen", message)
        finally:
            self._handling = False

    def _handle_thread(self, args: threading.ExceptHookArgs) -> None:
        log.error("unexpected error in thread %s:\n%s", getattr(args.thread, "name", "?"),
                  "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))


def setup_logging() -> Path | None:
    """The rotating log file (errors and warnings; the console gets them too)."""
    handler = open_log_file()
    if handler is None:
        return None
    root = logging.getLogger()
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in root.handlers):
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
    else:
        handler.close()
    return Path(handler.baseFilename)


# ---- wiring ------------------------------------------------------------------------------------------


@dataclass
class Editor:
    """The running pieces of one editor session."""

    window: MainWindow
    worker: InferenceWorker
    autosave: Autosave
    settings_store: SettingsStore
    theme: Theme
    idle_collector: Any = None  # desktop.idle_gc.IdleCollector, from start_editor on


def build_editor(app: QApplication, *, models_dir: str | None = None, settings_store: SettingsStore | None = None,
                 engine_factory=None) -> Editor:
    """Settings, model manager, inference worker, autosave session and the window (not shown yet).

    `engine_factory` replaces the real engine (tests); by default it is built on the inference
    thread from a ModelManager over the discovered folders.
    """
    from inference.models import ModelManager, default_hash_cache_file, find_model_folders

    store = settings_store or SettingsStore()
    settings = store.load()
    folders = find_model_folders([models_dir] if models_dir else [], settings_file=store.path)
    # The hash cache: a checkpoint is hashed (seconds for GBs) once, not at every launch.
    models = ModelManager(folders, device=None if settings.device == "auto" else settings.device,
                          hash_cache_file=default_hash_cache_file())
    if engine_factory is None:
        def engine_factory():
            from inference.backends.config import build_backend
            from inference.engine import Engine
            from inference.sd.fastpath import FastPathHook

            # The settings' backends (ComfyUI servers, a pool of them); none: the local engine.
            return build_backend(settings.backends, lambda: Engine(models, fast_path=FastPathHook(settings.fast_path)))

    worker = InferenceWorker(engine_factory)
    autosave = Autosave(data_dir() / "autosave", keep=settings.autosave_keep)
    theme = Theme(app, settings.theme)
    window = MainWindow(worker=worker, settings_store=store, settings=settings, autosave=autosave, models=models,
                        theme=theme)
    window.set_cli_models_dir(models_dir)
    if store.load_problem:
        QTimer.singleShot(0, lambda: window.statusBar().showMessage(store.load_problem, 10_000))
    return Editor(window, worker, autosave, store, theme)


def start_editor(editor: Editor, path: str | None) -> None:
    """Show the window, offer what a crashed session left, open `path`, look for models."""
    window = editor.window
    if editor.idle_collector is None:
        from desktop.idle_gc import IdleCollector

        editor.idle_collector = IdleCollector(QApplication.instance())
    window.show()
    offer_restore(editor)
    problem = editor.autosave.start()  # a full disk: autosave is off for now, the editor still starts
    if path:
        window.open_path(path, ask=False)
    if problem:
        window.statusBar().showMessage(problem, 10_000)
    window.refresh_models()


def offer_restore(editor: Editor) -> bool:
    """Ask about each crashed session's newest autosave; True when one was restored."""
    window = editor.window
    for orphan in editor.autosave.find_orphans():
        answer = dialogs.ask_restore(window, orphan)
        if answer == "discard":
            editor.autosave.discard(orphan)
        elif answer == "restore":
            try:
                document = editor.autosave.restore(orphan)
            except Exception as exc:  # noqa: BLE001 - ProjectError, or a file half-written by the crash
                dialogs.show_error(window, f"The autosave could not be restored: {exc}")
                continue
            document.history.clear()
            # the restored state is in no file yet: closing asks to save it, the next autosave keeps it
            window._replace_document(document, None, unsaved=True)
            window._changes_since_autosave = 1
            window.statusBar().showMessage(
                f"Restored the autosave of {orphan.title}; save it to keep it.", 10_000)
            # The crashed session's copy goes only once this session has its own on disk: a second
            # crash before the first autosave tick must not lose the restored work.
            if window.autosave_now(force=True) is not None:
                editor.autosave.discard(orphan)
            return True
    return False


def run_editor(argv_path: str | None, models_dir: str | None) -> int:
    """The editor's main loop; returns the process exit status."""
    from inference.allocator import configure_process_allocator

    configure_process_allocator()  # before any model is loaded (idempotent: the CLI may have done it)
    prepare_environment()
    log_file = setup_logging()
    import qasync

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Collagen")
    app.setApplicationDisplayName("Collagen")
    app.setOrganizationName("Collagen")
    app.setWindowIcon(app_icon())
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    crash = CrashHandler(log_file)
    crash.install()
    try:
        editor = build_editor(app, models_dir=models_dir)
        crash.window = editor.window
        QTimer.singleShot(0, lambda: start_editor(editor, argv_path))
        with loop:
            loop.run_forever()
        editor.window.shutdown()
        editor.window.stop_save_thread()  # every save submitted is on disk before run_editor returns
    finally:
        crash.uninstall()
    return 0


def exit_process(status: int) -> NoReturn:
    """End the editor's process once `run_editor` has returned, without the interpreter's finalisation.

    Issue 16: the process took ~5.6 s to exit after the window closed (1.9 s on an idle machine after one
    tiny generation): py-spy shows the time in `gc_collect_main`, the final collections over the objects
    of torch, diffusers and transformers as their modules are torn down; nothing of Collagen's runs
    then. What must outlive the window is done before this is called: the inference thread stopped (or,
    after its timeout, left to die with the process as it would be anyway: it is a daemon thread),
    the saves under way finished and the save thread stopped, the autosave folder removed, the settings
    written. Here the exit handlers run as on a normal exit (logging flushed and closed), the standard
    streams are flushed, and the process ends with `status`.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or None under pythonw
            pass
    os._exit(status)


def main() -> NoReturn:
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    exit_process(run_editor(args[0] if args else None, None))


if __name__ == "__main__":
    raise SystemExit(main())
