"""The editor window: canvas in the middle, panels around it, menus, shortcuts, the generation wiring.

The window owns one Document at a time. Opening or creating another one replaces it in the
canvas, the panels and the generation controller (`_replace_document`). Every change the user
makes is a command on the document; the window only keeps what is about the file (path, the
stamp used to notice outside changes) and about the session (autosave, recent files).

Its jobs live in modules of their own, mixed into `MainWindow`: files, recent files and autosave
(window_files), image import, drag and drop and paste (window_import), PNG export (window_export),
another picture's generation parameters into the panel (use_parameters), the kept generations
(window_generations).
What stays here (over 500 lines) is the construction of the widgets and the signal wiring between
canvas, panels and generation, which only reads well in one place.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from canvas.model.commands import AddLayer
from canvas.model.document import Document, DocumentError
from canvas.model.layers import Layer, MaskLayer, Rect, RegionLayer, ScribbleLayer
from canvas.model.paint import PaintError, clear_mask, fill_mask, invert_mask
from canvas.view.canvas_view import CanvasView, zoom_percent
from desktop import dialogs
from desktop.actions import TOOL_SPECS, WindowActions, app_icon
from desktop.autosave import Autosave, FileStamp
from desktop.generation import GenerationController, Job, JobState
from desktop.panels.first_run import FirstRunCard
from desktop.panels.generation import GenerationPanel, format_duration, progress_text
from desktop.panels.history import HistoryPanel
from desktop.panels.layers import LayersPanel
from desktop.panels.region import RegionInspector
from desktop.panels.staging import StagingStrip
from desktop.panels.tool_options import ToolOptions
from desktop.settings import AppSettings, SettingsError, SettingsStore, default_models_dir
from desktop.use_parameters import ParameterImport
from desktop.window_export import PngExport
from desktop.window_files import ProjectFiles, new_document
from desktop.window_generations import GenerationHistory
from desktop.window_import import ImageImport
from desktop.worker import InferenceWorker

log = logging.getLogger(__name__)
CANVAS_SHARE = 0.45  # of the window's width, what the canvas keeps when the window gets narrow
GENERATION_DOCK_FLOOR = 330  # px: the generation dock shrinks no further for the canvas's sake

class MainWindow(ProjectFiles, ImageImport, ParameterImport, PngExport, GenerationHistory, QMainWindow):
    document_replaced = Signal(object)
    save_job_done = Signal(object)  # a _SaveJob the save thread finished (desktop/window_files.py)

    def __init__(self, *, worker: InferenceWorker, settings_store: SettingsStore, settings: AppSettings,
                 autosave: Autosave | None = None, models: Any = None, document: Document | None = None,
                 theme: Any = None):
        super().__init__()
        self.worker = worker
        self.settings_store = settings_store
        self.settings = settings
        self.autosave = autosave
        self.models = models  # the ModelManager the engine uses (discovery runs on the worker thread)
        self.theme = theme  # desktop.app.Theme: follows the system or the settings' choice
        self.document = document if document is not None else new_document(512, 512)
        self.path: Path | None = None
        self.stamp: FileStamp | None = None
        self._changes_since_autosave = 0
        self._history_hook = None
        self._closing = False
        self._discovery_task: asyncio.Task | None = None
        self._model_warm = False  # a generation finished: the next one starts without loading
        self._cli_models: list[str] = []  # --models folders, kept first when folders change
        self._staged_job: tuple[int, ...] | None = None
        self._unsaved_document = False  # see _replace_document
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)

        self.actions = WindowActions(self)
        self.view = CanvasView(self.document, self)
        self.controller = GenerationController(worker, self.document, preview_method=settings.preview, parent=self)
        self._build_central()
        self._build_panels()
        self._build_tool_bars()
        self._build_menus()
        self._build_status_bar()
        self._connect()
        self._watch_document()
        self._watch_generations()
        self._update_title()
        self._update_actions()
        self.view.set_tool("move")  # neutral until a tool is picked (the brush would need a mask first)
        self._init_background_save()
        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self.autosave_in_background)
        self.apply_settings(settings)
        self._restore_geometry()

    # ==== construction ===========================================================================
    def _build_central(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.view, 1)
        self.staging_strip = StagingStrip(self.actions.by_name, central)
        layout.addWidget(self.staging_strip)
        self.setCentralWidget(central)
        self.first_run = FirstRunCard(self.view, central)
        for name in ("accept", "next_candidate", "previous_candidate", "delete_layer"):
            central.addAction(self.actions[name])
        # drops are the window's business: image files become layers where they land on the canvas
        self.view.setAcceptDrops(False)
        self.view.viewport().setAcceptDrops(False)

    def _build_panels(self) -> None:
        self.layers_panel = LayersPanel(self.document, self)
        self.region_panel = RegionInspector(self.document, self)
        self.generation_panel = GenerationPanel(self.document, self)
        self.history_panel = HistoryPanel(self)
        self.layers_dock = self._dock("Layers", self.layers_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.region_dock = self._dock("Region", self.region_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.history_dock = self._dock("History", self.history_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tabifyDockWidget(self.region_dock, self.history_dock)
        self.region_dock.raise_()
        self._build_generations_dock()
        self.generation_dock = self._dock("Generation", self.generation_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.layers_dock, self.generation_dock], [290, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.layers_dock, self.region_dock], [330, 300], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _build_tool_bars(self) -> None:
        tools = QToolBar("Tools", self)
        tools.setObjectName("toolbar_tools")
        tools.setMovable(False)
        tools.setOrientation(Qt.Orientation.Vertical)
        for spec in TOOL_SPECS:
            if spec.name in self.view.tools:
                tools.addAction(self.actions.tools[spec.name])
        tools.addSeparator()
        tools.addAction(self.actions["zoom_fit"])
        self.addToolBar(Qt.ToolBarArea.LeftToolBarArea, tools)
        main = QToolBar("Main", self)
        main.setObjectName("toolbar_main")
        main.setMovable(False)
        for name in ("new", "open", "save", None, "undo", "redo", None, "import_image", "export_png"):
            if name is None:
                main.addSeparator()
            else:
                main.addAction(self.actions[name])
        main.addSeparator()
        self.tool_options = ToolOptions(self.view, main)
        main.addWidget(self.tool_options)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, main)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        a = self.actions
        file_menu = bar.addMenu("&File")
        for name in ("new", "open"):
            file_menu.addAction(a[name])
        self.recent_menu = QMenu("Open &Recent", self)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        for name in ("save", "save_as", None, "import_image", "import_collage", "import_reference",
                     "use_parameters", None, "export_png", "export_psd", None, "settings", None, "quit"):
            file_menu.addSeparator() if name is None else file_menu.addAction(a[name])
        edit_menu = bar.addMenu("&Edit")
        for name in ("undo", "redo", None, "paste"):
            edit_menu.addSeparator() if name is None else edit_menu.addAction(a[name])
        view_menu = bar.addMenu("&View")
        for name in ("zoom_in", "zoom_out", "zoom_fit", "zoom_100"):
            view_menu.addAction(a[name])
        view_menu.addSeparator()
        self.overlay_actions: dict[str, QAction] = {}
        for kind in ("masks", "regions", "annotations"):  # drawn above the picture; each can be hidden
            action = view_menu.addAction(f"Show {kind.title()}")
            action.setCheckable(True)
            action.setChecked(True)
            action.toggled.connect(lambda shown, k=kind: self.view.set_overlay_shown(k, shown))
            self.overlay_actions[kind] = action
        view_menu.addSeparator()
        for dock in (self.layers_dock, self.region_dock, self.history_dock, self.generations_dock,
                     self.generation_dock):
            view_menu.addAction(dock.toggleViewAction())
        layer_menu = bar.addMenu("&Layer")
        for name in ("add_mask", "add_region", "add_sketch", "add_annotation", None, "import_image",
                     "import_collage", "import_reference", None, "mask_fill", "mask_clear", "mask_invert", None,
                     "layer_up", "layer_down", "delete_layer"):
            layer_menu.addSeparator() if name is None else layer_menu.addAction(a[name])
        tools_menu = bar.addMenu("&Tools")
        for spec in TOOL_SPECS:
            if spec.name in self.view.tools:
                tools_menu.addAction(a.tools[spec.name])
        gen_menu = bar.addMenu("&Generate")
        for name in ("generate", "cancel", None, "accept", "next_candidate", "previous_candidate", "discard",
                     "regenerate"):
            gen_menu.addSeparator() if name is None else gen_menu.addAction(a[name])
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(a["models_help"])
        help_menu.addAction(a["about"])
        # menus also carry the window-wide shortcuts of actions that are on no toolbar
        for action in list(a.by_name.values()) + list(a.tools.values()):
            if action.shortcuts() and action not in self.actions_in_widgets():
                self.addAction(action)

    def actions_in_widgets(self) -> list[QAction]:
        return list(self.centralWidget().actions())

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.status_progress = QProgressBar(self)
        self.status_progress.setMaximumWidth(180)
        self.status_progress.setTextVisible(False)
        self.status_progress.hide()
        self.status_job = QLabel(self)
        self.status_cursor = QLabel(self)
        self.status_zoom = QLabel(zoom_percent(self.view.zoom), self)
        status.addPermanentWidget(self.status_job)
        status.addPermanentWidget(self.status_progress)
        status.addPermanentWidget(self.status_cursor)
        status.addPermanentWidget(self.status_zoom)

    def _connect(self) -> None:
        a = self.actions
        slots = {
            "new": self.action_new, "open": self.action_open, "save": lambda: self.save(background=True),
            "save_as": lambda: self.save_as(background=True),
            "import_image": lambda: self.action_import("image"), "import_collage": lambda: self.action_import("collage"),
            "import_reference": lambda: self.action_import("reference"), "export_png": self.action_export_png,
            "export_psd": self.action_export_psd, "use_parameters": self.action_use_parameters,
            "settings": self.action_settings, "quit": self.close, "undo": self.undo, "redo": self.redo,
            "paste": self.paste, "zoom_in": self.view.zoom_in, "zoom_out": self.view.zoom_out,
            "zoom_fit": self.view.fit, "zoom_100": self.view.actual_size,
            "add_mask": lambda: self.add_layer("mask"), "add_region": lambda: self.add_layer("region"),
            "add_sketch": lambda: self.add_layer("sketch"), "add_annotation": lambda: self.add_layer("annotation"),
            "delete_layer": self.layers_panel.delete_selected,
            "layer_up": lambda: self.layers_panel.move_selected(+1),
            "layer_down": lambda: self.layers_panel.move_selected(-1),
            "mask_fill": lambda: self._mask_command(fill_mask), "mask_clear": lambda: self._mask_command(clear_mask),
            "mask_invert": lambda: self._mask_command(invert_mask),
            "generate": self.generate, "cancel": self.cancel_or_discard, "accept": self.controller.accept,
            "discard": self.controller.discard, "next_candidate": self.controller.next_candidate,
            "previous_candidate": self.controller.previous_candidate, "regenerate": self.controller.regenerate,
            "models_help": self.show_models_help, "about": self.show_about,
        }
        for name, slot in slots.items():
            a[name].triggered.connect(lambda checked=False, s=slot: s())
        for name, action in a.tools.items():
            action.triggered.connect(lambda checked=False, n=name: self.select_tool(n))
        a.tools.get(self.view.tool_name, a.tools["move"]).setChecked(True)
        self.view.tool_changed.connect(self._on_tool_changed)
        self.view.status_message.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self.view.zoom_changed.connect(lambda z: self.status_zoom.setText(zoom_percent(z)))
        self.view.cursor_moved.connect(self._on_cursor_moved)
        eyedropper = self.view.tools.get("eyedropper")
        if eyedropper is not None and hasattr(eyedropper, "color_picked"):
            eyedropper.color_picked.connect(self._on_color_picked)
        self.layers_panel.add_requested.connect(self._on_add_requested)
        gp = self.generation_panel
        gp.generate_requested.connect(self.generate)
        gp.cancel_requested.connect(self.controller.cancel)
        card = self.first_run
        card.add_folder_requested.connect(self.action_add_models_folder)
        card.open_folder_requested.connect(self._open_models_folder)
        card.demo_requested.connect(gp.use_demo_model)
        card.dismissed.connect(self._on_first_run_dismissed)
        gp.refresh_models_requested.connect(self.refresh_models)
        c = self.controller
        c.job_changed.connect(self._on_job_changed)
        c.progress_changed.connect(self._on_progress)
        c.preview_ready.connect(self._on_preview)
        c.preview_cleared.connect(self._on_preview_cleared)
        c.staging_changed.connect(self._on_staging_changed)
        c.failed.connect(self._on_failed)
        c.notice.connect(lambda text: self.statusBar().showMessage(text, 8000))
        c.accepted.connect(lambda layer: self.statusBar().showMessage(f"Added {layer.name}.", 4000))
        self.history_panel.restore_requested.connect(self._on_restore_requested)
        self.staging_strip.candidate_clicked.connect(self.controller.select_candidate)

    # ==== layers ===================================================================================
    def add_layer(self, kind: str) -> Layer | None:
        doc = self.document
        w, h = doc.width, doc.height
        if kind == "mask":
            layer: Layer = MaskLayer(name=_next_name(doc, "Mask"), pixels=np.zeros((h, w), np.uint8))
        elif kind == "region":
            layer = RegionLayer(name=_next_name(doc, "Region"), rect=(w // 4, h // 4, w // 2, h // 2))
        elif kind in ("sketch", "annotation"):
            layer = ScribbleLayer(name=_next_name(doc, "Sketch" if kind == "sketch" else "Annotation"), mode=kind)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        doc.execute(AddLayer(layer))
        doc.active_layer = layer
        return layer

    def _on_add_requested(self, kind: str) -> None:
        if kind in ("image", "collage", "reference"):
            self.action_import(kind)
        else:
            self.add_layer(kind)

    def _mask_command(self, make) -> None:
        layer = self.document.active_layer
        if not isinstance(layer, (MaskLayer, RegionLayer)):
            self.statusBar().showMessage("Select a mask or region layer first.", 4000)
            return
        try:
            self.document.execute(make(layer, self.document.width, self.document.height))
        except (PaintError, DocumentError) as exc:
            dialogs.show_error(self, str(exc))

    # ==== tools ====================================================================================
    def select_tool(self, name: str) -> None:
        if name not in self.view.tools:
            return
        self._ensure_target_for(name)
        self.view.set_tool(name)
        self.view.setFocus()

    def _ensure_target_for(self, tool: str) -> None:
        """Brush and pen need a layer of their kind: pick the topmost one, or make one."""
        doc = self.document
        active = doc.active_layer
        if tool in ("brush", "eraser"):
            kinds: tuple[type, ...] = (MaskLayer, RegionLayer)
            make = "mask" if tool == "brush" else None
        elif tool == "scribble":
            kinds, make = (ScribbleLayer,), "sketch"
        else:
            return
        if isinstance(active, kinds) and not active.locked:
            return
        # a region is reshaped only when it is the selected layer: otherwise the brush looks for a mask
        wanted = (MaskLayer,) if tool in ("brush", "eraser") else kinds
        for layer in reversed(doc.layers):
            if isinstance(layer, wanted) and layer.visible and not layer.locked:
                doc.active_layer = layer
                return
        if make is not None:
            self.add_layer(make)

    def _on_tool_changed(self, name: str) -> None:
        action = self.actions.tools.get(name)
        if action is not None and not action.isChecked():
            action.setChecked(True)

    def _on_color_picked(self, color) -> None:
        pen = self.view.tools.get("scribble")
        if pen is not None:
            pen.set_color(color)
        self.tool_options.refresh()

    def _on_cursor_moved(self, x: float, y: float) -> None:
        if 0 <= x < self.document.width and 0 <= y < self.document.height:
            self.status_cursor.setText(f"{int(x)}, {int(y)}")
        else:
            self.status_cursor.setText("")

    # ==== undo =====================================================================================
    def undo(self) -> None:
        if self.view.tool.busy:
            self.view.tool.cancel()
        self.document.undo()

    def redo(self) -> None:
        if self.view.tool.busy:
            self.view.tool.cancel()
        self.document.redo()

    def _on_history_changed(self) -> None:
        self._changes_since_autosave += 1
        self._update_title()
        self._update_actions()

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.display_name}[*] — Collagen")
        self.setWindowModified(self.has_unsaved_changes)

    def _update_actions(self) -> None:
        history = self.document.history
        a = self.actions
        a["undo"].setEnabled(history.can_undo)
        a["redo"].setEnabled(history.can_redo)
        a["undo"].setText(f"&Undo {history.undo_label}".rstrip())
        a["redo"].setText(f"&Redo {history.redo_label}".rstrip())
        staged = self.controller.staging is not None
        for name in ("accept", "discard", "next_candidate", "previous_candidate"):
            a[name].setEnabled(staged)
        a["cancel"].setEnabled(staged or self.controller.busy)
        a["regenerate"].setEnabled(bool(self.controller.jobs))

    # ==== generation ===============================================================================
    def generate(self) -> Job | None:
        self.generation_panel.end_edit_bursts()  # what is typed after this is a new undo step
        problem = self.generation_panel.model_problem()
        if problem:  # refused before anything is frozen or queued, in the sentence the panel shows
            self.generation_panel.set_status(problem)
            self.statusBar().showMessage(problem, 8000)
            return None
        info = self.generation_panel.model_info()  # discovery's family: the native generation size
        job = self.controller.generate(family=info.family if info is not None else None)
        self._update_actions()
        return job

    def cancel_or_discard(self) -> None:
        if self.controller.busy:
            self.controller.cancel()
        elif self.controller.staging is not None:
            self.controller.discard()

    def _on_job_changed(self, job: Job) -> None:
        self.history_panel.job_changed(job)
        panel = self.generation_panel
        running = self.controller.busy
        if job.state is JobState.RUNNING and job.step == 0:
            panel.set_waiting("Loading the model…" if not self._model_warm else "Starting…")
            self.status_job.setText("Generating…")
            self.status_progress.setRange(0, 0)
            self.status_progress.show()
        elif job.state is JobState.QUEUED:
            panel.set_waiting("Waiting for the running generation…")
        elif job.state.done:
            self._model_warm = self._model_warm or job.state is JobState.FINISHED
            if not running:
                panel.set_running(False)
                self.status_progress.hide()
                self.status_job.setText("")
            took = format_duration((job.ended or 0) - (job.started or job.created))
            panel.set_status({JobState.FINISHED: f"Done in {took}.", JobState.FAILED: "Failed.",
                              JobState.CANCELLED: "Cancelled."}[job.state])
        self._update_actions()

    def _on_progress(self, job: Job, step: int, total: int, seconds_left: float) -> None:
        self.generation_panel.set_progress(step, total, seconds_left)
        self.status_progress.setRange(0, max(total, 1))
        self.status_progress.setValue(step)
        self.status_job.setText(progress_text(step, total, seconds_left))

    def _on_preview(self, rect: Rect, rgb: np.ndarray) -> None:
        if self.controller.staging is None:
            self.view.staging.show_preview(rect, rgb)

    def _on_preview_cleared(self) -> None:
        if self.controller.staging is None:
            self.view.staging.clear()

    def _on_staging_changed(self) -> None:
        staging = self.controller.staging
        overlay = self.view.staging
        if staging is None:
            overlay.clear()
            self._staged_job = None
        else:
            if not staging.one_area:  # batches over different areas: the overlay holds the shown one
                overlay.set_candidates([staging.candidates[staging.index]], staging.area)
                self._staged_job = None
                overlay.show_candidate(0)
            else:
                if self._staged_job != staging.key or len(overlay.candidates) != staging.count:
                    overlay.set_candidates(staging.candidates, staging.area)
                    self._staged_job = staging.key
                overlay.show_candidate(staging.index)
        self.staging_strip.show_staging(staging)
        self._update_actions()

    def _on_failed(self, message: str) -> None:
        dialogs.show_error(self, message)

    def _on_restore_requested(self, job: Job) -> None:
        changed = self.controller.restore_settings(job.settings)
        self.statusBar().showMessage(f"Restored {changed} setting{'s' if changed != 1 else ''} of that "
                                     "generation." if changed else "These settings are already in use.", 4000)

    # ==== models ===================================================================================
    def refresh_models(self) -> asyncio.Task | None:
        """Discover models on the inference thread and fill the model pickers."""
        if self.models is None:
            return None
        if self._discovery_task is not None and not self._discovery_task.done():
            return self._discovery_task
        self._discovery_task = asyncio.ensure_future(self._refresh_models())
        return self._discovery_task

    async def _refresh_models(self, note: str = "") -> None:
        """`note` (what was just changed) leads the status message about what was found."""
        models = self.models

        def discover(engine):
            found = models.discover()
            catalog = models.catalog
            return found, [v.name for v in catalog.vaes], [lo.name for lo in catalog.loras], list(catalog.problems)

        try:
            found, vaes, loras, problems = await self.worker.call(discover)
        except Exception as exc:  # noqa: BLE001 - a broken folder must not stop the editor
            log.warning("model discovery failed: %s", exc)
            self.statusBar().showMessage(f"Looking for models failed: {exc}", 8000)
            return
        self.generation_panel.set_models(found, vaes, loras, problems)
        self.region_panel.set_available_loras(loras)
        real = [m for m in found if m.kind != "builtin"]
        self._show_first_run(not real)
        text = (f"Found {len(real)} model{'s' if len(real) != 1 else ''}." if real else
                "No models found yet; the built-in demo model (noise) is available.")
        if problems:
            text += f" {len(problems)} file{'s were' if len(problems) != 1 else ' was'} skipped: {problems[0]}"
        self.statusBar().showMessage(f"{note} {text}".strip(), 10_000)

    def _show_first_run(self, no_models: bool) -> None:
        """The card over the canvas, while no model of the user's own is found, until it is dismissed."""
        if not no_models or self.settings.first_run_dismissed:
            self.first_run.hide()
            return
        folders = getattr(self.models, "folders", None)
        looked_in = [default_models_dir()]
        if folders is not None:
            looked_in += list(folders.roots) + [f for kind in folders.typed.values() for f in kind]
        self.first_run.set_folders(looked_in)
        self.first_run.show_card()

    def _on_first_run_dismissed(self) -> None:
        self.settings.first_run_dismissed = True
        self._save_settings()

    def _open_models_folder(self) -> None:
        folder = default_models_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            dialogs.show_error(self, f"The models folder {folder} could not be made: {exc.strerror or exc}.")
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def action_add_models_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder (a folder of checkpoints, or an "
                                                        "A1111 / ComfyUI install)", self._start_dir())
        if folder:
            self.add_models_folder(Path(folder))

    def add_models_folder(self, folder: Path) -> None:
        layout = dialogs.detect_layout(folder)
        settings = AppSettings.from_dict(self.settings.__dict__)
        if str(folder) not in settings.model_folders:
            settings.model_folders.append(str(folder))
        note = f"Added {folder.name}: {layout.description}."
        self.statusBar().showMessage(note, 6000)
        self._apply_model_folders(settings, note)

    def _apply_model_folders(self, settings: AppSettings, note: str = "") -> None:
        """Save the folders and point discovery at them (on the inference thread, between jobs)."""
        self.settings = settings
        self._save_settings()
        if self.models is None or not hasattr(self.models, "folders"):
            return
        from inference.api import ModelError
        from inference.models import find_model_folders

        try:
            folders = find_model_folders(self._cli_models, settings_file=self.settings_store.path)
        except ModelError as exc:
            dialogs.show_error(self, str(exc))
            return
        models = self.models

        def swap(engine):
            models.unload()
            models.folders = folders

        self._discovery_task = asyncio.ensure_future(self._then_refresh(self.worker.call(swap), note))

    async def _then_refresh(self, awaitable, note: str = "") -> None:
        try:
            await awaitable
        except Exception as exc:  # noqa: BLE001 - the editor goes on with the folders it had
            self.statusBar().showMessage(f"Could not use the new model folders: {exc}", 8000)
            return
        await self._refresh_models(note)

    def set_cli_models_dir(self, folder: str | None) -> None:
        self._cli_models = [folder] if folder else []

    # ==== settings =================================================================================
    def action_settings(self) -> None:
        dialog = dialogs.SettingsDialog(self.settings, self, default_models=default_models_dir())
        if dialog.exec() != dialogs.QDialog.DialogCode.Accepted:
            return
        new = dialog.result_settings()
        folders_changed = new.model_folders != self.settings.model_folders
        device_changed = new.device != self.settings.device
        fast_path_changed = new.fast_path != self.settings.fast_path
        self.apply_settings(new)
        if fast_path_changed:
            asyncio.ensure_future(self.worker.call(lambda engine: set_fast_path(engine, new.fast_path)))
        if folders_changed:
            self._apply_model_folders(new)
        else:
            self._save_settings()
        if device_changed and self.models is not None:
            models, device = self.models, None if new.device == "auto" else new.device

            def switch(engine):
                models.unload()
                models._device, models._dtype = device, None

            self._discovery_task = asyncio.ensure_future(self._then_refresh(self.worker.call(switch)))

    def apply_settings(self, settings: AppSettings) -> None:
        self.settings = settings
        self.controller.preview_method = settings.preview
        self.apply_generations_budget(settings.generations_mb)
        self._autosave_timer.setInterval(max(1000, int(settings.autosave_minutes * 60_000)))
        if self.autosave is not None:
            self.autosave.keep = settings.autosave_keep
            self._autosave_timer.start()
        else:
            self._autosave_timer.stop()
        if self.theme is not None:
            self.theme.set_preference(settings.theme)
        self._rebuild_recent_menu()

    def _save_settings(self) -> None:
        try:
            self.settings_store.save(self.settings)
        except SettingsError as exc:
            self.statusBar().showMessage(str(exc), 8000)

    # ==== help =====================================================================================
    def show_models_help(self) -> None:
        dialogs.show_info(self, "Collagen runs Stable Diffusion 1.5 and SDXL checkpoints (.safetensors), their "
                                "inpaint versions, diffusers folders and instruction-edit models from your disk. "
                                f"Put them into {default_models_dir()}, or add the models folder of an A1111 or "
                                "ComfyUI install in Settings. Nothing is ever downloaded.")

    def show_about(self) -> None:
        dialogs.show_info(self, "Collagen — compose pictures with local diffusion models: masks, region prompts, "
                                "collage refine and instruction edits, fully offline. MIT licence.")

    # ==== window ===================================================================================
    def _restore_geometry(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        else:
            # A first start fits the screen it opens on (a 1400 px wide screen must not clip the panels).
            screen = self.screen().availableGeometry() if self.screen() else None
            width, height = 1440, 900
            if screen is not None and screen.width() > 0:
                width, height = min(width, int(screen.width() * 0.95)), min(height, int(screen.height() * 0.92))
            self.resize(width, height)
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closing and not self.maybe_save():
            event.ignore()
            return
        self._closing = True
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self._save_settings()
        self._autosave_timer.stop()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop generating and let the inference thread go; a clean exit leaves nothing to restore."""
        if self._discovery_task is not None:
            self._discovery_task.cancel()
        self.controller.shutdown()
        self.worker.shutdown(timeout=3.0)
        self.wait_for_background_save()
        if self.autosave is not None:
            self.autosave.finish()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.keep_canvas_room)
        QTimer.singleShot(0, self.view.fit)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() < event.oldSize().width():
            QTimer.singleShot(0, self.keep_canvas_room)

    def keep_canvas_room(self) -> None:
        """A narrow window shrinks the side docks (down to what their controls need) before the canvas.

        At 1024 px the docks' usual widths left the canvas under 300 px; the docks give back what
        they have above their minimum until the canvas has CANVAS_SHARE of the window, or they are at it.
        """
        docks = [d for d in (self.layers_dock, self.generation_dock) if d.isVisible() and not d.isFloating()]
        shortfall = int(self.width() * CANVAS_SHARE) - self.centralWidget().width()
        if shortfall <= 0 or not docks:
            return
        floors = {self.generation_dock: GENERATION_DOCK_FLOOR}  # the prompt stays wide enough to read
        spare = [max(d.width() - max(d.minimumSizeHint().width(), floors.get(d, 0)), 0) for d in docks]
        total = sum(spare)
        if total <= 0:
            return
        take = min(shortfall, total)
        widths = [d.width() - round(take * room / total) for d, room in zip(docks, spare)]
        self.resizeDocks(docks, widths, Qt.Orientation.Horizontal)


def _next_name(doc: Document, base: str) -> str:
    names = {layer.name for layer in doc.layers}
    n = 1
    while f"{base} {n}" in names:
        n += 1
    return f"{base} {n}"


def set_fast_path(engine, setting: str) -> None:
    """On the inference thread: the next generation follows the new fast-path setting (an engine
    without the hook, e.g. a test's, has nothing to switch)."""
    hook = getattr(engine, "fast_path", None)
    if hook is not None:
        hook.setting = setting
