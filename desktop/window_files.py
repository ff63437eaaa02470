"""The editor window's file work: new, open, save (as), recent files, outside changes and autosave.

A mixin of `MainWindow` (desktop/main_window.py), which owns the document and the widgets these
methods show it in; this module holds only what is about the project file.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from canvas.io.errors import ProjectError
from canvas.io.ora import PngCache, load_ora, save_ora
from canvas.model.document import Document, DocumentError
from canvas.model.layers import ImageLayer
from canvas.model.snapshot import Snapshots
from desktop import dialogs
from desktop.autosave import FileStamp

PROJECT_FILTER = "Collagen projects (*.ora)"
OPEN_FILTER = "Collagen projects and Photoshop files (*.ora *.psd);;Collagen projects (*.ora);;Photoshop files (*.psd)"


class ProjectFiles:
    """MainWindow's file actions (mixed into the window class)."""

    # ==== document lifecycle =======================================================================
    def _watch_document(self) -> None:
        history = self.document.history
        history.changed.connect(self._on_history_changed)
        self._history_hook = history

    def _unwatch_document(self) -> None:
        if self._history_hook is not None:
            self._history_hook.changed.disconnect(self._on_history_changed)
            self._history_hook = None

    def _replace_document(self, document: Document, path: Path | None, *, unsaved: bool = False) -> None:
        """Show `document` everywhere; the old one is let go (its staging results too).

        `unsaved`: the document exists in no file yet although its history is clean (a restored
        autosave), so closing or replacing it asks first.
        """
        self._unsaved_document = unsaved
        self.controller.set_document(document)
        self._unwatch_document()
        self.layers_panel.close_document()
        self.region_panel.close_document()
        self.generation_panel.close_document()
        self.document = document
        self.view.set_document(document)
        self.layers_panel.set_document(document)
        self.region_panel.set_document(document)
        self.generation_panel.set_document(document)
        self.path = path
        self.stamp = FileStamp.of(path) if path else None
        self._changes_since_autosave = 0
        self._watch_document()
        self._watch_generations()
        if self.autosave is not None:
            self.autosave.set_source(path)
        self._update_title()
        self._update_actions()
        self._on_staging_changed()
        QTimer.singleShot(0, self.view.fit)
        self.document_replaced.emit(document)

    def maybe_save(self) -> bool:
        """True when it is fine to drop the current document (saved, discarded, or nothing to save)."""
        if not self.has_unsaved_changes:
            return True
        answer = dialogs.ask_save_changes(self, self.display_name)
        if answer == "save":
            return self.save()
        return answer == "discard"

    @property
    def has_unsaved_changes(self) -> bool:
        return self._unsaved_document or not self.document.history.is_clean or self.generations_unsaved

    @property
    def display_name(self) -> str:
        return self.path.name if self.path else "Untitled"

    def action_new(self) -> None:
        if not self.maybe_save():
            return
        dialog = dialogs.NewDocumentDialog(self, self.document.width, self.document.height)
        if dialog.exec() != dialogs.QDialog.DialogCode.Accepted:
            return
        choice = dialog.choice()
        self._replace_document(new_document(choice.width, choice.height, choice.background,
                                            settings=self.document.settings.to_dict()), None)

    def action_open(self) -> None:
        if not self.maybe_save():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open project", self._start_dir(), OPEN_FILTER)
        if path:
            self.open_path(path, ask=False)

    def open_path(self, path: str | Path, *, ask: bool = True) -> bool:
        """Open a project (or a PSD, as a new unsaved project); a broken file is a dialog and the
        current document stays."""
        if ask and not self.maybe_save():
            return False
        path = Path(path)
        if path.suffix.lower() == ".psd":
            return self._open_psd(path)
        try:
            document = load_ora(path)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return False
        except (OSError, DocumentError, MemoryError) as exc:
            dialogs.show_error(self, f"{path.name}: could not be opened ({exc}).")
            return False
        self._replace_document(document, path.resolve())
        self._remember(path)
        # Another program saved it after Collagen: say what was restored, until the next message.
        report = document.load_report
        self.statusBar().showMessage(report or f"Opened {path.name}.", 0 if report else 4000)
        return True

    def _open_psd(self, path: Path) -> bool:
        """A PSD becomes a new project: its layers, groups and blend modes, saved as .ora on request."""
        from canvas.io.psd import load_psd  # psd-tools is imported only when a PSD is opened

        try:
            document = load_psd(path)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return False
        except (OSError, MemoryError) as exc:
            dialogs.show_error(self, f"{path.name}: could not be opened ({exc}).")
            return False
        self._replace_document(document, None, unsaved=True)
        self.statusBar().showMessage(f"Imported {path.name} ({len(document.layers)} layers); "
                                     "Save writes it as a Collagen project (.ora).", 0)
        return True

    def save(self) -> bool:
        if self.path is None:
            return self.save_as()
        if self.stamp is not None and self.stamp.changed_on_disk() and self.path.exists():
            if not dialogs.ask_overwrite_changed_file(self, self.path):
                return False
        return self._save_to(self.path)

    def save_as(self) -> bool:
        start = str(self.path) if self.path else str(Path(self._start_dir()) / "Untitled.ora")
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
        if not path:
            return False
        path = Path(path)
        if path.suffix.lower() != ".ora":
            path = path.with_suffix(".ora")
        return self._save_to(path)

    def _save_to(self, path: Path) -> bool:
        try:
            save_ora(self.document, path, keep_copy=True)  # the copy repairs a later save by another program
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return False
        except (OSError, DocumentError) as exc:
            dialogs.show_error(self, f"{path.name}: could not be saved ({exc}).")
            return False
        self.path = path.resolve()
        self.stamp = FileStamp.of(self.path)
        self._unsaved_document = False
        self.document.history.mark_clean()
        self._generations_saved_now()
        if self.autosave is not None:
            self.autosave.set_source(self.path)
        self._remember(self.path)
        self._update_title()
        self.statusBar().showMessage(f"Saved {path.name}.", 4000)
        return True

    def _remember(self, path: Path) -> None:
        self.settings = self.settings.with_recent(path)
        self.settings.last_directory = str(Path(path).resolve().parent)
        self._save_settings()
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_files:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda checked=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

    def _start_dir(self) -> str:
        return self.settings.last_directory or str(Path.home())

    # ==== autosave =================================================================================
    # The timer's autosave runs on a worker thread from a snapshot (canvas.model.snapshot: after one
    # stroke it copies one layer) with a PNG cache (only changed layers are encoded again), so it never
    # blocks painting. `autosave_now` is the synchronous one, for emergencies and restores.
    def _init_background_save(self) -> None:
        self._snapshots = Snapshots()
        self._png_cache = PngCache()
        self._background_save: threading.Thread | None = None
        self.background_save_done.connect(self._on_background_save_done)

    def autosave_in_background(self) -> bool:
        """Start an autosave on a worker thread; False when there is nothing to save or one is running."""
        if self.autosave is None or self._changes_since_autosave == 0 or self._background_save is not None:
            return False
        try:
            snapshot = self._snapshots.take(self.document)
        except MemoryError:
            self.statusBar().showMessage("Autosave skipped: not enough memory to copy the project.", 8000)
            return False
        changes, self._changes_since_autosave = self._changes_since_autosave, 0
        thread = threading.Thread(target=self._save_snapshot, args=(snapshot, changes), name="collagen-autosave",
                                  daemon=True)
        self._background_save = thread
        thread.start()
        return True

    def _save_snapshot(self, snapshot: Document, changes: int) -> None:  # on the worker thread
        try:
            self.autosave.save(snapshot, self._png_cache)
            error = ""
        except (ProjectError, OSError, DocumentError) as exc:
            error = str(exc)
        except MemoryError:
            error = "not enough memory to save the project"
        self.background_save_done.emit(error, changes)  # queued to the GUI thread

    def _on_background_save_done(self, error: str, changes: int) -> None:
        thread, self._background_save = self._background_save, None
        if thread is not None:
            thread.join()
        if error:
            self._changes_since_autosave += changes  # the next tick tries again
            self.statusBar().showMessage(f"Autosave failed: {error}", 8000)

    def wait_for_background_save(self) -> None:
        """Let a running autosave finish (before a synchronous save, or the session's folder goes)."""
        thread = self._background_save
        if thread is not None:
            thread.join()
            self._background_save = None

    def autosave_now(self, force: bool = False) -> Path | None:
        if self.autosave is None or (self._changes_since_autosave == 0 and not force):
            return None
        self.wait_for_background_save()
        try:
            path = self.autosave.save(self.document)
        except (ProjectError, OSError, DocumentError) as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 8000)
            return None
        self._changes_since_autosave = 0
        return path


def new_document(width: int, height: int, background: str = "transparent",
                 settings: dict | None = None) -> Document:
    from canvas.model.document import GenerationSettings

    doc = Document(width, height, settings=GenerationSettings.from_dict(settings) if settings else None)
    if background == "white":
        pixels = np.full((height, width, 4), 255, np.uint8)
        doc.add_layer_untracked(ImageLayer(name="Background", pixels=pixels))
    return doc
