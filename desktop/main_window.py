"""The editor window: canvas in the middle, panels around it, menus, shortcuts, files, autosave.

The window owns one Document at a time. Opening or creating another one replaces it in the
canvas, the panels and the generation controller (`_replace_document`). Every change the user
makes is a command on the document; the window only keeps what is about the file (path, the
stamp used to notice outside changes) and about the session (autosave, recent files).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QImage
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

from canvas.io.errors import ProjectError
from canvas.io.ora import load_ora, save_ora
from canvas.io.png_info import write_png
from canvas.model.commands import AddLayer
from canvas.model.compose import compose
from canvas.model.document import MAX_DOCUMENT_SIDE, Document, DocumentError
from canvas.model.layers import ImageLayer, Layer, MaskLayer, Rect, RegionLayer, ScribbleLayer
from canvas.model.paint import PaintError, clear_mask, fill_mask, invert_mask
from canvas.view.canvas_view import CanvasView, zoom_percent
from canvas.view.qimage import to_numpy
from desktop import dialogs
from desktop.actions import TOOL_SPECS, WindowActions, app_icon
from desktop.autosave import Autosave, FileStamp
from desktop.generation import AcceptCandidate, GenerationController, Job, JobState
from desktop.panels.generation import GenerationPanel, format_duration, progress_text
from desktop.panels.history import HistoryPanel
from desktop.panels.layers import LayersPanel
from desktop.panels.region import RegionInspector
from desktop.panels.staging import StagingStrip
from desktop.panels.tool_options import ToolOptions
from desktop.settings import AppSettings, SettingsError, SettingsStore, default_models_dir
from desktop.worker import InferenceWorker

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ")"
PROJECT_FILTER = "Collagen projects (*.ora)"
MAX_IMPORT_PIXELS = 1 << 28


def read_image_file(path: str | Path) -> np.ndarray:
    """An image file as HxWx4 uint8 RGBA (EXIF rotation applied); ProjectError with one sentence."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width > MAX_DOCUMENT_SIDE or height > MAX_DOCUMENT_SIDE or width * height > MAX_IMPORT_PIXELS:
                raise ProjectError(path, f"is {width}x{height} px; images may be at most {MAX_DOCUMENT_SIDE} px "
                                         "per side")
            image.load()
            image = ImageOps.exif_transpose(image).convert("RGBA")
            return np.asarray(image, dtype=np.uint8).copy()
    except ProjectError:
        raise
    except FileNotFoundError:
        raise ProjectError(path, "does not exist") from None
    except UnidentifiedImageError:
        raise ProjectError(path, "is not an image Collagen can read") from None
    except Image.DecompressionBombError:
        raise ProjectError(path, "declares too many pixels to be a real picture") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ProjectError(path, f"cannot be read as an image ({exc})") from None


def _image_paths(mime) -> list[str]:
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls()
            if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES)]


