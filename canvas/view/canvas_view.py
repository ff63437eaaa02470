"""The canvas widget: a QGraphicsView over a CanvasScene that mirrors one Document.

One scene unit is one document pixel, with the document's top-left corner at (0, 0). The scene
holds one item per layer (canvas.view.items) in document order, the staging overlay for
generation previews and candidates, and the heat overlay for per-pixel maps. The view adds
what is about looking rather than the document: the checkerboard, zoom around the cursor,
panning (space-drag, middle button), the active tool and its cursor/overlay.

Over 500 lines: the scene and the view are one unit (the view's tools act on the scene's items
and overlays); tools, items and overlays themselves live in their own modules.
"""

from __future__ import annotations

import math

import shiboken6
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QCursor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

from canvas.model.document import Document
from canvas.model.layers import Layer, MaskLayer, RegionLayer, ScribbleLayer
from canvas.view.items import LayerItem, item_for_layer
from canvas.view.overlay import HeatOverlay
from canvas.view.staging import StagingOverlay
from canvas.view.tools import make_tools
from canvas.view.tools.base import Tool, ToolEvent

MIN_ZOOM = 1.0 / 64.0
MAX_ZOOM = 64.0
WHEEL_NOTCH = 120.0  # angleDelta units of one wheel notch
ZOOM_PER_NOTCH = 2.0 ** 0.25
CHECKER_PX = 8
OVERLAY_Z = 1_000_000.0  # heat map above every layer
# Masks, regions and annotations are drawn above every picture layer (in their own layer order),
# as Krita and InvokeAI do: an image moved above a mask must not hide it, nor its handles.
ABOVE_PICTURE_Z = 100_000.0
OVERLAY_KINDS = ("masks", "regions", "annotations")


def overlay_kind(layer: Layer) -> str | None:
    """Which overlay a layer belongs to (None: it is part of the picture)."""
    if isinstance(layer, MaskLayer):
        return "masks"
    if isinstance(layer, RegionLayer):
        return "regions"
    if isinstance(layer, ScribbleLayer) and layer.mode == "annotation":
        return "annotations"
    return None
STAGING_Z = 1_000_001.0  # previews and candidates above everything


