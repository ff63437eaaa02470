"""Brush dabs on 8-bit masks, and the mask-wide fill / clear / invert commands (Qt-free).

A stroke is a chain of round dabs placed every `spacing * size` pixels along the mouse path.
Every dab works on its own bounding rectangle only, so a dab on a 4096² mask costs the dab's
area, not the mask's.

Opacity is a per-stroke cap (as in Krita and Photoshop): within one stroke, overlapping dabs
never push a pixel past `opacity`, however often the brush passes over it; a second stroke
builds on the first. To do that the stroke keeps, for the pixels it touched, the coverage so far
(max of dab alphas) and the value the pixel had before the stroke, and sets
    value = before + (target - before) * coverage * opacity
where target is 255 for the brush and 0 for the eraser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from canvas.model.commands import ReplacePixels
from canvas.model.document import DocumentError
from canvas.model.layers import ImageLayer, Layer, MaskLayer, Rect, RegionLayer

MIN_BRUSH_SIZE = 1.0
MAX_BRUSH_SIZE = 2000.0


class PaintError(DocumentError):
    """A paint operation cannot be done on this layer (one clear sentence)."""


@dataclass(frozen=True)
class Brush:
    """A round brush. `size` is the diameter in document pixels; `hardness` 1 = hard edge
    (1 px anti-aliased), 0 = soft all the way from the centre; `spacing` is the distance
    between dabs as a fraction of the size."""

    size: float = 32.0
    hardness: float = 0.8
    opacity: float = 1.0
    spacing: float = 0.12

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", float(min(max(self.size, MIN_BRUSH_SIZE), MAX_BRUSH_SIZE)))
        object.__setattr__(self, "hardness", float(min(max(self.hardness, 0.0), 1.0)))
        object.__setattr__(self, "opacity", float(min(max(self.opacity, 0.0), 1.0)))
        object.__setattr__(self, "spacing", float(min(max(self.spacing, 0.01), 10.0)))

    @property
    def radius(self) -> float:
        return self.size / 2.0

    @property
    def step(self) -> float:
        """Distance in px between two dabs (at least half a pixel, so lines stay unbroken)."""
        return max(0.5, self.spacing * self.size)

    @property
    def extent(self) -> float:
        """Radius of the area a dab can touch (the hard edge's ramp reaches half a pixel out)."""
        return self.size / 2.0 + 0.5



def dab_rect(cx: float, cy: float, radius: float) -> Rect:
    """The integer pixel rectangle a dab centred at (cx, cy) can touch (unclipped)."""
    x0, y0 = math.floor(cx - radius), math.floor(cy - radius)
    x1, y1 = math.ceil(cx + radius), math.ceil(cy + radius)
    return Rect(x0, y0, x1 - x0, y1 - y0)


def dab_alpha(cx: float, cy: float, brush: Brush, rect: Rect) -> np.ndarray:
    """Coverage in [0, 1] (float32, rect.h x rect.w) of a dab centred at (cx, cy).

    Pixel (i, j) is sampled at its centre (j + 0.5, i + 0.5). Inside hardness * radius the
    alpha is 1; from there it falls to 0 at the radius with a smoothstep. When that band would
    be under a pixel, the edge is a one-pixel anti-aliased ramp instead.
    """
    xs = (np.arange(rect.x, rect.x + rect.w, dtype=np.float32) + np.float32(0.5 - cx)) ** 2
    ys = (np.arange(rect.y, rect.y + rect.h, dtype=np.float32) + np.float32(0.5 - cy)) ** 2
    dist = np.sqrt(ys[:, None] + xs[None, :])
    band = brush.radius * (1.0 - brush.hardness)
    if band < 1.0:  # hard: a one-pixel ramp centred on the radius, so the area stays pi * r^2
        return np.clip(np.float32(brush.radius + 0.5) - dist, 0.0, 1.0)
    t = np.clip((np.float32(brush.radius) - dist) / np.float32(band), 0.0, 1.0)
    # smoothstep reads as a round airbrush rather than a cone
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def stroke_positions(start: tuple[float, float], end: tuple[float, float], step: float,
                     carried: float) -> tuple[list[tuple[float, float]], float]:
    """Dab centres on the segment start->end, every `step` px, the first one `step - carried`
    px after start (carried = distance travelled since the last dab). Returns the centres and
    the new carried distance."""
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0.0:
        return [], carried
    positions = []
    d = step - carried
    while d <= length:
        t = d / length
        positions.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
        d += step
    return positions, length - (d - step)


class DabStroke:
    """One brush or eraser stroke on a 2-D uint8 array, painted in place.

    `touch(rect)` is called with each rectangle right before its pixels change (hand it
    `StrokeRecorder.touch` so undo can restore them). `begin`/`extend` return the dirty
    rectangle to repaint, or an empty Rect when nothing changed.
    """

    def __init__(self, target: np.ndarray, brush: Brush, mode: Literal["paint", "erase"] = "paint",
                 touch: Callable[[Rect], None] | None = None):
        if target.ndim != 2 or target.dtype != np.uint8:
            raise PaintError(f"The brush paints on 8-bit masks, not on a {target.dtype} array of shape "
                             f"{target.shape}.")
        if mode not in ("paint", "erase"):
            raise PaintError(f"Unknown brush mode {mode!r}; expected 'paint' or 'erase'.")
        self.target = target
        self.brush = brush
        self.mode = mode
        self._touch = touch
        self._goal = np.float32(255.0 if mode == "paint" else 0.0)
        # np.zeros / np.empty of a large array map untouched pages lazily, so a stroke over a
        # small area of a huge mask only ever materialises the pages it paints on.
        self._coverage = np.zeros(target.shape, np.uint8)
        self._before = np.empty(target.shape, np.uint8)
        self._last: tuple[float, float] | None = None
        self._carried = 0.0
        self.bounds = Rect(0, 0, 0, 0)  # everything this stroke touched so far

    def begin(self, x: float, y: float) -> Rect:
        self._last = (x, y)
        self._carried = 0.0
        return self._paint([(x, y)])

    def extend(self, x: float, y: float) -> Rect:
        if self._last is None:
            return self.begin(x, y)
        positions, self._carried = stroke_positions(self._last, (x, y), self.brush.step, self._carried)
        self._last = (x, y)
        return self._paint(positions)

    def _paint(self, positions: list[tuple[float, float]]) -> Rect:
        h, w = self.target.shape
        rects = [dab_rect(x, y, self.brush.extent).clip(w, h) for x, y in positions]
        dirty = Rect(0, 0, 0, 0)
        for rect in rects:
            dirty = dirty.union(rect)
        if dirty.empty:
            return dirty
        if self._touch is not None:
            self._touch(dirty)
        sl = dirty.slices
        coverage = self._coverage[sl]
        before = self._before[sl]
        target = self.target[sl]
        fresh = coverage == 0  # untouched by this stroke: the target still holds the old value
        before[fresh] = target[fresh]
        for (x, y), rect in zip(positions, rects):
            if not rect.empty:
                dab = self._coverage[rect.slices]
                alpha = dab_alpha(x, y, self.brush, rect)
                np.maximum(dab, (alpha * np.float32(255.0) + np.float32(0.5)).astype(np.uint8), out=dab)
        # One blend over the dirty rectangle for all of this event's dabs.
        b = before.astype(np.float32)
        amount = coverage.astype(np.float32) * np.float32(self.brush.opacity / 255.0)
        target[...] = (b + (self._goal - b) * amount + np.float32(0.5)).astype(np.uint8)
        self.bounds = self.bounds.union(dirty)
        return dirty


# -- whole-mask operations -------------------------------------------------------------------

def mask_attribute(layer: Layer) -> str:
    """The array attribute the brush paints on for this layer kind."""
    if isinstance(layer, MaskLayer):
        return "pixels"
    if isinstance(layer, RegionLayer):
        return "mask"
    raise PaintError(f"Layer {layer.name!r} is a {layer.kind} layer; masks are painted on mask and region "
                     "layers only.")


def current_mask(layer: Layer, width: int, height: int) -> np.ndarray:
    """The layer's mask as an HxW uint8 array (a rectangle region rendered to a mask)."""
    attr = mask_attribute(layer)
    value = getattr(layer, attr)
    if value is None:
        assert isinstance(layer, RegionLayer)
        return region_rect_mask(layer, width, height)
    return value


def region_rect_mask(layer: RegionLayer, width: int, height: int) -> np.ndarray:
    """A rectangle region as an HxW uint8 mask (255 inside), the start of a painted region."""
    mask = np.zeros((height, width), np.uint8)
    r = Rect(*layer.rect).clip(width, height)
    if not r.empty:
        mask[r.slices] = 255
    return mask


def fill_mask(layer: Layer, width: int, height: int) -> ReplacePixels:
    """Command: the whole mask set to 255."""
    return ReplacePixels(layer, mask_attribute(layer), np.full((height, width), 255, np.uint8), "Fill mask")


def clear_mask(layer: Layer, width: int, height: int) -> ReplacePixels:
    """Command: the whole mask set to 0."""
    return ReplacePixels(layer, mask_attribute(layer), np.zeros((height, width), np.uint8), "Clear mask")


def invert_mask(layer: Layer, width: int, height: int) -> ReplacePixels:
    """Command: every mask value v becomes 255 - v (a rectangle region becomes a painted one)."""
    inverted = np.subtract(255, current_mask(layer, width, height), dtype=np.uint8)
    return ReplacePixels(layer, mask_attribute(layer), inverted, "Invert mask")


# -- sampling --------------------------------------------------------------------------------

def sample_color(layers: list[Layer], x: float, y: float) -> tuple[int, int, int]:
    """The flattened RGB colour at document point (x, y): visible, non-reference image layers
    from bottom to top, nearest pixel, over white (the empty canvas is white in compose too)."""
    rgb = np.array([255.0, 255.0, 255.0])
    for layer in layers:
        if not isinstance(layer, ImageLayer) or not layer.visible or layer.reference:
            continue
        w, h = layer.size
        if w == 0 or h == 0 or layer.scale == 0:
            continue
        u, v, _ = np.linalg.solve(layer.matrix(), np.array([x, y, 1.0]))
        col, row = math.floor(u), math.floor(v)
        if not (0 <= col < w and 0 <= row < h):
            continue
        px = layer.pixels[row, col].astype(np.float64)
        a = px[3] / 255.0 * layer.opacity
        rgb = px[:3] * a + rgb * (1.0 - a)
    r, g, b = (int(c + 0.5) for c in rgb)
    return r, g, b