class MainWindow(QMainWindow):
    document_replaced = Signal(object)

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
        self._staged_job: int | None = None
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
        self._update_title()
        self._update_actions()
        self.view.set_tool("move")  # neutral until a tool is picked (the brush would need a mask first)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self.autosave_now)
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
        for name in ("accept", "next_candidate", "previous_candidate", "delete_layer"):
            central.addAction(self.actions[name])
        # drops are the window's business: image files become layers where they land on the canvas
        self.view.setAcceptDrops(False)
        self.view.viewport().setAcceptDrops(False)

    def _build_panels(self) -> None:
        self.layers_panel = LayersPanel(self.document, self)
        self.region_panel = RegionInspector(self.document, self)
        self.generation_panel = GenerationPanel(self.document, self, models_folder=default_models_dir())
        self.history_panel = HistoryPanel(self)
        self.layers_dock = self._dock("Layers", self.layers_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.region_dock = self._dock("Region", self.region_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.history_dock = self._dock("History", self.history_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tabifyDockWidget(self.region_dock, self.history_dock)
        self.region_dock.raise_()
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
        self.tools_bar = tools
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
        self.main_bar = main

    def _build_menus(self) -> None:
        bar = self.menuBar()
        a = self.actions
        file_menu = bar.addMenu("&File")
        for name in ("new", "open"):
            file_menu.addAction(a[name])
        self.recent_menu = QMenu("Open &Recent", self)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        for name in ("save", "save_as", None, "import_image", "import_collage", "import_reference", "export_png",
                     "export_psd", None, "settings", None, "quit"):
            file_menu.addSeparator() if name is None else file_menu.addAction(a[name])
        edit_menu = bar.addMenu("&Edit")
        for name in ("undo", "redo", None, "paste"):
            edit_menu.addSeparator() if name is None else edit_menu.addAction(a[name])
        view_menu = bar.addMenu("&View")
        for name in ("zoom_in", "zoom_out", "zoom_fit", "zoom_100"):
            view_menu.addAction(a[name])
        view_menu.addSeparator()
        for dock in (self.layers_dock, self.region_dock, self.history_dock, self.generation_dock):
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
            "new": self.action_new, "open": self.action_open, "save": self.save, "save_as": self.save_as,
            "import_image": lambda: self.action_import("image"), "import_collage": lambda: self.action_import("collage"),
            "import_reference": lambda: self.action_import("reference"), "export_png": self.action_export_png,
            "export_psd": self.action_export_psd,
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
        gp.add_models_folder_requested.connect(self.action_add_models_folder)
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
        return self._unsaved_document or not self.document.history.is_clean

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
        path, _ = QFileDialog.getOpenFileName(self, "Open project", self._start_dir(), PROJECT_FILTER)
        if path:
            self.open_path(path, ask=False)

    def open_path(self, path: str | Path, *, ask: bool = True) -> bool:
        """Open a project; a broken file is a dialog and the current document stays."""
        if ask and not self.maybe_save():
            return False
        path = Path(path)
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

    def action_import(self, role: str) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import images", self._start_dir(), IMAGE_FILTER)
        for path in paths:
            self.import_image(path, role=role)

    def import_image(self, path: str | Path, *, role: str | None = None, at: QPointF | None = None
                     ) -> ImageLayer | None:
        """An image file as a new layer; `role` image/collage/reference, None = collage over a picture."""
        try:
            pixels = read_image_file(path)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return None
        return self.add_image_layer(pixels, Path(path).stem, role=role, at=at)

    def add_image_layer(self, pixels: np.ndarray, name: str, *, role: str | None = None,
                        at: QPointF | None = None) -> ImageLayer:
        """Placed centred (or at `at`), scaled down to fit the canvas; over an existing picture it
        is a collage piece unless told otherwise (pasting pieces onto a picture is the collage workflow)."""
        doc = self.document
        if role is None:
            has_picture = any(isinstance(la, ImageLayer) and not la.reference and la.visible for la in doc.layers)
            role = "collage" if has_picture else "image"
        h, w = pixels.shape[:2]
        scale = min(1.0, doc.width / w, doc.height / h)
        cx, cy = (at.x(), at.y()) if at is not None else (doc.width / 2, doc.height / 2)
        x, y = round(cx - w * scale / 2), round(cy - h * scale / 2)
        layer = ImageLayer(name=name or "Image", pixels=pixels, x=float(x), y=float(y), scale=float(scale),
                           collage=role == "collage", reference=role == "reference")
        doc.execute(AddLayer(layer))
        doc.active_layer = layer
        what = {"collage": "collage piece", "reference": "reference image"}.get(role, "image layer")
        self.statusBar().showMessage(f"Added {layer.name} as a {what}.", 4000)
        return layer

    def dragEnterEvent(self, event) -> None:
        if _image_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if _image_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:
        paths = _image_paths(event.mimeData())
        if not paths:
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        viewport = self.view.viewport()
        local = viewport.mapFrom(self, event.position().toPoint())
        at = self.view.map_to_document(QPointF(local)) if viewport.rect().contains(local) else None
        for path in paths:
            self.import_image(path, at=at)

    def paste(self) -> None:
        clipboard = QGuiApplication.clipboard()
        mime = clipboard.mimeData()
        image = clipboard.image()
        if not image.isNull():
            pixels = to_numpy(image.convertToFormat(QImage.Format.Format_RGBA8888))
            if max(pixels.shape[:2]) > MAX_DOCUMENT_SIDE:
                dialogs.show_error(self, f"The pasted image is larger than {MAX_DOCUMENT_SIDE} px per side.")
                return
            self.add_image_layer(pixels, "Pasted")
            return
        paths = _image_paths(mime) if mime is not None else []
        if paths:
            for path in paths:
                self.import_image(path)
            return
        self.statusBar().showMessage("The clipboard holds no image.", 4000)

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
        for layer in reversed(doc.layers):
            if isinstance(layer, kinds) and layer.visible and not layer.locked:
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
        job = self.controller.generate()
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
            if self._staged_job != staging.job.id or len(overlay.candidates) != staging.count:
                overlay.set_candidates(list(staging.job.images), _full_rect(staging.job.images[0]))
                self._staged_job = staging.job.id
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
        self.generation_panel.set_models(found, vaes, loras)
        self.region_panel.set_available_loras(loras)
        real = [m for m in found if m.kind != "builtin"]
        text = (f"Found {len(real)} model{'s' if len(real) != 1 else ''}." if real else
                "No models found yet; the built-in demo model (noise) is available.")
        if problems:
            text += f" {len(problems)} file{'s were' if len(problems) != 1 else ' was'} skipped: {problems[0]}"
        self.statusBar().showMessage(f"{note} {text}".strip(), 10_000)

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
        self.apply_settings(new)
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

    # ==== autosave =================================================================================
    def autosave_now(self, force: bool = False) -> Path | None:
        if self.autosave is None or (self._changes_since_autosave == 0 and not force):
            return None
        try:
            path = self.autosave.save(self.document)
        except (ProjectError, OSError, DocumentError) as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 8000)
            return None
        self._changes_since_autosave = 0
        return path

    # ==== export ===================================================================================
    def action_export_png(self) -> None:
        start = (self.path.with_suffix(".png") if self.path else Path(self._start_dir()) / "Untitled.png")
        path, _ = QFileDialog.getSaveFileName(self, "Export PNG", str(start), "PNG images (*.png)")
        if path:
            path = Path(path)
            self.export_png(path if path.suffix.lower() == ".png" else path.with_suffix(".png"))

    def action_export_psd(self) -> None:
        from canvas.io.psd import save_psd  # psd-tools is imported only when exporting

        start = (self.path.with_suffix(".psd") if self.path else Path(self._start_dir()) / "Untitled.psd")
        path, _ = QFileDialog.getSaveFileName(self, "Export PSD", str(start), "Photoshop files (*.psd)")
        if not path:
            return
        path = Path(path) if Path(path).suffix.lower() == ".psd" else Path(path).with_suffix(".psd")
        try:
            notes = save_psd(self.document, path)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return
        self.statusBar().showMessage(" ".join([f"Exported {path.name}.", *notes]), 0 if notes else 4000)

    def export_png(self, path: Path) -> bool:
        try:
            composition = compose(self.document)
            parameters, record = self.export_metadata(composition)
            write_png(path, composition.init_image, parameters, record)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return False
        except (DocumentError, OSError) as exc:
            dialogs.show_error(self, f"{Path(path).name}: could not be exported ({exc}).")
            return False
        self.statusBar().showMessage(f"Exported {Path(path).name}.", 4000)
        return True

    def export_metadata(self, composition) -> tuple[dict, dict]:
        """The A1111 parameters of the topmost accepted generation still visible (else the
        current settings), and a Collagen record with mode, regions and layer summary."""
        parameters = None
        visible = {id(la) for la in self.document.layers if la.visible}
        for command in reversed(self.document.history._done):
            for cmd in _flatten_commands(command):
                if isinstance(cmd, AcceptCandidate) and id(cmd.layer) in visible:
                    parameters = {k: v for k, v in cmd.parameters.items() if k != "job_settings"}
                    break
            if parameters is not None:
                break
        s = self.document.settings
        if parameters is None:
            parameters = {"prompt": s.prompt, "negative_prompt": s.negative, "steps": s.steps, "sampler": s.sampler,
                          "cfg_scale": s.cfg, "model": s.model, "mode": s.mode}
            if s.seed >= 0:
                parameters["seed"] = s.seed
        record = {
            "mode": s.mode,
            "settings": s.to_dict(),
            "regions": [{"name": r.name, "prompt": r.prompt, "negative": r.negative, "strength": r.strength,
                         "loras": [list(lo) for lo in r.loras], "mask": r.mask} for r in composition.regions],
            "inpaint_mask": composition.inpaint_mask,
            "layers": [{"name": la.name, "kind": la.kind, "visible": la.visible} for la in self.document.layers],
        }
        return parameters, record

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
        if self.autosave is not None:
            self.autosave.finish()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.view.fit)


def new_document(width: int, height: int, background: str = "transparent",
                 settings: dict | None = None) -> Document:
    from canvas.model.document import GenerationSettings

    doc = Document(width, height, settings=GenerationSettings.from_dict(settings) if settings else None)
    if background == "white":
        pixels = np.full((height, width, 4), 255, np.uint8)
        doc.add_layer_untracked(ImageLayer(name="Background", pixels=pixels))
    return doc


def _next_name(doc: Document, base: str) -> str:
    names = {layer.name for layer in doc.layers}
    n = 1
    while f"{base} {n}" in names:
        n += 1
    return f"{base} {n}"


def _full_rect(image: np.ndarray) -> Rect:
    return Rect(0, 0, int(image.shape[1]), int(image.shape[0]))


def _flatten_commands(command) -> list:
    inner = getattr(command, "commands", None)
    if inner is None:
        return [command]
    out = []
    for c in inner:
        out.extend(_flatten_commands(c))
    return out

