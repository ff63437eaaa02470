"""Brush and eraser for mask layers and region layers' painted masks.

A stroke paints straight into the layer's array (canvas.model.paint.DabStroke), touching only
the dabs' rectangles, and emits `pixels_changed(dirty)` so the item repaints only that. The
StrokeRecorder backs up each tile before its first change; at release the stroke becomes one
undo step holding only the changed tiles. Painting on a rectangle region first turns it into
a painted mask (its rectangle filled), in the same undo step; so does bringing a mask whose size
differs from the document's to the document size.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QPainter, QPen

from canvas.model.commands import ReplacePixels
from canvas.model.history import Command, Macro, StrokeRecorder
from canvas.model.layers import Layer, MaskLayer, RegionLayer
from canvas.model.paint import MAX_BRUSH_SIZE, MIN_BRUSH_SIZE, Brush, DabStroke, region_rect_mask
from canvas.view.tools.base import Tool, ToolEvent

SIZE_STEP = 1.2  # `[` and `]` scale the size by this factor


class BrushTool(Tool):
    name = "brush"
    label = "Brush"
    mode = "paint"

    def __init__(self, view, brush: Brush | None = None):
        super().__init__(view)
        self.brush = brush or Brush()
        self._layer: Layer | None = None
        self._recorder: StrokeRecorder | None = None
        self._stroke: DabStroke | None = None
        # a rectangle region turned into a painted one, or a mask brought to the document size
        self._prelude: Command | None = None
        self._hover: QPointF | None = None

    # -- options -------------------------------------------------------------------------------
    @property
    def size(self) -> float:
        return self.brush.size

    def set_size(self, size: float) -> None:
        self._set_brush(Brush(size, self.brush.hardness, self.brush.opacity, self.brush.spacing))

    def set_hardness(self, hardness: float) -> None:
        self._set_brush(Brush(self.brush.size, hardness, self.brush.opacity, self.brush.spacing))



    def grow(self) -> None:
        self.set_size(min(MAX_BRUSH_SIZE, max(self.brush.size + 1.0, self.brush.size * SIZE_STEP)))

    def shrink(self) -> None:
        self.set_size(max(MIN_BRUSH_SIZE, min(self.brush.size - 1.0, self.brush.size / SIZE_STEP)))

    def _set_brush(self, brush: Brush) -> None:
        if brush == self.brush:
            return
        old_overlay = self.overlay_rect()
        self.brush = brush
        self.options_changed.emit()
        self.view.refresh_overlay(old_overlay)

    # -- stroke --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._stroke is not None

    def press(self, event: ToolEvent) -> None:
        if self._stroke is not None:
            return
        layer = self.editable_layer(self.document.active_layer, "mask or region layer to paint on")
        if layer is None:
            return
        if isinstance(layer, MaskLayer):
            attr = "pixels"
        elif isinstance(layer, RegionLayer):
            attr = "mask"
        else:
            self.message(f"{self.label}: layer {layer.name!r} is a {layer.kind} layer; "
                         "paint on a mask or region layer.")
            return
        doc = self.document
        current = getattr(layer, attr)
        if current is None:  # a rectangle region: paint on its rectangle rendered as a mask
            start = region_rect_mask(layer, doc.width, doc.height)
        elif current.ndim != 2 or current.dtype != np.uint8:
            self.message(f"{self.label}: layer {layer.name!r} does not hold an 8-bit mask.")
            return
        elif current.shape != (doc.height, doc.width):  # e.g. made before the canvas was resized
            start = np.zeros((doc.height, doc.width), np.uint8)
            h, w = min(doc.height, current.shape[0]), min(doc.width, current.shape[1])
            start[:h, :w] = current[:h, :w]
        else:
            start = None
        if start is not None:
            self._prelude = ReplacePixels(layer, attr, start, f"{self.label} stroke")
            self._prelude.do(doc)
        self._layer = layer
        self._recorder = StrokeRecorder(layer, attr, label=f"{self.label} stroke")
        self._stroke = DabStroke(getattr(layer, attr), self.brush, self.mode, touch=self._recorder.touch)
        self._emit(self._stroke.begin(event.pos.x(), event.pos.y()))

    def move(self, event: ToolEvent) -> None:
        self._hover = event.pos
        if self._stroke is not None:
            self._emit(self._stroke.extend(event.pos.x(), event.pos.y()))

    def release(self, event: ToolEvent) -> None:
        if self._stroke is None:
            return
        self._emit(self._stroke.extend(event.pos.x(), event.pos.y()))
        patch = self._recorder.finish()
        steps = [c for c in (self._prelude, patch) if c is not None]
        self._reset()
        if len(steps) == 1:
            self.document.history.record(steps[0])
        elif steps:
            self.document.history.record(Macro(steps[-1].label, steps))

    def cancel(self) -> None:
        if self._stroke is None:
            return
        patch = self._recorder.finish()
        if patch is not None:
            patch.undo(self.document)
        if self._prelude is not None:
            self._prelude.undo(self.document)
        self._reset()

    def _reset(self) -> None:
        self._layer = self._recorder = self._stroke = self._prelude = None

    def _emit(self, dirty) -> None:
        if not dirty.empty:
            self._layer.pixels_touched(dirty)

    # -- looks ---------------------------------------------------------------------------------
    def hover(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self._hover = pos

    def leave(self) -> None:
        self._hover = None

    def deactivate(self) -> None:
        super().deactivate()
        self._hover = None

    def overlay_rect(self) -> QRectF:
        if self._hover is None:
            return QRectF()
        r = self.brush.radius
        return QRectF(self._hover.x() - r, self._hover.y() - r, 2 * r, 2 * r)

    def paint_overlay(self, painter: QPainter, scale: float) -> None:
        """The brush outline: a dark and a light circle so it shows on any background."""
        rect = self.overlay_rect()
        if rect.isEmpty():
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for color, grow in ((QColor(0, 0, 0, 200), 0.0), (QColor(255, 255, 255, 220), 1.0 / scale)):
            pen = QPen(color, 1.0)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.drawEllipse(rect.adjusted(-grow, -grow, grow, grow))

    def cursor(self) -> QCursor:
        return QCursor(Qt.CursorShape.CrossCursor)


class EraserTool(BrushTool):
    name = "eraser"
    label = "Eraser"
    mode = "erase"
