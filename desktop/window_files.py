"""The editor window's file work: new, open, save (as), recent files, outside changes and autosave.

A mixin of `MainWindow` (desktop/main_window.py), which owns the document and the widgets these
methods show it in; this module holds only what is about the project file.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from canvas.io.errors import CostlyFileError, ProjectError
from canvas.io.limits import DEFAULT_LIMITS, trusting
from canvas.io.ora import PngCache, load_ora, save_ora
from canvas.model.document import Document, DocumentError
from canvas.model.layers import ImageLayer
from canvas.model.snapshot import Snapshots
from desktop import dialogs
from desktop.autosave import FileStamp

PROJECT_FILTER = "Collagen projects (*.ora)"
# A snapshot that copies at most this much is taken at once (a few ms); more is copied over ticks.
SNAPSHOT_NOW_BYTES = 8 << 20
SNAPSHOT_SLICE_SECONDS = 0.005  # copying per event-loop tick
SNAPSHOT_PATIENCE_SECONDS = 10.0
SNAPSHOT_FORCE_BYTES = 64 << 20  # one 4096² RGBA layer: ~20 ms to copy at once
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
        document = self._load_asking(path, load_ora)
        if document is None:
            return False
        self._replace_document(document, path.resolve())
        self._remember(path)
        # Another program saved it after Collagen: say what was restored, until the next message.
        report = document.load_report
        self.statusBar().showMessage(report or f"Opened {path.name}.", 0 if report else 4000)
        return True

    def _load_asking(self, path: Path, load) -> Document | None:
        """`load(path, limits)`, or None after saying why. A file refused only for what it asks of
        memory next to its size (a large, nearly flat canvas packs that small, and so does a crafted
        file) is opened anyway when the user says so."""
        try:
            try:
                return load(path, OPEN_LIMITS)
            except CostlyFileError as exc:
                if not dialogs.ask_yes_no(self, (
                        f"{exc}\n\nA project you made yourself can be like this (a large, nearly empty canvas "
                        "packs very small). A file from elsewhere may have been made to use this much "
                        "memory.\n\nOpen it anyway?")):
                    return None
                return load(path, trusting(OPEN_LIMITS))
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
        except (OSError, DocumentError, MemoryError) as exc:
            dialogs.show_error(self, f"{path.name}: could not be opened ({exc}).")
        return None

    def _open_psd(self, path: Path) -> bool:
        """A PSD becomes a new project: its layers, groups and blend modes, saved as .ora on request."""
        from canvas.io.psd import load_psd  # psd-tools is imported only when a PSD is opened

        document = self._load_asking(path, load_psd)
        if document is None:
            return False
        self._replace_document(document, None, unsaved=True)
        self.statusBar().showMessage(f"Imported {path.name} ({len(document.layers)} layers); "
                                     "Save writes it as a Collagen project (.ora).", 0)
        return True

    def save(self, *, background: bool = False) -> bool:
        """Save to the project's file (asking for one when it has none). `background` (the Save action):
        the file is written on the save thread and this returns once it is under way."""
        if self.path is None:
            return self.save_as(background=background)
        if self.stamp is not None and self.stamp.changed_on_disk() and self.path.exists():
            if not dialogs.ask_overwrite_changed_file(self, self.path):
                return False
        return self._save_to(self.path, background=background)

    def save_as(self, *, background: bool = False) -> bool:
        start = str(self.path) if self.path else str(Path(self._start_dir()) / "Untitled.ora")
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
        if not path:
            return False
        path = Path(path)
        if path.suffix.lower() != ".ora":
            path = path.with_suffix(".ora")
        return self._save_to(path, background=background)

    def _save_to(self, path: Path, *, background: bool = False) -> bool:
        """Write a snapshot of the document with `save_ora` on the save thread (after any save queued
        there). Without `background` it waits and says whether the file was written; with it, the
        snapshot's pixels are copied over the next event-loop ticks and the end is reported by
        `_on_save_job_done`, so a 4096² project of 20 layers saves while the user paints."""
        if background:
            if any(job.path is not None for job in self._save_jobs) or self._project_save_pending:
                self.statusBar().showMessage(f"Still saving {path.name}…", 4000)
                return False
            self._project_save_pending = True

            def start(snapshot: Document) -> None:
                self._project_save_pending = False
                self._submit_save(_SaveJob(path), snapshot)

            self._after_snapshot(start)
            self.statusBar().showMessage(f"Saving {path.name}…")
            return True
        self.wait_for_background_save()
        try:
            snapshot = self._snapshots.take(self.document)
        except MemoryError:
            dialogs.show_error(self, f"{path.name}: could not be saved (not enough memory to copy the project).")
            return False
        job = _SaveJob(path)
        self._submit_save(job, snapshot)
        job.future.result()
        self._on_save_job_done(job)
        return not job.error

    def _finish_project_save(self, job: _SaveJob) -> None:
        self.document.history.saving_ended(not job.error)
        if job.error:
            self.statusBar().clearMessage()
            dialogs.show_error(self, job.error)
            return
        path = job.path
        self.path = path.resolve()
        self.stamp = FileStamp.of(self.path)
        self._unsaved_document = False
        if job.generations_revision is not None:  # the kept generations as the snapshot held them
            self._generations_saved = job.generations_revision
        if self.autosave is not None:
            self.autosave.set_source(self.path)
        self._remember(self.path)
        self._update_title()
        self.statusBar().showMessage(f"Saved {path.name}.", 4000)

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

    # ==== autosave and the save thread ===========================================================
    # Saves run on one save thread, one after another, from snapshots (canvas.model.snapshot: after one
    # stroke a snapshot copies one layer) with one PNG cache (only layers changed since the last save are
    # encoded again), so neither the timer's autosave nor Save blocks painting. A snapshot whose copying
    # would take more than a few milliseconds is copied in slices over event-loop ticks first.
    # `autosave_now` is the synchronous one, for emergencies and restores.
    def _init_background_save(self) -> None:
        self._snapshots = Snapshots()
        self._png_cache = PngCache()
        self._save_thread = ThreadPoolExecutor(1, thread_name_prefix="collagen-save", initializer=_lower_priority)
        self._save_jobs: list[_SaveJob] = []  # submitted, not yet handled on this thread
        self._background_save: _SaveJob | None = None  # the autosave being prepared or written
        self._project_save_pending = False  # Save pressed, its snapshot still being copied
        self._snapshot_waiters: list = []  # callbacks given the next snapshot
        self._snapshot_started = 0.0
        self.save_job_done.connect(self._on_save_job_done)

    def autosave_in_background(self) -> bool:
        """Start an autosave on the save thread; False when there is nothing to save or one is running."""
        if self.autosave is None or self._changes_since_autosave == 0 or self._background_save is not None:
            return False
        job = self._background_save = _SaveJob(None)

        def start(snapshot: Document) -> None:
            job.changes, self._changes_since_autosave = self._changes_since_autosave, 0
            self._submit_save(job, snapshot)

        self._after_snapshot(start)
        return True

    def _after_snapshot(self, callback) -> None:
        """Call `callback(snapshot)` with a snapshot taken now when little is left to copy, or else once
        the pixels are copied (a few milliseconds per tick): the snapshot is the state at that moment."""
        self._snapshot_waiters.append(callback)
        if len(self._snapshot_waiters) > 1:
            return  # already copying; this one gets the same snapshot
        self._snapshot_started = time.perf_counter()
        self._snapshot_document = self.document
        if self._snapshots.pending_bytes(self.document) <= SNAPSHOT_NOW_BYTES:
            self._deliver_snapshot()
        else:
            QTimer.singleShot(0, self._copy_snapshot_slice)

    def _copy_snapshot_slice(self) -> None:
        if not self._snapshot_waiters:
            return  # cancelled (the document was replaced, or a synchronous save came first)
        if self._snapshot_document is not self.document:
            self._cancel_snapshot()
            return
        done = self._snapshots.copy_some(self.document, SNAPSHOT_SLICE_SECONDS)
        # A user who never stops painting still gets saved: after a while the layers being painted (their
        # copies start again at each touch) are copied at once, but never more than one big layer's worth.
        if done or (time.perf_counter() - self._snapshot_started > SNAPSHOT_PATIENCE_SECONDS
                    and self._snapshots.pending_bytes(self.document) <= SNAPSHOT_FORCE_BYTES):
            self._deliver_snapshot()
        else:
            QTimer.singleShot(0, self._copy_snapshot_slice)

    def _deliver_snapshot(self) -> None:
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        try:
            snapshot = self._snapshots.take(self.document)
        except MemoryError:
            self._cancel_waiters(waiters)
            self.statusBar().showMessage("Saving skipped: not enough memory to copy the project.", 8000)
            return
        for callback in waiters:
            callback(snapshot)

    def _cancel_snapshot(self) -> None:
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        self._cancel_waiters(waiters)

    def _cancel_waiters(self, waiters) -> None:
        if waiters:
            if self._background_save is not None and self._background_save.future is None:
                self._background_save = None  # it never started
            self._project_save_pending = False

    def _submit_save(self, job: _SaveJob, snapshot: Document) -> None:
        if job.path is not None:
            self.document.history.saving_started()
            job.generations_revision = snapshot.generations.revision
        self._save_jobs.append(job)
        job.future = self._save_thread.submit(self._write_snapshot, job, snapshot)

    def _write_snapshot(self, job: _SaveJob, snapshot: Document) -> None:  # on the save thread
        try:
            if job.path is None:
                self.autosave.save(snapshot, self._png_cache)
            else:  # the copy repairs a later save by another program
                save_ora(snapshot, job.path, keep_copy=True, cache=self._png_cache)
        except ProjectError as exc:
            job.error = str(exc)
        except (OSError, DocumentError) as exc:
            job.error = f"{job.path.name}: could not be saved ({exc})." if job.path else str(exc)
        except MemoryError:
            job.error = "not enough memory to save the project"
        job.finished_at = time.perf_counter()
        self.save_job_done.emit(job)  # queued to the GUI thread

    def _on_save_job_done(self, job: _SaveJob) -> None:
        if job not in self._save_jobs:
            return  # handled already (wait_for_background_save)
        self._save_jobs.remove(job)
        if job.path is not None:
            self._finish_project_save(job)
            return
        if self._background_save is job:
            self._background_save = None
        if job.error:
            self._changes_since_autosave += job.changes  # the next tick tries again
            self.statusBar().showMessage(f"Autosave failed: {job.error}", 8000)

    def wait_for_background_save(self) -> None:
        """Let the saves under way finish (before a synchronous save, or the session's folder goes);
        a snapshot still being copied is dropped (a synchronous save takes its own)."""
        self._cancel_snapshot()
        for job in list(self._save_jobs):
            job.future.result()
            self._on_save_job_done(job)

    def stop_save_thread(self) -> None:
        """The last thing before the process ends: the saves under way finish and the save thread stops
        (the process then exits without waiting for threads: desktop.app.exit_process)."""
        self.wait_for_background_save()
        self._save_thread.shutdown(wait=True)

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


SAVE_THREAD_NICENESS = 10


def _lower_priority() -> None:
    """The save thread yields the CPU to the GUI thread (on 2 cores a save would otherwise take a core
    the window needs while the user paints). Linux only: there a thread has its own nice value."""
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            thread = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, thread)  # relative: never above the window's
            os.setpriority(os.PRIO_PROCESS, thread, min(19, current + SAVE_THREAD_NICENESS))


OPEN_LIMITS = DEFAULT_LIMITS  # what a file opened from the menu may ask for (tests lower it)


@dataclass(eq=False)
class _SaveJob:
    """One save on the save thread: an autosave (no path) or the project file."""

    path: Path | None
    changes: int = 0  # edits an autosave covers (counted again when it fails)
    error: str = ""
    future: Future | None = None
    finished_at: float = 0.0  # perf_counter when the file was complete
    generations_revision: int | None = None  # the kept generations' revision in the saved snapshot


def new_document(width: int, height: int, background: str = "transparent",
                 settings: dict | None = None) -> Document:
    from canvas.model.document import GenerationSettings

    doc = Document(width, height, settings=GenerationSettings.from_dict(settings) if settings else None)
    if background == "white":
        pixels = np.full((height, width, 4), 255, np.uint8)
        doc.add_layer_untracked(ImageLayer(name="Background", pixels=pixels))
    return doc
