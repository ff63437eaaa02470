"""Eyedropper: press (and drag) to pick the flattened image colour under the pointer."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Signal
from PySide6.QtGui import QColor

from canvas.model.paint import sample_color
from canvas.view.tools.base import Tool, ToolEvent


class EyedropperTool(Tool):
    name = "eyedropper"
    label = "Eyedropper"
    color_picked = Signal(QColor)

    def __init__(self, view):
        super().__init__(view)
        self.color = QColor(255, 255, 255)
        self._picking = False

    @property
    def busy(self) -> bool:
        return self._picking

    def press(self, event: ToolEvent) -> None:
        self._picking = True
        self.pick(event.pos)

    def move(self, event: ToolEvent) -> None:
        if self._picking:
            self.pick(event.pos)

    def release(self, event: ToolEvent) -> None:
        self._picking = False

    def cancel(self) -> None:
        self._picking = False

    def pick(self, pos: QPointF) -> QColor | None:
        """Pick the colour at a document point (outside the document: nothing)."""
        doc = self.document
        if not (0.0 <= pos.x() < doc.width and 0.0 <= pos.y() < doc.height):
            return None
        color = QColor(*sample_color(doc.layers, pos.x(), pos.y()))
        if color != self.color:
            self.color = color
            self.color_picked.emit(QColor(color))
            self.message(f"Picked {color.name()}")
        return color
