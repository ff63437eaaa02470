"""Icons and the window's actions (menus, toolbars, shortcuts) in one table.

Icons are the line drawings in resources/icons, drawn with `currentColor`; `icon(name)` paints
them in the current palette's text colour, so they read on the light and the dark theme.
`WindowActions` builds every QAction once; the window connects them to its slots by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, QObject, QRect, QRectF, QSize, Qt
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QColor,
    QGuiApplication,
    QIcon,
    QIconEngine,
    QKeySequence,
    QPainter,
    QPalette,
    QPixmap,
)
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit, QPlainTextEdit, QTextEdit


def resources_dir() -> Path:
    return Path(str(resources.files("resources")))


def icon_path(name: str) -> Path:
    return resources_dir() / "icons" / f"{name}.svg"


class TintedSvgIconEngine(QIconEngine):
    """Renders a `currentColor` SVG on demand in the current palette's text colour.

    The colour is looked up when the icon is painted, so icons follow a theme switch (light/dark)
    without anyone recreating them; `fixed` pins a colour (the white icon on the accent button).
    """

    def __init__(self, svg: str, fixed: QColor | None = None):
        super().__init__()
        self._svg = svg
        self._fixed = QColor(fixed) if fixed is not None else None
        self._renderers: dict[str, QSvgRenderer] = {}
        self._cache: dict[tuple[str, int, int], QPixmap] = {}

    def color(self, mode: QIcon.Mode) -> QColor:
        if self._fixed is not None:
            color = QColor(self._fixed)
            if mode == QIcon.Mode.Disabled:
                color.setAlphaF(0.35)
            return color
        palette = QGuiApplication.palette()
        group = QPalette.ColorGroup.Disabled if mode == QIcon.Mode.Disabled else QPalette.ColorGroup.Active
        return palette.color(group, QPalette.ColorRole.WindowText)

    def _renderer(self, color: QColor) -> QSvgRenderer:
        key = color.name(QColor.NameFormat.HexArgb)
        renderer = self._renderers.get(key)
        if renderer is None:
            text = key if color.alpha() < 255 else color.name()
            renderer = QSvgRenderer(QByteArray(self._svg.replace("currentColor", text).encode()))
            self._renderers[key] = renderer
        return renderer

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._renderer(self.color(mode)).render(painter, QRectF(rect))
        painter.restore()

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        color = self.color(mode)
        key = (color.name(QColor.NameFormat.HexArgb), size.width(), size.height())
        pix = self._cache.get(key)
        if pix is None:
            pix = QPixmap(size)
            pix.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pix)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._renderer(color).render(painter, QRectF(0, 0, size.width(), size.height()))
            painter.end()
            self._cache[key] = pix
        return pix

    def clone(self) -> QIconEngine:
        return TintedSvgIconEngine(self._svg, self._fixed)


def icon(name: str, color: QColor | str | None = None) -> QIcon:
    """An SVG icon from resources/icons, drawn in the palette's text colour (or `color`)."""
    try:
        svg = icon_path(name).read_text(encoding="utf-8")
    except OSError:
        return QIcon()
    return QIcon(TintedSvgIconEngine(svg, QColor(color) if color is not None else None))


def app_icon() -> QIcon:
    path = icon_path("collagen")
    renderer = QSvgRenderer(str(path))
    result = QIcon()
    for size in (16, 32, 48, 64, 128, 256):
        result.addPixmap(_render(renderer, size))
    return result


def _render(renderer: QSvgRenderer, size: int) -> QPixmap:
    pix = QPixmap(QSize(size, size))
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return pix


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    icon: str = ""
    shortcuts: tuple[str, ...] = ()
    tip: str = ""
    checkable: bool = False


