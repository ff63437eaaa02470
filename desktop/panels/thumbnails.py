"""Small pictures of layers and results for the panels (never full-size copies)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPixmap, QTransform

from canvas.model.layers import ImageLayer, Layer, MaskLayer, RegionLayer, ScribbleLayer
from canvas.view.qimage import to_qimage

CHECKER = (QColor(200, 200, 200), QColor(160, 160, 160))


def fit_size(width: int, height: int, box: int) -> tuple[int, int]:
    scale = box / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def downsample(array: np.ndarray, factor: float) -> np.ndarray:
    """Every n-th pixel so the result is about `factor` times the size (cheap, for thumbnails)."""
    step = max(1, int(1.0 / max(factor, 1e-6)))
    return np.ascontiguousarray(array[::step, ::step])


def image_thumbnail(rgb: np.ndarray, box: int) -> QPixmap:
    """An RGB/RGBA array scaled to fit `box` px."""
    h, w = rgb.shape[:2]
    tw, th = fit_size(w, h, box)
    small = downsample(rgb, min(tw / w, th / h) * 2)
    image = to_qimage(small, copy=True)
    return QPixmap.fromImage(image.scaled(tw, th, Qt.AspectRatioMode.IgnoreAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation))


def layer_thumbnail(layer: Layer, doc_width: int, doc_height: int, box: int = 40) -> QPixmap:
    """The layer where it sits in the document, on a checkerboard, `box` px on the long side."""
    tw, th = fit_size(doc_width, doc_height, box)
    pix = QPixmap(tw, th)
    pix.fill(CHECKER[0])
    painter = QPainter(pix)
    cell = max(3, box // 8)
    for y in range(0, th, cell):
        for x in range((y // cell) % 2 * cell, tw, 2 * cell):
            painter.fillRect(x, y, cell, cell, CHECKER[1])
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    scale = tw / doc_width
    painter.scale(scale, scale)
    try:
        if isinstance(layer, ImageLayer):
            _paint_image(painter, layer, scale)
        elif isinstance(layer, MaskLayer):
            _paint_mask(painter, layer.pixels, QColor(230, 40, 40), scale)
        elif isinstance(layer, RegionLayer):
            _paint_region(painter, layer, scale)
        elif isinstance(layer, ScribbleLayer):
            _paint_strokes(painter, layer)
    finally:
        painter.end()
    return pix


def _paint_image(painter: QPainter, layer: ImageLayer, scale: float) -> None:
    pixels = layer.pixels
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 3 or pixels.size == 0:
        return
    h, w = pixels.shape[:2]
    small = downsample(pixels, scale * max(layer.scale, 1e-3) * 2)
    image = to_qimage(small, copy=True)
    m = layer.matrix()
    painter.save()
    painter.setTransform(QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2]), True)
    painter.setOpacity(float(layer.opacity))
    painter.drawImage(QRectF(0, 0, w, h), image, QRectF(image.rect()))
    painter.restore()


def _paint_mask(painter: QPainter, mask: np.ndarray, color: QColor, scale: float) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.size == 0:
        return
    h, w = mask.shape
    small = downsample(mask, scale * 2)
    rgba = np.empty(small.shape + (4,), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = color.red(), color.green(), color.blue()
    rgba[..., 3] = small
    painter.drawImage(QRectF(0, 0, w, h), to_qimage(rgba, copy=True))


def _paint_region(painter: QPainter, layer: RegionLayer, scale: float) -> None:
    color = QColor(layer.color)
    if not color.isValid():
        color = QColor(224, 96, 79)
    if layer.mask is not None:
        _paint_mask(painter, layer.mask, color, scale)
        return
    x, y, w, h = layer.rect
    fill = QColor(color)
    fill.setAlpha(120)
    painter.fillRect(QRectF(x, y, w, h), fill)
    pen = QPen(color, 2.0 / scale)
    painter.setPen(pen)
    painter.drawRect(QRectF(x, y, w, h))


def _paint_strokes(painter: QPainter, layer: ScribbleLayer) -> None:
    for stroke in layer.strokes:
        if not stroke.points:
            continue
        pen = QPen(QColor(stroke.color), float(stroke.width), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                   Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        path = QPainterPath(QPointF(*stroke.points[0]))
        for point in stroke.points[1:]:
            path.lineTo(QPointF(*point))
        if len(stroke.points) == 1:
            path.lineTo(QPointF(stroke.points[0][0] + 0.01, stroke.points[0][1]))
        painter.drawPath(path)


def result_thumbnail(rgb: np.ndarray, box: int = 72) -> QPixmap:
    return image_thumbnail(rgb, box)


