"""The only place where numpy arrays become QImages and back.

Two ways in:
- `*_view` functions wrap the array's memory without copying. The QImage holds a reference to
  the array (PySide keeps the buffer alive, and we pin it on the image too), and later writes to
  the array show on the next paint. Use them for arrays the caller keeps (layer pixels, caches).
- `*_copy` / `to_qimage(..., copy=True)` make a QImage that owns its pixels, for arrays that may
  die or change behind the image's back (a preview handed over by the inference thread).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtGui import QImage


class ImageConversionError(ValueError):
    """An array cannot be shown as an image (one clear sentence)."""


_FORMATS = {
    # (ndim, channels) -> QImage format
    (2, 1): QImage.Format.Format_Grayscale8,
    (3, 3): QImage.Format.Format_RGB888,
    (3, 4): QImage.Format.Format_RGBA8888,
}


def _check(array: np.ndarray, channels: int | None = None) -> tuple[int, int, int]:
    if not isinstance(array, np.ndarray):
        raise ImageConversionError(f"Expected a numpy array, got {type(array).__name__}.")
    if array.dtype != np.uint8:
        raise ImageConversionError(f"Images must be 8-bit (uint8) arrays, not {array.dtype}.")
    if array.ndim == 2:
        c = 1
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        c = int(array.shape[2])
    else:
        raise ImageConversionError(f"An image array must be HxW, HxWx3 or HxWx4, not shape {array.shape}.")
    if channels is not None and c != channels:
        raise ImageConversionError(f"Expected an array with {channels} channel(s), got shape {array.shape}.")
    h, w = array.shape[:2]
    if h == 0 or w == 0:
        raise ImageConversionError(f"Cannot make an image of an empty array of shape {array.shape}.")
    return h, w, c


def _wrap(array: np.ndarray, fmt: QImage.Format) -> QImage:
    """A QImage over the array's memory. Rows may be padded (stride) but pixels must be packed."""
    h, w = array.shape[:2]
    buffer = array
    if not array.flags.c_contiguous:
        # Padded rows (a crop of a wider array): hand Qt the byte span from the first pixel to
        # the last; the gaps between rows belong to the same base array, so they are valid memory.
        span = array.strides[0] * (h - 1) + array.strides[1] * w
        buffer = np.lib.stride_tricks.as_strided(array, shape=(span,), strides=(1,))
    image = QImage(buffer.data, w, h, array.strides[0], fmt)
    image._numpy_owner = array  # belt and braces: the buffer must outlive the image
    return image


def _packed(array: np.ndarray) -> bool:
    """Rows may be anywhere, but within a row pixels and channels must be contiguous."""
    item = array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    inner_ok = array.ndim == 2 or array.strides[2] == array.itemsize
    return inner_ok and array.strides[1] == item and array.strides[0] >= item * array.shape[1] > 0


def to_qimage(array: np.ndarray, *, copy: bool = True) -> QImage:
    """HxW -> Grayscale8, HxWx3 -> RGB888, HxWx4 -> RGBA8888 (straight alpha).

    copy=False shares memory when the layout allows it (otherwise it copies anyway, since a
    QImage cannot describe a strided view); the result then reflects later writes to `array`.
    """
    h, w, c = _check(array)
    fmt = _FORMATS[(array.ndim, c)]
    if copy:
        return _wrap(np.ascontiguousarray(array), fmt).copy()
    if not _packed(array):
        array = np.ascontiguousarray(array)
    return _wrap(array, fmt)


def rgba_view(array: np.ndarray) -> QImage:
    """Zero-copy RGBA8888 view of an HxWx4 array (copies only when the array is strided)."""
    _check(array, 4)
    return to_qimage(array, copy=False)


def rgb_copy(array: np.ndarray) -> QImage:
    """An RGB888 QImage that owns a copy of an HxWx3 array."""
    _check(array, 3)
    return to_qimage(array, copy=True)


def gray_view(array: np.ndarray) -> QImage:
    """Zero-copy Grayscale8 view of an HxW array."""
    _check(array, 1)
    return to_qimage(array, copy=False)


def indexed_view(array: np.ndarray, color_table: Sequence[int]) -> QImage:
    """Zero-copy Indexed8 view of an HxW uint8 array with a 256-entry ARGB colour table.

    This is how masks are drawn as tinted overlays: no per-pixel conversion in Python, the
    painter looks each value up in the table for just the area it repaints.
    """
    _check(array, 1)
    if len(color_table) != 256:
        raise ImageConversionError(f"An indexed image needs 256 colours, got {len(color_table)}.")
    if not _packed(array):
        array = np.ascontiguousarray(array)
    image = _wrap(array, QImage.Format.Format_Indexed8)
    image.setColorTable(list(color_table))
    return image


def tint_table(red: int, green: int, blue: int, max_alpha: float) -> list[int]:
    """Colour table: value v -> (red, green, blue) at alpha v / 255 * max_alpha (non-premultiplied ARGB)."""
    alphas = np.round(np.arange(256) / 255.0 * max(0.0, min(1.0, max_alpha)) * 255.0).astype(np.uint32)
    rgb = (int(red) & 255) << 16 | (int(green) & 255) << 8 | (int(blue) & 255)
    return [int(a) << 24 | rgb for a in alphas]


def to_numpy(image: QImage) -> np.ndarray:
    """A copy of the image as HxWx4 RGBA (straight alpha), HxWx3 RGB or HxW gray uint8."""
    if image.isNull():
        raise ImageConversionError("Cannot convert an empty (null) image.")
    fmt = image.format()
    if fmt == QImage.Format.Format_Grayscale8:
        channels = 1
    elif fmt == QImage.Format.Format_RGB888:
        channels = 3
    else:
        if fmt != QImage.Format.Format_RGBA8888:
            image = image.convertToFormat(QImage.Format.Format_RGBA8888)
        channels = 4
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    buffer = np.frombuffer(image.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    rows = buffer[:, : w * channels]
    out = rows.reshape(h, w) if channels == 1 else rows.reshape(h, w, channels)
    return out.copy()