class CanvasScene(QGraphicsScene):
    """Items for a document's layers, kept in sync with its layer events."""

    def __init__(self, document: Document, parent=None):
        super().__init__(parent)
        self.document = document
        self._items: dict[Layer, LayerItem] = {}
        self._view_scale = 1.0
        self.overlays_shown = {kind: True for kind in OVERLAY_KINDS}
        # Layer items move and repaint constantly and there are few of them: a BSP index
        # would only cost time to maintain.
        self.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
        self.setSceneRect(QRectF(0.0, 0.0, float(document.width), float(document.height)))
        for layer in document.layers:
            self._add_item(layer)
        self.restack()
        self.heat_overlay = HeatOverlay(document.width, document.height)
        self.heat_overlay.setZValue(OVERLAY_Z)
        self.addItem(self.heat_overlay)
        self.staging = StagingOverlay()
        self.staging.setZValue(STAGING_Z)
        self.addItem(self.staging)
        events = document.events
        events.layer_added.connect(self._on_layer_added)
        events.layer_removed.connect(self._on_layer_removed)
        events.layer_moved.connect(self._on_layer_moved)
        events.active_layer_changed.connect(self._on_active_layer_changed)
        self._on_active_layer_changed(document.active_layer)

    @property
    def document_rect(self) -> QRectF:
        return QRectF(0.0, 0.0, float(self.document.width), float(self.document.height))

    def item_for(self, layer: Layer) -> LayerItem:
        return self._items[layer]

    def layer_items(self) -> list[LayerItem]:
        """Items in document order (bottom first)."""
        return [self._items[layer] for layer in self.document.layers if layer in self._items]

    def set_overlay_shown(self, kind: str, shown: bool) -> None:
        """Show or hide every layer of one overlay kind (masks, regions, annotations) on the canvas."""
        self.overlays_shown[kind] = shown
        for layer, item in self._items.items():
            if overlay_kind(layer) == kind:
                item.set_shown_by_view(shown)

    def set_view_scale(self, scale: float) -> None:
        self._view_scale = scale
        for item in self._items.values():
            item.set_view_scale(scale)

    def close(self) -> None:
        """Disconnect from the document and its layers; the scene shows nothing afterwards."""
        events = self.document.events
        events.layer_added.disconnect(self._on_layer_added)
        events.layer_removed.disconnect(self._on_layer_removed)
        events.layer_moved.disconnect(self._on_layer_moved)
        events.active_layer_changed.disconnect(self._on_active_layer_changed)
        if not shiboken6.isValid(self):  # Qt already deleted the scene and its items
            for item in self._items.values():
                item.detach()
            self._items.clear()
            return
        for layer in list(self._items):
            self._remove_item(layer)
        self.staging.clear()
        self.heat_overlay.clear()

    def _alive(self) -> bool:
        """False once Qt has deleted the scene (its view was destroyed without close());
        the document may outlive it, so the scene then lets go of it."""
        if shiboken6.isValid(self):
            return True
        self.close()
        return False

    # -- slots -----------------------------------------------------------------------------------
    def _on_layer_added(self, layer: Layer, index: int) -> None:
        if self._alive():
            self._add_item(layer)
            self.restack()

    def _on_layer_removed(self, layer: Layer, index: int) -> None:
        if self._alive():
            self._remove_item(layer)
            self.restack()

    def _on_layer_moved(self, layer: Layer, old: int, new: int) -> None:
        if self._alive():
            self.restack()

    def _on_active_layer_changed(self, layer: Layer | None) -> None:
        if not self._alive():
            return
        for candidate, item in self._items.items():
            item.set_selected_layer(candidate is layer)

    # -- helpers ---------------------------------------------------------------------------------
    def _add_item(self, layer: Layer) -> None:
        if layer in self._items:
            return
        item = item_for_layer(layer)
        item.set_view_scale(self._view_scale)
        item.set_selected_layer(layer is self.document.active_layer)
        kind = overlay_kind(layer)
        if kind is not None:
            item.set_shown_by_view(self.overlays_shown[kind])
        self._items[layer] = item
        self.addItem(item)

    def _remove_item(self, layer: Layer) -> None:
        item = self._items.pop(layer, None)
        if item is not None:
            for child in item.childItems():  # members stay on the canvas (restack re-parents them)
                child.setParentItem(None)
            item.detach()
            self.removeItem(item)

    def restack(self) -> None:
        """Z order from the layer list; a group's members become its item's children."""
        parents = {id(member): group for group, members in self.document.tree().items() for member in members}
        for z, layer in enumerate(self.document.layers):
            item = self._items.get(layer)
            if item is None:
                continue
            group = parents.get(id(layer))
            parent = self._items.get(group) if group is not None else None
            if item.parentItem() is not parent:
                item.setParentItem(parent)
            item.setZValue(float(z) + (ABOVE_PICTURE_Z if overlay_kind(layer) else 0.0))


def _checker_pixmap() -> QPixmap:
    pix = QPixmap(2 * CHECKER_PX, 2 * CHECKER_PX)
    pix.fill(QColor(204, 204, 204))
    p = QPainter(pix)
    dark = QColor(153, 153, 153)
    p.fillRect(0, 0, CHECKER_PX, CHECKER_PX, dark)
    p.fillRect(CHECKER_PX, CHECKER_PX, CHECKER_PX, CHECKER_PX, dark)
    p.end()
    return pix


