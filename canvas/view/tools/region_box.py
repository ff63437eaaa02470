"""Region box tool: drag on empty canvas to create a RegionLayer, drag a region to move it,
drag a handle of the selected region to resize it, double-click a region to type its prompt.

Creating is one AddLayer. A move or resize is one SetProperty('rect') whose value follows the
pointer (applied on every mouse event, so the region moves live) and is recorded in the history
once, at release: the drag is one undo step, and a cancelled drag (Escape) leaves no trace.
Regions stay inside the document.
"""

from __future__ import annotations

import itertools
import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QFocusEvent, QKeyEvent, QPainter, QPen
from PySide6.QtWidgets import QLineEdit

from canvas.model.commands import AddLayer, SetProperty
from canvas.model.layers import RegionLayer
from canvas.view.items import handle_rect, rect_handles
from canvas.view.tools.base import Tool, ToolEvent

REGION_COLORS = ("#e0604f", "#4f8fe0", "#5fbf5a", "#e0b84f", "#b45fe0", "#4fd0c8", "#e07fb4", "#9a9a9a")
MIN_REGION_PX = 4  # a smaller drag is taken for a click, not a box
HANDLE_CURSORS = {
    "nw": Qt.CursorShape.SizeFDiagCursor, "se": Qt.CursorShape.SizeFDiagCursor,
    "ne": Qt.CursorShape.SizeBDiagCursor, "sw": Qt.CursorShape.SizeBDiagCursor,
    "n": Qt.CursorShape.SizeVerCursor, "s": Qt.CursorShape.SizeVerCursor,
    "e": Qt.CursorShape.SizeHorCursor, "w": Qt.CursorShape.SizeHorCursor,
}


