"""Scribble pen: freehand vector strokes on the active ScribbleLayer, one AddStroke per stroke.

While drawing, the stroke is an overlay of the view; only its newest part is repainted on each
mouse event. At release it becomes a Stroke (document coordinates, colour, width) on the layer,
and the layer's item draws it from then on.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QPainter

from canvas.model.commands import AddStroke
from canvas.model.layers import ScribbleLayer, Stroke
from canvas.view.items import stroke_path, stroke_pen
from canvas.view.tools.base import Tool, ToolEvent

MIN_POINT_DISTANCE = 0.75  # px: closer mouse samples add nothing but size
MIN_WIDTH, MAX_WIDTH = 0.5, 500.0
SIZE_STEP = 1.2


class ScribbleTool(Tool):
    name = "scribble"
    label = "Pen"

    def __init__(self, view):
        super().__init__(view)
        self.color = "#ff2020"
        self.width = 6.0
        self._layer: ScribbleLayer | None = None
        self._points: list[tuple[float, float]] = []

    @property
    def busy(self) -> bool:
        return self._layer is not None

    # -- options -------------------------------------------------------------------------------
    @property
    def size(self) -> float:
        return self.width

    def set_color(self, color: QColor | str) -> None:
        c = QColor(color)
        if not c.isValid():
            self.message(f"{color!r} is not a colour.")
            return
        self.color = c.name(QColor.NameFormat.HexRgb)
        self.options_changed.emit()

    def set_width(self, width: float) -> None:
        self.width = float(min(max(width, MIN_WIDTH), MAX_WIDTH))
        self.options_changed.emit()

    set_size = set_width

    def grow(self) -> None:
        self.set_width(max(self.width + 1.0, self.width * SIZE_STEP))

    def shrink(self) -> None:
        self.set_width(min(self.width - 1.0, self.width / SIZE_STEP))

    # -- mouse -----------------------------------------------------------------------------------
    def press(self, event: ToolEvent) -> None:
        if self._layer is not None:
            return
        layer = self.editable_layer(self.document.active_layer, "scribble layer to draw on")
        if layer is None:
            return
        if not isinstance(layer, ScribbleLayer):
            self.message(f"Pen: layer {layer.name!r} is a {layer.kind} layer; draw on a scribble layer.")
            return
        self._layer = layer
        self._points = [(event.pos.x(), event.pos.y())]

    def move(self, event: ToolEvent) -> None:
        if self._layer is None:
            return
        x, y = event.pos.x(), event.pos.y()
        lx, ly = self._points[-1]
        if math.hypot(x - lx, y - ly) >= MIN_POINT_DISTANCE:
            self._points.append((x, y))

    def release(self, event: ToolEvent) -> None:
        if self._layer is None:
            return
        self.move(event)
        layer, points = self._layer, tuple(self._points)
        self._layer, self._points = None, []
        if layer in self.document.layers:
            self.document.execute(AddStroke(layer, Stroke(points, self.color, self.width)))

    def cancel(self) -> None:
        if self._layer is None:
            return
        whole = self._path_bounds(self._points)
        self._layer, self._points = None, []
        self.view.refresh_overlay(whole)

    # -- overlay ---------------------------------------------------------------------------------
    def _path_bounds(self, points: list[tuple[float, float]]) -> QRectF:
        if not points:
            return QRectF()
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        pad = self.width / 2.0 + 2.0
        return QRectF(min(xs) - pad, min(ys) - pad, max(xs) - min(xs) + 2 * pad, max(ys) - min(ys) + 2 * pad)

    def overlay_rect(self) -> QRectF:
        """The stroke's newest part: the smoothed tail through the last three points changes
        with each new point, the rest of the path is already on screen."""
        return self._path_bounds(self._points[-3:])

    def paint_overlay(self, painter: QPainter, scale: float) -> None:
        if self._layer is None or not self._points:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        stroke = Stroke(tuple(self._points), self.color, self.width)
        painter.setPen(stroke_pen(stroke, self._layer.mode == "annotation"))
        painter.drawPath(stroke_path(self._points))

    def cursor(self) -> QCursor:
        return QCursor(Qt.CursorShape.CrossCursor)

