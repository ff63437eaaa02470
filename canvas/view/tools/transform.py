"""Move / transform tool for image layers: drag to move, corner handles to scale (the opposite
corner stays put), the knob above the top edge to rotate about the centre (Shift: 15° steps,
and for moves: one axis). A drag is one SetTransform whose values follow the pointer (applied
on every mouse event) and which is recorded in the history once, at release: one undo step, and
a cancelled drag leaves no trace.
"""

from __future__ import annotations

import math

import numpy as np
import shiboken6
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QPainter, QPen, QPolygonF

from canvas.model.commands import SetTransform
from canvas.model.layers import ImageLayer, Layer
from canvas.view.items import draw_handles, handle_rect
from canvas.view.tools.base import Tool, ToolEvent

ROTATE_KNOB_PX = 28.0  # distance of the rotate knob above the top edge, on screen
MIN_SCALE, MAX_SCALE = 0.01, 100.0
ROTATE_SNAP_DEG = 15.0
CORNERS_UV = {"nw": (0.0, 0.0), "ne": (1.0, 0.0), "se": (1.0, 1.0), "sw": (0.0, 1.0)}
OPPOSITE = {"nw": "se", "ne": "sw", "se": "nw", "sw": "ne"}


def _apply(layer: ImageLayer, u: float, v: float, *, scale: float | None = None,
           rotation: float | None = None, x: float | None = None, y: float | None = None) -> QPointF:
    """Document position of layer pixel (u, v) under the layer's transform, or a changed one."""
    s = layer.scale if scale is None else scale
    a = math.radians(layer.rotation if rotation is None else rotation)
    ox = layer.x if x is None else x
    oy = layer.y if y is None else y
    c, sn = math.cos(a) * s, math.sin(a) * s
    return QPointF(ox + c * u - sn * v, oy + sn * u + c * v)


def layer_corners(layer: ImageLayer) -> dict[str, QPointF]:
    w, h = layer.size
    return {name: _apply(layer, fu * w, fv * h) for name, (fu, fv) in CORNERS_UV.items()}