# name, menu text, icon, shortcuts, status tip
ACTION_SPECS: tuple[ActionSpec, ...] = (
    ActionSpec("new", "&New…", "new", ("Ctrl+N",), "Start a new picture"),
    ActionSpec("open", "&Open…", "open", ("Ctrl+O",), "Open a Collagen project (.ora)"),
    ActionSpec("save", "&Save", "save", ("Ctrl+S",), "Save the project"),
    ActionSpec("save_as", "Save &As…", "", ("Ctrl+Shift+S",), "Save the project under a new name"),
    ActionSpec("import_image", "&Import Image as Layer…", "import-image", ("Ctrl+I",),
               "Add a picture from a file as a new layer"),
    ActionSpec("import_collage", "Import &Collage Piece…", "layer-collage", ("Ctrl+Shift+I",),
               "Add a picture as a collage piece (refine blends its edges)"),
    ActionSpec("import_reference", "Import &Reference Image…", "layer-reference", (),
               "Add a picture that edit models see as a reference"),
    ActionSpec("use_parameters", "Use Parameters from &Image…", "", (),
               "Fill the generation panel from a PNG made by Collagen, A1111, ComfyUI, InvokeAI, Fooocus or NovelAI"),
    ActionSpec("export_png", "&Export PNG…", "export", ("Ctrl+E",),
               "Export the picture as PNG with its generation parameters"),
    ActionSpec("export_psd", "Export &Photoshop PSD…", "export", (),
               "Export the layers, groups and blend modes as a layered PSD"),
    ActionSpec("settings", "Se&ttings…", "settings", ("Ctrl+,",), "Model folders, device, previews, autosave"),
    ActionSpec("quit", "&Quit", "", ("Ctrl+Q",), "Close Collagen"),
    ActionSpec("undo", "&Undo", "undo", ("Ctrl+Z",), "Undo the last change"),
    ActionSpec("redo", "&Redo", "redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo what was undone"),
    ActionSpec("paste", "&Paste Image as Layer", "", ("Ctrl+V",), "Paste an image from the clipboard as a new layer"),
    ActionSpec("zoom_in", "Zoom &In", "", ("Ctrl++", "Ctrl+="), ""),
    ActionSpec("zoom_out", "Zoom &Out", "", ("Ctrl+-",), ""),
    ActionSpec("zoom_fit", "&Fit to Window", "zoom-fit", ("Ctrl+0",), "Show the whole picture"),
    ActionSpec("zoom_100", "&Actual Pixels", "", ("Ctrl+1",), "One picture pixel per screen pixel"),
    ActionSpec("add_mask", "Add &Mask Layer", "layer-mask", ("Ctrl+Shift+M",), "A mask to inpaint under"),
    ActionSpec("add_region", "Add &Region Layer", "layer-region", (), "A regional prompt (or draw one with R)"),
    ActionSpec("add_sketch", "Add &Sketch Layer", "layer-scribble", (),
               "Scribbles painted into the picture; their area is regenerated"),
    ActionSpec("add_annotation", "Add &Annotation Layer", "layer-scribble", (),
               "Markup that only instruction-edit models see"),
    ActionSpec("delete_layer", "&Delete Layer", "delete", ("Delete",), "Delete the selected layer"),
    ActionSpec("layer_up", "Move Layer &Up", "", ("Ctrl+]",), ""),
    ActionSpec("layer_down", "Move Layer &Down", "", ("Ctrl+[",), ""),
    ActionSpec("mask_fill", "&Fill Mask", "fill", (), "Fill the selected mask or region"),
    ActionSpec("mask_clear", "&Clear Mask", "", (), "Clear the selected mask or region"),
    ActionSpec("mask_invert", "&Invert Mask", "invert", ("Ctrl+Shift+V",), "Invert the selected mask or region"),
    ActionSpec("generate", "&Generate", "generate", ("Ctrl+Return", "Ctrl+Enter"), "Generate with these settings"),
    ActionSpec("cancel", "&Cancel / Discard", "cancel", ("Escape",), "Stop the generation, or discard its results"),
    ActionSpec("accept", "&Accept Result", "accept", ("Return", "Enter"), "Keep the shown result as a new layer"),
    ActionSpec("discard", "&Discard Results", "discard", (), "Throw the results away"),
    ActionSpec("next_candidate", "&Next Result", "next", ("Right",), ""),
    ActionSpec("previous_candidate", "&Previous Result", "previous", ("Left",), ""),
    ActionSpec("regenerate", "&Regenerate (new seed)", "regenerate", ("Ctrl+R",), "The same request with a new seed"),
    ActionSpec("models_help", "Where Do &Models Go?", "folder-add", (), ""),
    ActionSpec("about", "&About Collagen", "", (), ""),
)

# Shortcuts work wherever the focus is (a panel button, the history list) except in a text field,
# where Return, the arrows, Delete and Escape keep their text meaning (TextFieldKeys).
TEXT_FIELDS = (QLineEdit, QPlainTextEdit, QTextEdit, QAbstractSpinBox)
TEXT_KEYS = frozenset({Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Left, Qt.Key.Key_Right,
                       Qt.Key.Key_Delete, Qt.Key.Key_Escape})


def is_text_field(widget: object) -> bool:
    return isinstance(widget, TEXT_FIELDS)


class TextFieldKeys(QObject):
    """Keeps the editing keys of a focused text field away from the window's shortcuts.

    Qt asks the focus widget first (a ShortcutOverride event); accepting it delivers the key to the
    field instead of triggering Accept, Next/Previous, Delete Layer or Cancel/Discard.
    """

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.ShortcutOverride and is_text_field(watched)
                and event.key() in TEXT_KEYS
                and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier):
            event.accept()
        return False

TOOL_SPECS: tuple[ActionSpec, ...] = (
    ActionSpec("move", "&Move / Transform", "move", ("V",), "Move, scale and rotate image layers", True),
    ActionSpec("brush", "&Brush", "brush", ("B",), "Paint masks and region masks", True),
    ActionSpec("eraser", "&Eraser", "eraser", ("E",), "Erase masks and region masks", True),
    ActionSpec("region", "&Region Box", "region", ("R",), "Draw a region box with its own prompt", True),
    ActionSpec("scribble", "&Pen", "pen", ("P",), "Scribble a sketch or an annotation", True),
    ActionSpec("eyedropper", "E&yedropper", "eyedropper", ("I",), "Pick the pen colour from the picture", True),
)


class WindowActions(QObject):
    """Every action of the main window, by name; tools in an exclusive group."""

    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.by_name: dict[str, QAction] = {}
        self.tools: dict[str, QAction] = {}
        self.tool_group = QActionGroup(self)
        self.tool_group.setExclusive(True)
        for spec in ACTION_SPECS:
            self.by_name[spec.name] = self._make(spec)
        for spec in TOOL_SPECS:
            action = self._make(spec)
            self.tool_group.addAction(action)
            self.tools[spec.name] = action
        self.text_field_keys = TextFieldKeys(self)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.text_field_keys)  # removed with this object

    def __getitem__(self, name: str) -> QAction:
        return self.by_name[name]

    def _make(self, spec: ActionSpec) -> QAction:
        action = QAction(spec.text, self)
        action.setObjectName(f"action_{spec.name}")
        if spec.icon:
            action.setIcon(icon(spec.icon))
        if spec.shortcuts:
            action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
        tip = spec.tip or spec.text.replace("&", "").rstrip("…")
        if spec.shortcuts:
            tip = f"{tip} ({QKeySequence(spec.shortcuts[0]).toString(QKeySequence.SequenceFormat.NativeText)})"
        action.setToolTip(tip)
        action.setStatusTip(spec.tip)
        action.setCheckable(spec.checkable)
        return action