class CanvasView(QGraphicsView):
    """The document canvas. Tools are in `tools` by name; `set_tool(name)` picks one."""

    zoom_changed = Signal(float)
    tool_changed = Signal(str)
    status_message = Signal(str)
    cursor_moved = Signal(float, float)  # document coordinates under the pointer

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self._scene: CanvasScene | None = None
        self._overlays_shown: dict[str, bool] = {}  # masks / regions / annotations the user hid
        self._checker = QBrush(_checker_pixmap())
        self._outside = QColor(58, 58, 62)
        self._space_held = False
        self._fitted = False  # showing the whole picture: a resized view fits it again (until the user zooms)
        self._pan_from: QPointF | None = None
        self._tool_pressed = False
        self._cursor_shape: Qt.CursorShape | None = None
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.tools: dict[str, Tool] = make_tools(self)
        self._tool: Tool = self.tools["brush"]
        self.set_document(document)
        self._tool.activate()
        self._apply_cursor()

    # -- document ----------------------------------------------------------------------------------
    @property
    def canvas_scene(self) -> CanvasScene:
        assert self._scene is not None
        return self._scene

    def set_document(self, document: Document) -> None:
        """Show another document (new or opened file); the old scene is closed."""
        old = self._scene
        if old is not None:
            self._tool.deactivate()  # tools drop drags and subscriptions tied to the old document
        self.document = document
        self._scene = CanvasScene(document, self)
        for kind, shown in self._overlays_shown.items():
            self._scene.set_overlay_shown(kind, shown)
        self.setScene(self._scene)
        if old is not None:
            old.close()
            old.deleteLater()
        self._update_scene_rect()
        self._scene.set_view_scale(self.zoom)
        if old is not None:
            self._tool.activate()

    def close_document(self) -> None:
        """Disconnect from the document (call before dropping the view or the document)."""
        self._tool.cancel()
        if self._scene is not None:
            self._scene.close()

    @property
    def staging(self) -> StagingOverlay:
        return self.canvas_scene.staging

    def set_overlay_shown(self, kind: str, shown: bool) -> None:
        """Show or hide masks, regions or annotations (kept across documents)."""
        self._overlays_shown[kind] = shown
        self.canvas_scene.set_overlay_shown(kind, shown)

    @property
    def heat_overlay(self) -> HeatOverlay:
        return self.canvas_scene.heat_overlay

    # -- tools -------------------------------------------------------------------------------------
    @property
    def tool(self) -> Tool:
        return self._tool

    @property
    def tool_name(self) -> str:
        return self._tool.name

    def set_tool(self, name: str) -> None:
        if name not in self.tools:
            raise KeyError(f"Unknown tool {name!r}; known tools: {', '.join(self.tools)}.")
        tool = self.tools[name]
        if tool is self._tool:
            return
        old_overlay = self._tool.overlay_rect()
        self._tool.deactivate()
        self._tool_pressed = False
        self._tool = tool
        tool.activate()
        self.refresh_overlay(old_overlay)
        self._apply_cursor()
        self.tool_changed.emit(name)

    def refresh_overlay(self, old_rect: QRectF | None = None) -> None:
        """Repaint where the tool overlay was (`old_rect`) and where it is now."""
        for rect in (old_rect, self._tool.overlay_rect()):
            if rect is not None and not rect.isEmpty():
                area = self.viewportTransform().mapRect(rect).toAlignedRect().adjusted(-3, -3, 3, 3)
                self.viewport().update(area)

    def refresh_all(self) -> None:
        self.viewport().update()

    # -- zoom --------------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the document point under `anchor` (viewport px; default: centre) still."""
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, float(zoom)))
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        fixed = self.map_to_document(anchor)
        self.setTransform(QTransform.fromScale(zoom, zoom))
        self._update_scene_rect()
        moved = self.viewportTransform().map(fixed) - anchor
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(moved.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(moved.y()))
        self.canvas_scene.set_view_scale(zoom)
        self._fitted = False
        self.zoom_changed.emit(zoom)

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * ZOOM_PER_NOTCH)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / ZOOM_PER_NOTCH)

    def fit(self) -> None:
        """Zoom so the whole document shows, centred."""
        vw, vh = max(self.viewport().width(), 1), max(self.viewport().height(), 1)
        doc = self.canvas_scene.document_rect
        pad = 16.0
        zoom = min((vw - 2 * pad) / doc.width(), (vh - 2 * pad) / doc.height())
        self.set_zoom(max(zoom, MIN_ZOOM))
        self.centerOn(doc.center())
        self._fitted = True

    def actual_size(self) -> None:
        """100 %: one document pixel per screen pixel, keeping the centre where it is."""
        self.set_zoom(1.0)

    def map_to_document(self, viewport_pos: QPointF) -> QPointF:
        """Viewport pixel position -> document coordinates (sub-pixel)."""
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(QPointF(viewport_pos))

    def map_from_document(self, doc_pos: QPointF) -> QPointF:
        return self.viewportTransform().map(QPointF(doc_pos))

    def _update_scene_rect(self) -> None:
        """The document plus most of a viewport of room on every side, so any part of the
        document can be panned to the middle of the window."""
        doc = QRectF(0.0, 0.0, float(self.document.width), float(self.document.height))
        zoom = max(self.zoom, MIN_ZOOM)
        mx = self.viewport().width() * 0.8 / zoom
        my = self.viewport().height() * 0.8 / zoom
        self.setSceneRect(doc.adjusted(-mx, -my, mx, my))

    # -- painting ----------------------------------------------------------------------------------
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, self._outside)
        doc = self.viewportTransform().mapRect(self.canvas_scene.document_rect)
        painter.save()
        painter.resetTransform()  # the checkerboard keeps its screen size at every zoom
        painter.setBrushOrigin(doc.topLeft())
        painter.fillRect(doc, self._checker)
        pen = QPen(QColor(0, 0, 0, 160), 1.0)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(doc.adjusted(-1.0, -1.0, 0.0, 0.0))
        painter.restore()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        painter.save()
        self._tool.paint_overlay(painter, self.zoom)
        painter.restore()

    # -- input -------------------------------------------------------------------------------------
    def _tool_event(self, event: QMouseEvent) -> ToolEvent:
        return ToolEvent(self.map_to_document(event.position()), event.button(), event.buttons(),
                         event.modifiers())

    def _run_tool(self, action) -> None:
        old = self._tool.overlay_rect()
        action()
        self.refresh_overlay(old)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_held):
            self._pan_from = event.position()
            self._apply_cursor()
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton:
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            self._tool_pressed = True
            tool_event = self._tool_event(event)
            self._run_tool(lambda: self._tool.press(tool_event))
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = self.map_to_document(event.position())
        self.cursor_moved.emit(pos.x(), pos.y())
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            event.accept()
            return
        if self._tool_pressed:
            tool_event = self._tool_event(event)
            self._run_tool(lambda: self._tool.move(tool_event))
        else:
            self._run_tool(lambda: self._tool.hover(pos, event.modifiers()))
            self._apply_cursor()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if self._pan_from is not None and button in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._apply_cursor()
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self._tool_pressed:
            self._tool_pressed = False
            tool_event = self._tool_event(event)
            self._run_tool(lambda: self._tool.release(tool_event))
            self._apply_cursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and not self._space_held:
            tool_event = self._tool_event(event)
            self._run_tool(lambda: self._tool.double_click(tool_event))
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta == 0:
            event.ignore()
            return
        self.set_zoom(self.zoom * ZOOM_PER_NOTCH ** (delta / WHEEL_NOTCH), event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = True
                self._apply_cursor()
            event.accept()
            return
        if key in (Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight) and hasattr(self._tool, "grow"):
            if key == Qt.Key.Key_BracketRight:
                self._tool.grow()
            else:
                self._tool.shrink()
            self.status_message.emit(f"{self._tool.label} size {self._tool.size:.0f} px")
            event.accept()
            return
        if key == Qt.Key.Key_Escape:
            self._run_tool(self._tool.cancel)
            self._tool_pressed = False
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            self._apply_cursor()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event) -> None:
        self._run_tool(self._tool.leave)
        super().leaveEvent(event)

    def focusOutEvent(self, event) -> None:
        self._space_held = False  # a released space key we never saw must not leave pan stuck
        super().focusOutEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._update_scene_rect()
        if self._fitted:  # a smaller window (or a dock that grew) still shows the whole picture
            self.fit()

    def _apply_cursor(self) -> None:
        if self._pan_from is not None:
            cursor = QCursor(Qt.CursorShape.ClosedHandCursor)
        elif self._space_held:
            cursor = QCursor(Qt.CursorShape.OpenHandCursor)
        else:
            cursor = self._tool.cursor()
        if cursor.shape() != self._cursor_shape or cursor.shape() == Qt.CursorShape.BitmapCursor:
            self._cursor_shape = cursor.shape()
            self.viewport().setCursor(cursor)

    # -- inspection ----------------------------------------------------------------------------------
    def visible_document_rect(self) -> QRectF:
        """The part of the document shown in the viewport, in document coordinates."""
        inverse, _ = self.viewportTransform().inverted()
        shown = inverse.mapRect(QRectF(self.viewport().rect()))
        return shown.intersected(self.canvas_scene.document_rect)

    def viewport_rect_of(self, doc_rect: QRectF) -> QRect:
        return self.viewportTransform().mapRect(doc_rect).toAlignedRect()


def zoom_percent(zoom: float) -> str:
    """A zoom factor as users read it (for status bars)."""
    pct = zoom * 100.0
    return f"{pct:.0f} %" if pct >= 10 or math.isclose(pct, round(pct)) else f"{pct:.1f} %"