class MoveTool(Tool):
    name = "move"
    label = "Move / transform"

    def __init__(self, view):
        super().__init__(view)
        self._mode: str | None = None  # "move" | "scale" | "rotate"
        self._layer: ImageLayer | None = None
        self._start = QPointF()
        self._orig: dict[str, float] = {}
        self._anchor_uv = (0.0, 0.0)  # layer pixel that stays fixed while scaling
        self._anchor = QPointF()  # ... and where it is in the document
        self._corner = QPointF()  # the dragged corner at press time
        self._live: SetTransform | None = None  # the drag's command, applied but not yet recorded
        self._watched: Layer | None = None
        self._cursor = Qt.CursorShape.SizeAllCursor

    @property
    def busy(self) -> bool:
        return self._mode is not None

    # -- subscriptions: the overlay follows the active layer and its transform ------------------
    def activate(self) -> None:
        self.document.events.active_layer_changed.connect(self._on_active_layer_changed)
        self._watch(self.document.active_layer)

    def deactivate(self) -> None:
        super().deactivate()
        self.document.events.active_layer_changed.disconnect(self._on_active_layer_changed)
        self._watch(None)
        self.view.refresh_all()

    def _watch(self, layer: Layer | None) -> None:
        if self._watched is not None:
            self._watched.events.changed.disconnect(self._on_layer_changed)
        self._watched = layer
        if layer is not None:
            layer.events.changed.connect(self._on_layer_changed)

    def _alive(self) -> bool:
        """False once Qt has deleted the view (and this tool) while the document lives on."""
        if shiboken6.isValid(self) and shiboken6.isValid(self.view):
            return True
        self.document.events.active_layer_changed.disconnect(self._on_active_layer_changed)
        self._watch(None)
        return False

    def _on_active_layer_changed(self, layer: Layer | None) -> None:
        if self._alive():
            self._watch(layer)
            self.view.refresh_all()

    def _on_layer_changed(self, name: str) -> None:
        # during our own drag the view refreshes the overlay itself
        if self._alive() and self._mode is None:
            self.view.refresh_all()

    # -- geometry --------------------------------------------------------------------------------
    def _target(self) -> ImageLayer | None:
        layer = self.document.active_layer
        if isinstance(layer, ImageLayer) and layer.visible and layer.size[0] > 0:
            return layer
        return None

    def _knob(self, layer: ImageLayer) -> tuple[QPointF, QPointF]:
        """(top-edge midpoint, rotate knob) in document coordinates."""
        w, _ = layer.size
        top = _apply(layer, w / 2.0, 0.0)
        a = math.radians(layer.rotation)
        distance = ROTATE_KNOB_PX / self.view.zoom
        return top, QPointF(top.x() + math.sin(a) * distance, top.y() - math.cos(a) * distance)

    def layer_at(self, pos: QPointF) -> ImageLayer | None:
        """The active image layer if it is under the point, else the topmost one that is."""
        candidates = [la for la in reversed(self.document.layers) if isinstance(la, ImageLayer) and la.visible]
        active = self.document.active_layer
        if active in candidates:
            candidates.remove(active)
            candidates.insert(0, active)
        for layer in candidates:
            if _contains(layer, pos):
                return layer
        return None

    def handle_at(self, layer: ImageLayer, pos: QPointF) -> str:
        zoom = self.view.zoom
        if handle_rect(self._knob(layer)[1], zoom * 0.7).contains(pos):
            return "rotate"
        for name, point in layer_corners(layer).items():
            if handle_rect(point, zoom * 0.8).contains(pos):
                return name
        return ""

    # -- mouse -----------------------------------------------------------------------------------
    def press(self, event: ToolEvent) -> None:
        if self._mode is not None:
            return
        pos = event.pos
        target = self._target()
        handle = self.handle_at(target, pos) if target is not None else ""
        if handle and target.locked:
            self.message(f"Layer {target.name!r} is locked.")
            return
        if handle == "rotate":
            self._begin("rotate", target, pos)
            return
        if handle:
            self._begin("scale", target, pos)
            w, h = target.size
            fu, fv = CORNERS_UV[OPPOSITE[handle]]
            self._anchor_uv = (fu * w, fv * h)
            self._anchor = _apply(target, *self._anchor_uv)
            self._corner = layer_corners(target)[handle]
            return
        hit = self.layer_at(pos)
        if hit is None:
            self.message("Nothing to move here: press on an image layer.")
            return
        self.document.active_layer = hit
        if hit.locked:
            self.message(f"Layer {hit.name!r} is locked.")
            return
        self._begin("move", hit, pos)

    def move(self, event: ToolEvent) -> None:
        if self._mode is None:
            return
        values = {**self._live.values, **self._values(event.pos, event.shift)}
        if values != self._live.values:
            self._live.values = values
            self._live.do(self.document)

    def release(self, event: ToolEvent) -> None:
        if self._mode is None:
            return
        self.move(event)
        live = self._live
        self._end()
        if live.values != live.old:
            self.document.history.record(live)

    def cancel(self) -> None:
        if self._live is not None:
            self._live.undo(self.document)
        self._end()

    def _end(self) -> None:
        self._mode = None
        self._layer = None
        self._live = None

    def hover(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        target = self._target()
        handle = self.handle_at(target, pos) if target is not None else ""
        if handle == "rotate":
            self._cursor = Qt.CursorShape.PointingHandCursor
        elif handle:
            self._cursor = _corner_cursor(target, handle)
        else:
            self._cursor = Qt.CursorShape.SizeAllCursor

    def cursor(self) -> QCursor:
        return QCursor(self._cursor)

    # -- the transform under the drag ------------------------------------------------------------
    def _begin(self, mode: str, layer: ImageLayer, pos: QPointF) -> None:
        self._mode = mode
        self._layer = layer
        self._start = QPointF(pos)
        self._orig = {k: float(getattr(layer, k)) for k in SetTransform.FIELDS}
        self._live = SetTransform(layer, **self._orig)

    def _values(self, pos: QPointF, shift: bool) -> dict[str, float]:
        o = self._orig
        layer = self._layer
        if self._mode == "move":
            dx, dy = pos.x() - self._start.x(), pos.y() - self._start.y()
            if shift:
                dx, dy = (dx, 0.0) if abs(dx) >= abs(dy) else (0.0, dy)
            # whole pixels keep an unscaled layer pixel-aligned (an exact copy when composed)
            return {"x": float(round(o["x"] + dx)), "y": float(round(o["y"] + dy))}
        if self._mode == "scale":
            d0 = np.array([self._corner.x() - self._anchor.x(), self._corner.y() - self._anchor.y()])
            d1 = np.array([pos.x() - self._anchor.x(), pos.y() - self._anchor.y()])
            length = float(d0 @ d0)
            factor = float(d1 @ d0) / length if length > 0 else 1.0
            scale = min(MAX_SCALE, max(MIN_SCALE, o["scale"] * factor))
            moved = _apply(layer, *self._anchor_uv, scale=scale, rotation=o["rotation"], x=0.0, y=0.0)
            return {"x": self._anchor.x() - moved.x(), "y": self._anchor.y() - moved.y(), "scale": scale}
        # rotate about the centre
        w, h = layer.size
        centre = _apply(layer, w / 2.0, h / 2.0, scale=o["scale"], rotation=o["rotation"], x=o["x"], y=o["y"])
        a0 = math.atan2(self._start.y() - centre.y(), self._start.x() - centre.x())
        a1 = math.atan2(pos.y() - centre.y(), pos.x() - centre.x())
        rotation = o["rotation"] + math.degrees(a1 - a0)
        if shift:
            rotation = round(rotation / ROTATE_SNAP_DEG) * ROTATE_SNAP_DEG
        rotation = (rotation + 180.0) % 360.0 - 180.0
        moved = _apply(layer, w / 2.0, h / 2.0, scale=o["scale"], rotation=rotation, x=0.0, y=0.0)
        return {"x": centre.x() - moved.x(), "y": centre.y() - moved.y(), "rotation": rotation}

    # -- overlay ---------------------------------------------------------------------------------
    def overlay_rect(self) -> QRectF:
        target = self._target()
        if target is None:
            return QRectF()
        corners = list(layer_corners(target).values())
        _, knob = self._knob(target)
        polygon = QPolygonF([*corners, knob])
        pad = 12.0 / self.view.zoom
        return polygon.boundingRect().adjusted(-pad, -pad, pad, pad)

    def paint_overlay(self, painter: QPainter, scale: float) -> None:
        target = self._target()
        if target is None:
            return
        corners = layer_corners(target)
        top, knob = self._knob(target)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for color, style in ((QColor(0, 0, 0, 180), Qt.PenStyle.SolidLine),
                             (QColor(40, 140, 255), Qt.PenStyle.DashLine)):
            pen = QPen(color, 1.0, style)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.drawPolygon(QPolygonF(list(corners.values())))
            painter.drawLine(top, knob)
        draw_handles(painter, list(corners.values()), scale)
        painter.setBrush(QColor(255, 255, 255))
        radius = 5.0 / scale
        painter.drawEllipse(knob, radius, radius)


def _contains(layer: ImageLayer, pos: QPointF) -> bool:
    """Whether a document point lands on the layer's pixels (inside its transformed rectangle)."""
    if layer.scale == 0:
        return False
    u, v, _ = np.linalg.solve(layer.matrix(), np.array([pos.x(), pos.y(), 1.0]))
    w, h = layer.size
    return 0.0 <= u < w and 0.0 <= v < h


def _corner_cursor(layer: ImageLayer, handle: str) -> Qt.CursorShape:
    """The diagonal resize cursor that matches the corner's direction on screen."""
    w, h = layer.size
    centre = _apply(layer, w / 2.0, h / 2.0)
    corner = layer_corners(layer)[handle]
    dx, dy = corner.x() - centre.x(), corner.y() - centre.y()
    return Qt.CursorShape.SizeFDiagCursor if dx * dy >= 0 else Qt.CursorShape.SizeBDiagCursor
