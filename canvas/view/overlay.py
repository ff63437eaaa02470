"""A float map (e.g. refine's per-pixel strength) drawn as a translucent heat overlay.

The map is quantised once to 8 bits and drawn through a 256-colour table (blue = low, red =
high), stretched over the document or a given rectangle, so any map size works (a latent-size
map shows over the full canvas). Toggle it with `set_shown`; a hidden overlay keeps its map.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from canvas.view.qimage import ImageConversionError, indexed_view

# (position, (r, g, b)) stops of the colour ramp
HEAT_STOPS = ((0.0, (40, 40, 190)), (0.35, (30, 170, 220)), (0.6, (120, 210, 60)),
              (0.8, (250, 200, 40)), (1.0, (235, 40, 30)))
MIN_ALPHA, MAX_ALPHA = 0.25, 0.65  # even zero shows faintly, so the covered area is visible


def heat_table() -> list[int]:
    """256 non-premultiplied ARGB entries along HEAT_STOPS, alpha rising with the value."""
    t = np.linspace(0.0, 1.0, 256)
    pos = np.array([s[0] for s in HEAT_STOPS])
    channels = [np.interp(t, pos, [s[1][c] for s in HEAT_STOPS]) for c in range(3)]
    alpha = MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * t
    argb = [np.round(alpha * 255.0).astype(np.uint32)] + [np.round(c).astype(np.uint32) for c in channels]
    return [int(a) << 24 | int(r) << 16 | int(g) << 8 | int(b) for a, r, g, b in zip(*argb)]


def quantise(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] to 0..255 (clipped; NaN counts as low)."""
    span = high - low
    if not np.isfinite(span) or span <= 0:
        raise ImageConversionError(f"A heat map needs low < high, not {low} and {high}.")
    scaled = (np.nan_to_num(values.astype(np.float32), nan=low) - np.float32(low)) / np.float32(span)
    return (np.clip(scaled, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


class HeatOverlay(QGraphicsItem):
    def __init__(self, width: int, height: int):
        super().__init__()
        self._document_rect = QRectF(0.0, 0.0, float(width), float(height))
        self._rect = QRectF()
        self._values: np.ndarray | None = None  # the quantised map the image views
        self._image: QImage | None = None
        self._table = heat_table()
        self._shown = True
        self.setVisible(False)

    @property
    def has_map(self) -> bool:
        return self._values is not None

    @property
    def shown(self) -> bool:
        return self._shown

    @property
    def area(self) -> QRectF:
        return QRectF(self._rect)

    def quantised(self) -> np.ndarray | None:
        """The map as drawn (0..255), for inspection."""
        return None if self._values is None else self._values.copy()

    def set_map(self, values: np.ndarray, rect: tuple[float, float, float, float] | None = None,
                low: float = 0.0, high: float = 1.0) -> None:
        """Show `values` (HxW floats) stretched over `rect` (default: the whole document)."""
        if not isinstance(values, np.ndarray) or values.ndim != 2 or values.size == 0:
            shape = getattr(values, "shape", None)
            raise ImageConversionError(f"A heat map must be a non-empty 2-D array, not {shape}.")
        if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)
                or values.dtype == bool):
            raise ImageConversionError(f"A heat map must hold numbers, not {values.dtype}.")
        quantised = quantise(values, low, high)
        area = self._document_rect if rect is None else QRectF(*(float(v) for v in rect))
        if area.isEmpty():
            raise ImageConversionError("A heat map needs an area with a positive size.")
        self.prepareGeometryChange()
        self._rect = area
        self._values = quantised
        self._image = indexed_view(quantised, self._table)
        self.setVisible(self._shown)
        self.update()

    def set_shown(self, shown: bool) -> None:
        self._shown = bool(shown)
        self.setVisible(self._shown and self._values is not None)

    def toggle(self) -> None:
        self.set_shown(not self._shown)

    def clear(self) -> None:
        self.prepareGeometryChange()
        self._values = self._image = None
        self._rect = QRectF()
        self.setVisible(False)

    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if self._image is None:
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        w, h = self._image.width(), self._image.height()
        painter.drawImage(self._rect, self._image, QRectF(QPointF(0.0, 0.0), QPointF(float(w), float(h))))