class PromptEditor(QLineEdit):
    """In-place editor for a region's prompt: Enter or clicking away commits, Escape cancels."""

    def __init__(self, tool: RegionBoxTool, layer: RegionLayer):
        super().__init__(tool.view.viewport())
        self.tool = tool
        self.layer = layer
        self._closed = False
        self.setPlaceholderText("Prompt for this region")
        self.setText(layer.prompt)
        self.selectAll()
        self.editingFinished.connect(self.commit)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.close_editor()
            event.accept()
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self.commit()

    def commit(self) -> None:
        if self._closed:
            return
        text = self.text()
        layer = self.layer
        self.close_editor()
        if text != layer.prompt and layer in self.tool.document.layers:
            self.tool.document.execute(SetProperty(layer, "prompt", text))

    def close_editor(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.hide()
        self.deleteLater()
        self.tool._editor_closed(self)


class RegionBoxTool(Tool):
    name = "region"
    label = "Region box"

    def __init__(self, view):
        super().__init__(view)
        self.edit_prompt_after_create = True
        self._colors = itertools.cycle(REGION_COLORS)
        self._mode: str | None = None  # "create" | "move" | "resize"
        self._start = QPointF()
        self._rubber = QRectF()
        self._layer: RegionLayer | None = None
        self._orig: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._handle = ""
        self._live: SetProperty | None = None  # the drag's command, applied but not yet recorded
        self._editor: PromptEditor | None = None
        self._cursor = Qt.CursorShape.CrossCursor

    @property
    def busy(self) -> bool:
        return self._mode is not None

    @property
    def prompt_editor(self) -> PromptEditor | None:
        return self._editor

    # -- hit testing -----------------------------------------------------------------------------
    def region_at(self, pos: QPointF) -> RegionLayer | None:
        """The topmost visible region under a document point."""
        for layer in reversed(self.document.layers):
            if not isinstance(layer, RegionLayer) or not layer.visible:
                continue
            if layer.mask is not None:
                row, col = math.floor(pos.y()), math.floor(pos.x())
                h, w = layer.mask.shape[:2]
                if 0 <= row < h and 0 <= col < w and layer.mask[row, col] > 0:
                    return layer
            elif _rect(layer.rect).contains(pos):
                return layer
        return None

    def handle_at(self, layer: RegionLayer, pos: QPointF) -> str:
        """The resize handle of a rectangle region under a document point ('' = none)."""
        if layer.mask is not None:
            return ""
        zoom = self.view.zoom
        for name, center in rect_handles(_rect(layer.rect)).items():
            if handle_rect(center, zoom).adjusted(-1 / zoom, -1 / zoom, 1 / zoom, 1 / zoom).contains(pos):
                return name
        return ""

    def _selected_region(self) -> RegionLayer | None:
        layer = self.document.active_layer
        if isinstance(layer, RegionLayer) and layer.visible and not layer.locked:
            return layer
        return None

    # -- mouse -----------------------------------------------------------------------------------
    def press(self, event: ToolEvent) -> None:
        if self._mode is not None:
            return
        if self._editor is not None:
            self._editor.commit()
        pos = event.pos
        selected = self._selected_region()
        if selected is not None:
            handle = self.handle_at(selected, pos)
            if handle:
                self._begin_drag("resize", selected, pos, handle)
                return
        hit = self.region_at(pos)
        if hit is not None:
            self.document.active_layer = hit
            if hit.locked:
                self.message(f"Layer {hit.name!r} is locked.")
                return
            if hit.mask is not None:
                self.message("A painted region is reshaped with the brush and eraser.")
                return
            self._begin_drag("move", hit, pos, "")
            return
        self._mode = "create"
        self._start = self._clamp(pos)
        self._rubber = QRectF(self._start, self._start)

    def move(self, event: ToolEvent) -> None:
        if self._mode == "create":
            self._rubber = QRectF(self._start, self._clamp(event.pos)).normalized()
        elif self._mode in ("move", "resize"):
            rect = self._dragged_rect(event.pos, event.shift)
            if rect != self._layer.rect:
                self._live.value = rect
                self._live.do(self.document)

    def release(self, event: ToolEvent) -> None:
        mode = self._mode
        if mode == "create":
            self._rubber = QRectF(self._start, self._clamp(event.pos)).normalized()
            x0, y0 = round(self._rubber.left()), round(self._rubber.top())
            x1, y1 = round(self._rubber.right()), round(self._rubber.bottom())
            self._reset()
            if x1 - x0 >= MIN_REGION_PX and y1 - y0 >= MIN_REGION_PX:
                self._create(x0, y0, x1 - x0, y1 - y0)
            return
        if mode in ("move", "resize"):
            self.move(event)
            live = self._live
            self._reset()
            if live.value != live.old:
                self.document.history.record(live)
            return
        self._reset()

    def double_click(self, event: ToolEvent) -> None:
        hit = self.region_at(event.pos)
        if hit is not None:
            self.document.active_layer = hit
            self.edit_prompt(hit)

    def cancel(self) -> None:
        if self._live is not None:
            self._live.undo(self.document)
        self._reset()

    def deactivate(self) -> None:
        super().deactivate()
        if self._editor is not None:
            self._editor.commit()

    def hover(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        selected = self._selected_region()
        handle = self.handle_at(selected, pos) if selected is not None else ""
        if handle:
            self._cursor = HANDLE_CURSORS[handle]
        elif self.region_at(pos) is not None:
            self._cursor = Qt.CursorShape.SizeAllCursor
        else:
            self._cursor = Qt.CursorShape.CrossCursor

    def cursor(self) -> QCursor:
        return QCursor(self._cursor)

    # -- prompt editing --------------------------------------------------------------------------
    def edit_prompt(self, layer: RegionLayer) -> PromptEditor:
        """Open the in-place prompt editor over the region's top-left corner."""
        if self._editor is not None:
            self._editor.commit()
        editor = PromptEditor(self, layer)
        view = self.view
        area = _rect(layer.rect) if layer.mask is None else view.canvas_scene.item_for(layer).area()
        top_left = view.map_from_document(area.topLeft())
        width = max(220, min(480, round(area.width() * view.zoom)))
        editor.setGeometry(max(0, round(top_left.x())), max(0, round(top_left.y())), width,
                           editor.sizeHint().height())
        editor.show()
        editor.setFocus(Qt.FocusReason.OtherFocusReason)
        self._editor = editor
        return editor

    def _editor_closed(self, editor: PromptEditor) -> None:
        if self._editor is editor:
            self._editor = None
            self.view.setFocus(Qt.FocusReason.OtherFocusReason)

    # -- helpers ---------------------------------------------------------------------------------
    def _begin_drag(self, mode: str, layer: RegionLayer, pos: QPointF, handle: str) -> None:
        self._mode = mode
        self._layer = layer
        self._start = QPointF(pos)
        self._orig = tuple(int(v) for v in layer.rect)
        self._handle = handle
        self._live = SetProperty(layer, "rect", self._orig)

    def _dragged_rect(self, pos: QPointF, shift: bool) -> tuple[int, int, int, int]:
        doc = self.document
        x, y, w, h = self._orig
        dx, dy = round(pos.x() - self._start.x()), round(pos.y() - self._start.y())
        if self._mode == "move":
            if shift:  # constrain to the dominant axis
                dx, dy = (dx, 0) if abs(dx) >= abs(dy) else (0, dy)
            nx = min(max(x + dx, 0), max(doc.width - w, 0))
            ny = min(max(y + dy, 0), max(doc.height - h, 0))
            return nx, ny, w, h
        x0, y0, x1, y1 = x, y, x + w, y + h
        if "w" in self._handle:
            x0 += dx
        if "e" in self._handle:
            x1 += dx
        if "n" in self._handle:
            y0 += dy
        if "s" in self._handle:
            y1 += dy
        x0, x1 = sorted((min(max(x0, 0), doc.width), min(max(x1, 0), doc.width)))
        y0, y1 = sorted((min(max(y0, 0), doc.height), min(max(y1, 0), doc.height)))
        return x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)

    def _create(self, x: int, y: int, w: int, h: int) -> None:
        doc = self.document
        count = sum(isinstance(layer, RegionLayer) for layer in doc.layers)
        layer = RegionLayer(name=f"Region {count + 1}", rect=(x, y, w, h), color=next(self._colors))
        doc.execute(AddLayer(layer))
        doc.active_layer = layer
        if self.edit_prompt_after_create:
            self.edit_prompt(layer)

    def _clamp(self, pos: QPointF) -> QPointF:
        doc = self.document
        return QPointF(min(max(pos.x(), 0.0), float(doc.width)), min(max(pos.y(), 0.0), float(doc.height)))

    def _reset(self) -> None:
        self._mode = None
        self._layer = None
        self._rubber = QRectF()
        self._live = None

    # -- overlay ---------------------------------------------------------------------------------
    def overlay_rect(self) -> QRectF:
        if self._mode != "create" or self._rubber.isEmpty():
            return QRectF()
        return QRectF(self._rubber)

    def paint_overlay(self, painter: QPainter, scale: float) -> None:
        if self._mode != "create":
            return
        fill = QColor(255, 255, 255, 40)
        painter.fillRect(self._rubber, fill)
        pen = QPen(QColor(255, 255, 255), 1.0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(self._rubber)


def _rect(rect: tuple[int, int, int, int]) -> QRectF:
    x, y, w, h = rect
    return QRectF(float(x), float(y), float(w), float(h)).normalized()
