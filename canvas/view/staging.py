"""Generation results on the canvas before they become layers.

While a generation runs, `show_preview(rect, rgb)` draws the newest step preview stretched over
the target rectangle (only the newest is kept). When it finishes, `set_candidates(images, rect)`
shows one candidate at a time over the same area; the desktop's accept / next / previous /
discard buttons call `next_candidate()`, `previous_candidate()`, `current_candidate()` and
`clear()`. Images are copied on arrival: the inference side may reuse its buffers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsObject, QStyleOptionGraphicsItem, QWidget

from canvas.model.layers import Rect
from canvas.view.qimage import ImageConversionError, to_qimage

LABEL_PX = 12.0


def _as_rect(rect: Rect | Sequence[float]) -> QRectF:
    if isinstance(rect, QRectF):
        return QRectF(rect)
    x, y, w, h = rect
    if w <= 0 or h <= 0:
        raise ImageConversionError(f"A staging area needs a positive size, not {w}x{h}.")
    return QRectF(float(x), float(y), float(w), float(h))


def _image_array(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        shape = getattr(rgb, "shape", None)
        raise ImageConversionError(f"A preview must be an HxWx3 (or x4) uint8 array, not {shape}.")
    return rgb


class StagingOverlay(QGraphicsObject):
    """Preview / candidate images over a document rectangle, drawn above every layer."""

    candidate_changed = Signal(int)  # index of the candidate now shown
    cleared = Signal()

    def __init__(self):
        super().__init__()
        self.setFlag(QGraphicsObject.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self._rect = QRectF()
        self._preview: QImage | None = None
        self._candidates: list[np.ndarray] = []
        self._candidate_images: list[QImage] = []
        self._index = 0
        self.setVisible(False)

    # -- state -------------------------------------------------------------------------------
    @property
    def area(self) -> QRectF:
        return QRectF(self._rect)

    @property
    def showing_preview(self) -> bool:
        return self._preview is not None

    @property
    def candidates(self) -> tuple[np.ndarray, ...]:
        return tuple(self._candidates)

    @property
    def current_index(self) -> int:
        return self._index

    @current_index.setter
    def current_index(self, index: int) -> None:
        self.show_candidate(index)

    def current_candidate(self) -> np.ndarray | None:
        """The candidate shown now (the array handed to set_candidates, copied), or None."""
        return self._candidates[self._index] if self._candidates else None

    # -- changes -----------------------------------------------------------------------------
    def show_preview(self, rect: Rect | Sequence[float], rgb: np.ndarray) -> None:
        """Show a step preview (any size, stretched over `rect`); replaces any candidates."""
        image = to_qimage(_image_array(rgb), copy=True)
        self._set_area(_as_rect(rect))
        self._preview = image
        self._candidates, self._candidate_images, self._index = [], [], 0
        self.setVisible(True)
        self.update()

    def set_candidates(self, images: Sequence[np.ndarray], rect: Rect | Sequence[float]) -> None:
        """Show finished results; the first one is current."""
        arrays = [np.array(_image_array(im), copy=True) for im in images]
        if not arrays:
            self.clear()
            return
        qimages = [to_qimage(a, copy=False) for a in arrays]  # views of our own copies
        self._set_area(_as_rect(rect))
        self._preview = None
        self._candidates, self._candidate_images = arrays, qimages
        self._index = 0
        self.setVisible(True)
        self.update()
        self.candidate_changed.emit(0)

    def show_candidate(self, index: int) -> None:
        if not self._candidates:
            return
        index = max(0, min(int(index), len(self._candidates) - 1))
        if index != self._index:
            self._index = index
            self.update()
            self.candidate_changed.emit(index)

    def next_candidate(self) -> None:
        """Show the next candidate, wrapping around."""
        if self._candidates:
            self.show_candidate((self._index + 1) % len(self._candidates))

    def previous_candidate(self) -> None:
        if self._candidates:
            self.show_candidate((self._index - 1) % len(self._candidates))

    def clear(self) -> None:
        """Hide the preview or candidates (after accept or discard, or a cancelled run)."""
        had_content = self._preview is not None or bool(self._candidates)
        self._preview = None
        self._candidates, self._candidate_images, self._index = [], [], 0
        self.update()
        self.setVisible(False)
        if had_content:
            self.cleared.emit()

    def _set_area(self, rect: QRectF) -> None:
        if rect != self._rect:
            self.prepareGeometryChange()
            self.update()
            self._rect = rect

    # -- painting ----------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-2.0, -2.0, 2.0, 2.0) if not self._rect.isEmpty() else QRectF()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        image = self._preview if self._preview is not None else (
            self._candidate_images[self._index] if self._candidate_images else None)
        if image is None:
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(self._rect, image, QRectF(image.rect()))
        pen = QPen(QColor(255, 200, 40), 2.0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(self._rect)
        label = "Preview" if self._preview is not None else f"{self._index + 1} / {len(self._candidates)}"
        self._paint_label(painter, option, label)

    def _paint_label(self, painter: QPainter, option: QStyleOptionGraphicsItem, text: str) -> None:
        scale = max(option.levelOfDetailFromTransform(painter.worldTransform()), 1e-6)
        if self._rect.width() * scale < 40.0:
            return
        painter.save()
        painter.translate(self._rect.topLeft())
        painter.scale(1.0 / scale, 1.0 / scale)
        font = QFont()
        font.setPixelSize(int(LABEL_PX))
        painter.setFont(font)
        metrics = QFontMetricsF(font)
        box = QRectF(QPointF(2.0, 2.0), metrics.size(0, text) + QRectF(0, 0, 10.0, 4.0).size())
        painter.fillRect(box, QColor(0, 0, 0, 170))
        painter.setPen(QColor(255, 220, 90))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()
