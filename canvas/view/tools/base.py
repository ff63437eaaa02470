"""What every canvas tool is: mouse events in document coordinates in, commands out.

The view translates Qt mouse events into `ToolEvent`s (document coordinates, since one scene
unit is one document pixel) and hands them to the active tool; panning and zooming never reach
tools. A tool may draw an overlay (brush outline, rubber band, transform handles) on top of the
scene; `overlay_rect()` tells the view which area to repaint when the overlay moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QCursor, QPainter

from canvas.model.layers import Layer

if TYPE_CHECKING:
    from canvas.model.document import Document
    from canvas.view.canvas_view import CanvasView


@dataclass(frozen=True)
class ToolEvent:
    pos: QPointF  # document coordinates (float)
    button: Qt.MouseButton
    buttons: Qt.MouseButton
    modifiers: Qt.KeyboardModifier

    @property
    def shift(self) -> bool:
        return bool(self.modifiers & Qt.KeyboardModifier.ShiftModifier)


class Tool(QObject):
    """Base class. Subclasses override the mouse hooks they need."""

    name = "tool"
    label = "Tool"
    options_changed = Signal()  # size, colour, ... changed (for a tool options panel)

    def __init__(self, view: CanvasView):
        super().__init__(view)
        self.view = view

    @property
    def document(self) -> Document:
        return self.view.document

    @property
    def busy(self) -> bool:
        """True while a drag is in progress."""
        return False

    # -- lifecycle ----------------------------------------------------------------------------
    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Abandon the drag in progress, leaving the document as it was before it."""

    # -- mouse ---------------------------------------------------------------------------------
    def press(self, event: ToolEvent) -> None:
        pass

    def move(self, event: ToolEvent) -> None:
        pass

    def release(self, event: ToolEvent) -> None:
        pass

    def double_click(self, event: ToolEvent) -> None:
        pass

    def hover(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        """The pointer moved with no button held."""

    def leave(self) -> None:
        """The pointer left the canvas."""

    # -- looks --------------------------------------------------------------------------------
    def cursor(self) -> QCursor:
        return QCursor(Qt.CursorShape.CrossCursor)

    def paint_overlay(self, painter: QPainter, scale: float) -> None:
        """Draw in document coordinates; `scale` is screen px per document px."""

    def overlay_rect(self) -> QRectF:
        """Document area the overlay covers now (empty = none)."""
        return QRectF()

    # -- helpers ------------------------------------------------------------------------------
    def message(self, text: str) -> None:
        self.view.status_message.emit(text)

    def editable_layer(self, layer: Layer | None, what: str) -> Layer | None:
        """The layer if a tool may change it, else None after telling the user why."""
        if layer is None:
            self.message(f"Select a {what} first.")
            return None
        if layer.locked:
            self.message(f"Layer {layer.name!r} is locked.")
            return None
        if not layer.visible:
            self.message(f"Layer {layer.name!r} is hidden; show it to edit it.")
            return None
        return layer
