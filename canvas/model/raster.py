"""Rasterisation helpers of the document model: brush dabs, pen strokes, affine layer warps.

numpy (and Pillow's affine resampler for layer warps). Conventions shared by everything here:
- pixel (col, row) covers the square [col, col+1) x [row, row+1); its centre is (col+0.5, row+0.5);
- coverage of a shape at a pixel is `clip(0.5 + signed distance of the centre inside the shape)`,
  a one-pixel anti-aliasing ramp that gives exactly 1 wherever the shape covers the whole pixel;
- 8-bit results round half up (`floor(x + 0.5)`), so 127.5 becomes 128 on every platform.

(Over 500 lines: pen strokes have two exact renderers — direct for thin strokes, outline tiles for
wide overlapping ones — and the work estimate readers use to refuse crafted strokes; they share
their segment clipping and splitting, so they stay together.)
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np

from canvas.model.layers import Rect

_HEX_COLOR = re.compile(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_CHUNK_CELLS = 1 << 22  # segment x pixel distance evaluations per numpy batch when rendering strokes


def parse_color(text: str) -> tuple[int, int, int]:
    """'#rrggbb' or '#rgb' -> (r, g, b); ValueError with one sentence otherwise."""
    if not isinstance(text, str) or not _HEX_COLOR.fullmatch(text):
        raise ValueError(f"{text!r} is not a colour of the form #rrggbb.")
    digits = text[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half up and clip to 0..255."""
    return np.clip(np.floor(values + np.float32(0.5)), 0, 255).astype(np.uint8)


# ---- brush dabs (mask and region painting) ----------------------------------------------------


def dab_rect(cx: float, cy: float, radius: float) -> Rect:
    """The pixels a round dab centred at (cx, cy) may change; pass it to StrokeRecorder.touch."""
    reach = max(float(radius), 0.0) + 0.5
    x0, y0 = math.floor(cx - reach), math.floor(cy - reach)
    x1, y1 = math.ceil(cx + reach), math.ceil(cy + reach)
    return Rect(x0, y0, x1 - x0, y1 - y0)


def paint_dab(array: np.ndarray, cx: float, cy: float, radius: float, value: int = 255,
              *, erase: bool = False) -> Rect:
    """Stamp an anti-aliased round dab into an HxW uint8 array, in place.

    Painting raises pixels towards `value` (never lowers them, so overlapping dabs of one stroke
    do not build up seams); erasing lowers them towards 0. Returns the clipped rectangle it touched.
    """
    h, w = array.shape[:2]
    rect = dab_rect(cx, cy, radius).clip(w, h)
    if rect.empty:
        return rect
    rows = np.arange(rect.y, rect.y + rect.h, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
    cols = np.arange(rect.x, rect.x + rect.w, dtype=np.float32)[None, :] + np.float32(0.5 - cx)
    coverage = np.clip(np.float32(radius + 0.5) - np.sqrt(rows * rows + cols * cols), 0, 1)
    target = array[rect.slices]
    if erase:
        lowered = to_uint8(target * (1 - coverage * np.float32(value / 255)))
        np.minimum(target, lowered, out=target)
    else:
        raised = to_uint8(coverage * np.float32(value))
        np.maximum(target, raised, out=target)
    return rect


# ---- pen strokes (scribble layers) ------------------------------------------------------------


def stroke_bounds(points: Sequence[tuple[float, float]], width: float) -> Rect:
    """Pixels a stroke's anti-aliased coverage may reach (unclipped)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return Rect(0, 0, 0, 0)
    reach = max(float(width), 0.0) / 2 + 1.0
    x0, y0 = math.floor(pts[:, 0].min() - reach), math.floor(pts[:, 1].min() - reach)
    x1, y1 = math.ceil(pts[:, 0].max() + reach), math.ceil(pts[:, 1].max() + reach)
    return Rect(x0, y0, x1 - x0, y1 - y0)


def stroke_coverage(points: Sequence[tuple[float, float]], width: float,
                    canvas_width: int, canvas_height: int) -> tuple[Rect, np.ndarray]:
    """Coverage in [0, 1] of a round-cap, round-join polyline of the given width.

    Returns (rect, coverage) with `coverage` an h x w float32 array for the clipped `rect`;
    a single point is a dot. Overlaps within one stroke do not accumulate (union, not sum).

    Coverage is clip(radius + 0.5 - d) with d the distance of a pixel centre to the nearest
    segment, so only a one-pixel band along the outline needs distances at all. The rect is split
    into tiles recursively (`_cover_tile`): a tile whose every pixel is surely inside is filled
    with 1, one surely outside is left 0, and a tile on the outline keeps only the segments that
    can be nearest to one of its pixels. The cost follows the outline's length instead of
    points x area, so a wide stroke going back and forth over the same place is cheap (a crafted
    200 000-point, 10 000 px wide stroke used to take an hour), and no numpy temporary exceeds
    _CHUNK_CELLS elements. The values are the ones the direct per-pixel minimum gives.
    """
    rect = stroke_bounds(points, width).clip(canvas_width, canvas_height)
    if rect.empty:
        return rect, np.zeros((0, 0), np.float32)
    radius = max(float(width), 0.0) / 2
    starts, ends = _pieces(np.asarray(points, dtype=np.float64).reshape(-1, 2), radius, rect)
    work = _work_of(starts, ends, radius, rect)
    # Boxes that overlap little (thin pen strokes): the direct method is ~4x faster than tiles.
    if work <= DIRECT_WORK or (work <= 5 * DIRECT_WORK and work <= 8 * rect.w * rect.h):
        return rect, _direct_coverage(rect, starts, ends, radius)
    coverage = np.zeros((rect.h, rect.w), np.float32)
    segments = _Segments(starts, ends)
    pending = [(rect, np.arange(len(starts)))]
    while pending:  # an explicit stack: tiles split until they are decided or small
        tile, candidates = pending.pop()
        pending.extend(_cover_tile(coverage, rect, tile, segments, candidates, radius))
    return rect, coverage


def _direct_coverage(rect: Rect, starts: np.ndarray, ends: np.ndarray, radius: float) -> np.ndarray:
    """Coverage by evaluating the pixels of each batch of segments' box that are not yet 1: fastest
    for strokes whose boxes overlap little (most pen strokes); its cost is about their work."""
    coverage = np.zeros((rect.h, rect.w), np.float32)
    reach = radius + 1.0
    x0s = np.floor(np.minimum(starts[:, 0], ends[:, 0]) - reach).tolist()
    y0s = np.floor(np.minimum(starts[:, 1], ends[:, 1]) - reach).tolist()
    x1s = np.ceil(np.maximum(starts[:, 0], ends[:, 0]) + reach).tolist()
    y1s = np.ceil(np.maximum(starts[:, 1], ends[:, 1]) + reach).tolist()
    n, i = len(starts), 0
    open_pixels = rect.w * rect.h  # pixels whose coverage is still below 1
    while i < n and open_pixels > 0:
        # Batch consecutive segments into one numpy pass while the batch's joint box costs at
        # most a few times what the segments' own boxes would: few calls, little wasted work.
        bx0, by0, bx1, by1 = x0s[i], y0s[i], x1s[i], y1s[i]
        own = (bx1 - bx0) * (by1 - by0)
        j = i + 1
        while j < n:
            nx0, ny0 = min(bx0, x0s[j]), min(by0, y0s[j])
            nx1, ny1 = max(bx1, x1s[j]), max(by1, y1s[j])
            cost = (nx1 - nx0) * (ny1 - ny0) * (j + 1 - i)
            seg_own = (x1s[j] - x0s[j]) * (y1s[j] - y0s[j])
            if cost > _CHUNK_CELLS or cost > max(4 * (own + seg_own), 4096):
                break
            bx0, by0, bx1, by1, own, j = nx0, ny0, nx1, ny1, own + seg_own, j + 1
        box = Rect(int(bx0), int(by0), int(bx1 - bx0), int(by1 - by0)).intersect(rect)
        if not box.empty:
            open_pixels -= _stamp_segments(coverage, rect, box, starts[i:j], ends[i:j], radius)
        i = j
    return coverage


def _stamp_segments(coverage: np.ndarray, rect: Rect, box: Rect, a: np.ndarray, b: np.ndarray,
                    radius: float) -> int:
    """Raise the coverage of `box` to the segments' stamp; returns how many pixels became 1."""
    view = coverage[box.y - rect.y:box.y - rect.y + box.h, box.x - rect.x:box.x - rect.x + box.w]
    ax, ay = a[:, 0][:, None], a[:, 1][:, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None], (b[:, 1] - a[:, 1])[:, None]
    length2 = dx * dx + dy * dy
    has_length = length2 > 0
    divisor = np.where(has_length, length2, 1.0)
    rows_per_band = max(1, _CHUNK_CELLS // max(box.w, 1))
    pixels_per_chunk = max(1, _CHUNK_CELLS // len(a))
    completed = 0
    for band_top in range(0, box.h, rows_per_band):
        band = view[band_top:band_top + rows_per_band]
        rows, cols = np.nonzero(band < 1.0)  # a fully covered pixel cannot change
        for lo in range(0, len(rows), pixels_per_chunk):
            r, c = rows[lo:lo + pixels_per_chunk], cols[lo:lo + pixels_per_chunk]
            px = (c + (box.x + 0.5))[None, :].astype(np.float64)
            py = (r + (box.y + band_top + 0.5))[None, :].astype(np.float64)
            t = np.clip(np.where(has_length, ((px - ax) * dx + (py - ay) * dy) / divisor, 0.0), 0.0, 1.0)
            ex, ey = px - (ax + t * dx), py - (ay + t * dy)
            distance = np.sqrt(ex * ex + ey * ey).min(axis=0)
            stamp = np.clip(radius + 0.5 - distance, 0.0, 1.0).astype(np.float32)
            raised = np.maximum(band[r, c], stamp)
            band[r, c] = raised
            completed += int(np.count_nonzero(raised >= 1.0))
    return completed


class _Segments:
    """Segment endpoints and directions as column arrays, for distances to many points at once."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray):
        self.ax, self.ay = starts[:, 0], starts[:, 1]
        self.dx, self.dy = ends[:, 0] - starts[:, 0], ends[:, 1] - starts[:, 1]
        length2 = self.dx * self.dx + self.dy * self.dy
        self.has_length = length2 > 0
        self.divisor = np.where(self.has_length, length2, 1.0)

    def distances(self, index: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """len(index) x len(px) distances from the points to the segments `index`."""
        ax, ay = self.ax[index][:, None], self.ay[index][:, None]
        dx, dy = self.dx[index][:, None], self.dy[index][:, None]
        t = np.where(self.has_length[index][:, None], ((px - ax) * dx + (py - ay) * dy) / self.divisor[index][:, None],
                     0.0)
        t = np.clip(t, 0.0, 1.0)
        ex, ey = px - (ax + t * dx), py - (ay + t * dy)
        return np.sqrt(ex * ex + ey * ey)


_LEAF_CELLS = 1 << 14  # candidate segments x tile pixels below which a tile is computed directly
_SURE = 1e-6  # px of margin on every shortcut, so float rounding never decides a pixel


def _cover_tile(coverage: np.ndarray, rect: Rect, tile: Rect, segments: _Segments, candidates: np.ndarray,
                radius: float) -> list[tuple[Rect, np.ndarray]]:
    """Decide `tile` (inside 1, outside 0, or computed), or return its quarters to decide with the
    segments that may still matter there."""
    # Every pixel centre of the tile lies within `spread` of the tile's centre, so a segment's
    # distance to any pixel differs from its distance to the centre by at most `spread`.
    cx, cy = tile.x + tile.w / 2, tile.y + tile.h / 2
    spread = math.hypot((tile.w - 1) / 2, (tile.h - 1) / 2)
    at_centre = np.concatenate([segments.distances(candidates[i:i + _CHUNK_CELLS], np.array([cx]), np.array([cy]))[:, 0]
                                for i in range(0, len(candidates), _CHUNK_CELLS)])
    nearest = float(at_centre.min())
    view = coverage[tile.y - rect.y:tile.y - rect.y + tile.h, tile.x - rect.x:tile.x - rect.x + tile.w]
    if nearest + spread <= radius - 0.5 - _SURE:
        view[...] = 1.0  # every pixel is at least a half pixel inside the outline
        return []
    if nearest - spread >= radius + 0.5 + _SURE:
        return []  # every pixel is at least a half pixel outside: coverage 0
    # A segment can be nearest to some pixel only if it is within 2 * spread of the nearest one at
    # the centre; one further than radius + 0.5 from every pixel adds 0 wherever it is nearest.
    keep = candidates[at_centre - spread <= min(nearest + spread, radius + 0.5) + _SURE]
    if len(keep) * tile.w * tile.h <= _LEAF_CELLS or tile.w * tile.h <= 4:
        _compute_tile(view, tile, segments, keep, radius)
        return []
    if tile.w >= tile.h:
        half = tile.w // 2
        parts = (Rect(tile.x, tile.y, half, tile.h), Rect(tile.x + half, tile.y, tile.w - half, tile.h))
    else:
        half = tile.h // 2
        parts = (Rect(tile.x, tile.y, tile.w, half), Rect(tile.x, tile.y + half, tile.w, tile.h - half))
    return [(part, keep) for part in parts]


def _compute_tile(view: np.ndarray, tile: Rect, segments: _Segments, keep: np.ndarray, radius: float) -> None:
    """The exact coverage of every pixel of the tile: the nearest of the kept segments."""
    cols = np.arange(tile.x, tile.x + tile.w, dtype=np.float64) + 0.5
    rows = np.arange(tile.y, tile.y + tile.h, dtype=np.float64) + 0.5
    px = np.tile(cols, tile.h)[None, :]
    py = np.repeat(rows, tile.w)[None, :]
    nearest = np.full(px.shape[1], np.inf)
    step = max(1, _CHUNK_CELLS // px.shape[1])
    for i in range(0, len(keep), step):
        np.minimum(nearest, segments.distances(keep[i:i + step], px, py).min(axis=0), out=nearest)
    view[...] = np.clip(radius + 0.5 - nearest, 0.0, 1.0).astype(np.float32).reshape(tile.h, tile.w)


MAX_STROKE_WORK = 2_000_000_000  # pixel x segment-piece evaluations of one document's strokes
DIRECT_WORK = 20_000_000  # up to this much work the direct method is faster than the tiles


def stroke_work(points: Sequence[tuple[float, float]], width: float, canvas_width: int,
                canvas_height: int) -> float:
    """An upper bound of the pixel evaluations `stroke_coverage` may make for this stroke: the sum
    of its pieces' boxes within the canvas. Cheap (no piece is made), so a reader can refuse a
    crafted stroke before rendering it; pruning usually makes the real work far smaller."""
    rect = stroke_bounds(points, width).clip(canvas_width, canvas_height)
    if rect.empty:
        return 0.0
    radius = max(float(width), 0.0) / 2
    starts, ends = _segments_near(np.asarray(points, dtype=np.float64).reshape(-1, 2), radius, rect)
    return _work_of(starts, ends, radius, rect)


def _work_of(starts: np.ndarray, ends: np.ndarray, radius: float, rect: Rect) -> float:
    counts, _ = _piece_counts(starts, ends, radius)
    side = 2 * (radius + 1.0) + 2
    piece_w = np.minimum(np.abs(ends[:, 0] - starts[:, 0]) / counts + side, rect.w)
    piece_h = np.minimum(np.abs(ends[:, 1] - starts[:, 1]) / counts + side, rect.h)
    return float(np.sum(counts * piece_w * piece_h))


def _segments_near(pts: np.ndarray, radius: float, rect: Rect) -> tuple[np.ndarray, np.ndarray]:
    """The polyline's segments without repeated points, each clipped to `rect` grown by the stroke's
    reach (no pixel of `rect` is nearer than that to the parts cut off, so coverage is unchanged)."""
    if len(pts) > 1:
        keep = np.ones(len(pts), bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[keep]
    if len(pts) == 1:
        return pts, pts
    a, b = pts[:-1], pts[1:]
    reach = radius + 1.0
    low = np.array([rect.x - reach, rect.y - reach])
    high = np.array([rect.x + rect.w + reach, rect.y + rect.h + reach])
    d = b - a
    t0, t1 = np.zeros(len(a)), np.ones(len(a))
    with np.errstate(divide="ignore", invalid="ignore"):  # Liang-Barsky, both axes at once
        for axis in (0, 1):
            da = d[:, axis]
            ta = (low[axis] - a[:, axis]) / da
            tb = (high[axis] - a[:, axis]) / da
            enter, leave = np.minimum(ta, tb), np.maximum(ta, tb)
            parallel = da == 0
            outside = parallel & ((a[:, axis] < low[axis]) | (a[:, axis] > high[axis]))
            t0 = np.where(parallel, t0, np.maximum(t0, enter))
            t1 = np.where(parallel, t1, np.minimum(t1, leave))
            t1 = np.where(outside, -1.0, t1)
    near = t0 <= t1
    if not near.any():
        return a[:1], a[:1]  # nothing reaches the rect: one point, which stamps nothing there
    a, d, t0, t1 = a[near], d[near], t0[near], t1[near]
    starts = np.where((t0 == 0)[:, None], a, a + d * t0[:, None])
    ends = np.where((t1 == 1)[:, None], b[near], a + d * t1[:, None])
    return starts, ends


def _piece_counts(starts: np.ndarray, ends: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.hypot(*(ends - starts).T)
    piece = max(4.0 * (radius + 1.0), 64.0)
    return np.maximum(np.ceil(lengths / piece), 1).astype(np.int64), lengths


def _pieces(pts: np.ndarray, radius: float, rect: Rect) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the stroke's segments near `rect` (see _segments_near), each longer than a
    few widths cut into equal pieces: the pieces' capsules make the segment's capsule, and their
    boxes together are far smaller than its box when it runs diagonally."""
    starts, ends = _segments_near(pts, radius, rect)
    if len(starts) == 1 and np.array_equal(starts, ends):
        return starts, ends
    counts, _ = _piece_counts(starts, ends, radius)
    if counts.max() <= 1:
        return starts, ends
    segment = np.repeat(np.arange(len(starts)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = (np.arange(len(segment)) - first)[:, None]
    total = counts[segment][:, None]
    a, delta = starts[segment], (ends - starts)[segment]
    piece_starts = np.where(k == 0, a, a + delta * (k / total))
    piece_ends = np.where(k + 1 == total, ends[segment], a + delta * ((k + 1) / total))
    return piece_starts, piece_ends


class StrokeCanvas:
    """Premultiplied float accumulators that pen strokes are composited into, in order.

    The canvas covers `rect` of the document only (usually the strokes' joint bounds), so a few
    strokes on a large document do not allocate float planes of the whole document.
    """

    def __init__(self, rect: Rect):
        self.rect = rect
        self.premultiplied = np.zeros((rect.h, rect.w, 3), np.float32)
        self.alpha = np.zeros((rect.h, rect.w), np.float32)
        self.area = np.zeros((rect.h, rect.w), np.float32)

    def draw(self, points: Sequence[tuple[float, float]], color: str, width: float, opacity: float = 1.0) -> None:
        rgb = np.asarray(parse_color(color), np.float32)
        local = np.asarray(points, dtype=np.float64).reshape(-1, 2) - (self.rect.x, self.rect.y)
        rect, coverage = stroke_coverage(local, width, self.rect.w, self.rect.h)
        if rect.empty:
            return
        src_alpha = coverage * np.float32(opacity)
        keep = 1 - src_alpha
        rows, cols = rect.slices
        self.premultiplied[rows, cols] = src_alpha[..., None] * rgb + self.premultiplied[rows, cols] * keep[..., None]
        self.alpha[rows, cols] = src_alpha + self.alpha[rows, cols] * keep
        np.maximum(self.area[rows, cols], coverage, out=self.area[rows, cols])

    def rgba(self) -> np.ndarray:
        """Straight-alpha h x w x 4 uint8 of the canvas rect."""
        out = np.zeros((self.rect.h, self.rect.w, 4), np.uint8)
        covered = self.alpha > 0
        out[..., 3] = to_uint8(self.alpha * 255)
        out[covered, :3] = to_uint8(self.premultiplied[covered] / self.alpha[covered][:, None])
        return out


def strokes_bounds(strokes: Iterable, width: int, height: int) -> Rect:
    """Joint bounds of `Stroke`s, clipped to a width x height document."""
    box = Rect(0, 0, 0, 0)
    for stroke in strokes:
        box = box.union(stroke_bounds(stroke.points, stroke.width).clip(width, height))
    return box


def render_strokes(strokes: Iterable, width: int, height: int,
                   opacity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx4 uint8 straight-alpha raster, HxW float32 stroke area) of `Stroke`s drawn in order
    on a width x height document."""
    strokes = list(strokes)
    image = np.zeros((height, width, 4), np.uint8)
    area = np.zeros((height, width), np.float32)
    box = strokes_bounds(strokes, width, height)
    if box.empty:
        return image, area
    canvas = StrokeCanvas(box)
    for stroke in strokes:
        canvas.draw(stroke.points, stroke.color, stroke.width, opacity)
    image[box.slices] = canvas.rgba()
    area[box.slices] = canvas.area
    return image, area


# ---- affine warps (image layers) --------------------------------------------------------------


def exact_matrix(x: float, y: float, scale: float, rotation: float) -> np.ndarray:
    """ImageLayer.matrix() with exact 0/±1 sines and cosines at multiples of 90 degrees, so a
    quarter turn maps pixel centres onto pixel centres instead of 1e-16 beside them."""
    turn = float(rotation) % 360.0
    quarter = {0.0: (1.0, 0.0), 90.0: (0.0, 1.0), 180.0: (-1.0, 0.0), 270.0: (0.0, -1.0)}
    if turn in quarter:
        c, s = quarter[turn]
    else:
        a = math.radians(turn)
        c, s = math.cos(a), math.sin(a)
    c, s = c * scale, s * scale
    return np.array([[c, -s, float(x)], [s, c, float(y)], [0.0, 0.0, 1.0]])


def integer_offset(matrix: np.ndarray) -> tuple[int, int] | None:
    """(dx, dy) when the matrix is a pure whole-pixel translation, else None."""
    if matrix[0, 0] == 1 and matrix[1, 1] == 1 and matrix[0, 1] == 0 and matrix[1, 0] == 0:
        dx, dy = matrix[0, 2], matrix[1, 2]
        if float(dx).is_integer() and float(dy).is_integer():
            return int(dx), int(dy)
    return None


def footprint(matrix: np.ndarray, width: int, height: int) -> Rect:
    """Integer document rectangle that may receive pixels of a width x height layer."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], float).T
    pts = matrix @ corners
    x0, y0 = math.floor(pts[0].min()), math.floor(pts[1].min())
    x1, y1 = math.ceil(pts[0].max()), math.ceil(pts[1].max())
    return Rect(x0, y0, x1 - x0, y1 - y0)


def warp_rgba(pixels: np.ndarray, matrix: np.ndarray, region: Rect,
              opacity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Render `region` of the document from an RGBA layer placed by `matrix` (layer -> document).

    Returns (premultiplied rgb h x w x 3 float32 in 0..255, alpha h x w float32 in 0..1).
    A whole-pixel translation copies pixels exactly; anything else samples bilinearly (clamped
    to the layer's edge pixels) and anti-aliases the layer's outline by the distance of each
    pixel centre to it, so a layer scaled by an integer still has fully opaque edge pixels.

    Cost follows the pixels the layer covers: each row's covered span is found from the outline,
    pixels whose centre lies 0.5 px or more inside it (coverage 1) are sampled by Pillow's affine
    resampler on float32 planes of the premultiplied layer (C code, the same bilinear formula to
    float rounding, ~5x faster than gathering taps in numpy), and only the anti-aliased fringe
    along the outline is evaluated here. Work goes in row chunks, so temporaries stay small.
    """
    h, w = region.h, region.w
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    ph, pw = pixels.shape[:2]
    if region.empty or ph == 0 or pw == 0:
        return rgb, alpha
    offset = integer_offset(matrix)
    if offset is not None:
        _copy_translated(pixels, offset, region, opacity, rgb, alpha)
        return rgb, alpha
    try:
        inverse = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:  # zero scale: the layer has no area
        return rgb, alpha
    pixels = np.ascontiguousarray(pixels)
    rows = max(1, _WARP_CHUNK_PIXELS // w)
    for top in range(0, h, rows):
        part = Rect(region.x, region.y + top, w, min(rows, h - top))
        _warp_part(pixels, inverse, part, float(opacity), rgb[top:top + part.h], alpha[top:top + part.h])
    return rgb, alpha


_WARP_CHUNK_PIXELS = 1 << 18  # destination pixels per chunk of an affine warp
_SPAN_MARGIN = 1  # columns given to the exact fringe evaluation on each side of a span found from the outline


def _warp_part(pixels: np.ndarray, inverse: np.ndarray, region: Rect, opacity: float, rgb: np.ndarray,
               alpha: np.ndarray) -> None:
    ph, pw = pixels.shape[:2]
    h, w = region.h, region.w
    grad_u = math.hypot(inverse[0, 0], inverse[0, 1]) or 1.0
    grad_v = math.hypot(inverse[1, 0], inverse[1, 1]) or 1.0
    # Signed distance (document px) of a pixel centre to each edge, along a row: slope * column + base.
    centre_y = np.arange(region.y, region.y + h, dtype=np.float64) + 0.5
    u0 = inverse[0, 0] * (region.x + 0.5) + inverse[0, 1] * centre_y + inverse[0, 2]
    v0 = inverse[1, 0] * (region.x + 0.5) + inverse[1, 1] * centre_y + inverse[1, 2]
    edges = [(inverse[0, 0] / grad_u, u0 / grad_u), (-inverse[0, 0] / grad_u, (pw - u0) / grad_u),
             (inverse[1, 0] / grad_v, v0 / grad_v), (-inverse[1, 0] / grad_v, (ph - v0) / grad_v)]
    any_lo, any_hi = _span(edges, -0.5, w, -_SPAN_MARGIN)  # coverage may be > 0 (grown by the margin)
    full_lo, full_hi = _span(edges, 0.5, w, _SPAN_MARGIN)  # coverage surely 1 (shrunk by the margin)
    empty = full_hi <= full_lo
    full_lo = np.where(empty, any_lo, np.clip(full_lo, any_lo, any_hi))
    full_hi = np.where(empty, any_lo, np.clip(full_hi, full_lo, any_hi))
    if not empty.all() and _resample_interior(pixels, inverse, region, full_lo, full_hi, opacity, rgb, alpha):
        fringe = [(any_lo, full_lo), (full_hi, any_hi)]
    else:  # no interior, or one Pillow would need too large a crop of the layer for: all exactly
        fringe = [(any_lo, any_hi)]
    for starts, stops in fringe:
        ys, xs = _spans_to_pixels(starts, stops)
        if ys.size:
            sample, factor = _sample_exact(pixels, inverse, region.x + xs + 0.5, region.y + ys + 0.5, opacity,
                                           grad_u, grad_v)
            rgb[ys, xs] = sample[:, :3] * factor[:, None]
            alpha[ys, xs] = sample[:, 3] * factor


def _span(edges: list[tuple[float, np.ndarray]], threshold: float, width: int,
          shrink: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns [lo, hi) whose centres are at least `threshold` inside every edge, shrunk
    by `shrink` columns on each side (negative: grown), within 0..width."""
    lo = np.full(edges[0][1].shape, -1.0)
    hi = np.full(edges[0][1].shape, float(width + 1))
    for slope, base in edges:
        if slope > 0:
            lo = np.maximum(lo, (threshold - base) / slope)
        elif slope < 0:
            hi = np.minimum(hi, (threshold - base) / slope)
        else:
            lo = np.where(base >= threshold, lo, float(width + 1))
    lo = np.ceil(np.clip(lo, -1.0, width + 1.0)).astype(np.int64) + shrink
    hi = np.floor(np.clip(hi, -1.0, width + 1.0)).astype(np.int64) + 1 - shrink
    lo, hi = np.clip(lo, 0, width), np.clip(hi, 0, width)
    return lo, np.maximum(hi, lo)


def _spans_to_pixels(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every pixel in the per-row column spans [start, stop)."""
    counts = np.maximum(stops - starts, 0)
    total = int(counts.sum())
    rows = np.repeat(np.arange(starts.size), counts)
    if total == 0:
        return rows, rows
    first = np.cumsum(counts) - counts  # index of each row's first pixel
    cols = np.arange(total) - np.repeat(first - starts, counts)
    return rows, cols


def _resample_interior(pixels: np.ndarray, inverse: np.ndarray, region: Rect, lo: np.ndarray, hi: np.ndarray,
                       opacity: float, rgb: np.ndarray, alpha: np.ndarray) -> bool:
    """Sample the bounding box of the spans [lo, hi) with Pillow on float planes of the premultiplied
    layer; False (nothing written) when the part of the layer needed is too large to copy."""
    from PIL import Image

    ph, pw = pixels.shape[:2]
    rows = np.flatnonzero(hi > lo)
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(lo[rows].min()), int(hi[rows].max())
    box_x, box_y = region.x + c0, region.y + r0
    corners = np.array([[box_x, box_x + c1 - c0, box_x, box_x + c1 - c0],
                        [box_y, box_y, box_y + r1 - r0, box_y + r1 - r0], [1.0] * 4])
    uv = inverse[:2] @ corners
    # Every bilinear tap of the box lies in this crop (or is clamped to the layer's own edge).
    sx0, sy0 = max(0, math.floor(uv[0].min()) - 2), max(0, math.floor(uv[1].min()) - 2)
    sx1, sy1 = min(pw, math.ceil(uv[0].max()) + 2), min(ph, math.ceil(uv[1].max()) + 2)
    if sx1 <= sx0 or sy1 <= sy0:
        return False
    if (sx1 - sx0) * (sy1 - sy0) > 4 * (r1 - r0) * (c1 - c0) + (1 << 16):  # a layer shrunk a lot
        return False
    crop = pixels[sy0:sy1, sx0:sx1].astype(np.float32)
    crop[..., 3] /= np.float32(255)
    crop[..., :3] *= crop[..., 3:4]  # premultiplied exactly as _sample_exact does each tap
    # Pillow maps output pixel (i, j) through (i + 0.5, j + 0.5) to the crop, and samples bilinearly at
    # that point minus 0.5 with taps clamped to the crop: the convention used here.
    coefficients = (inverse[0, 0], inverse[0, 1], inverse[0, 0] * box_x + inverse[0, 1] * box_y + inverse[0, 2] - sx0,
                    inverse[1, 0], inverse[1, 1], inverse[1, 0] * box_x + inverse[1, 1] * box_y + inverse[1, 2] - sy0)
    size = (c1 - c0, r1 - r0)
    box = (slice(r0, r1), slice(c0, c1))
    for channel in range(4):
        plane = Image.fromarray(np.ascontiguousarray(crop[..., channel]), "F")
        sampled = np.asarray(plane.transform(size, Image.Transform.AFFINE, coefficients,
                                             resample=Image.Resampling.BILINEAR))
        target = alpha[box] if channel == 3 else rgb[box + (channel,)]
        if opacity != 1.0:
            np.multiply(sampled, np.float32(opacity), out=target)
        else:
            target[...] = sampled
    # Only the spans are the layer's interior: the rest of the box is the fringe (overwritten after
    # this) or outside the layer, where Pillow leaves zeros as well.
    return True


def _sample_exact(pixels: np.ndarray, inverse: np.ndarray, cx: np.ndarray, cy: np.ndarray, opacity: float,
                  grad_u: float, grad_v: float) -> tuple[np.ndarray, np.ndarray]:
    """(premultiplied RGBA samples n x 4, coverage x opacity n) at document points (cx, cy)."""
    ph, pw = pixels.shape[:2]
    u = inverse[0, 0] * cx + inverse[0, 1] * cy + inverse[0, 2]
    v = inverse[1, 0] * cx + inverse[1, 1] * cy + inverse[1, 2]
    # Distance to the outline in document pixels: layer-space distance / |gradient| of u or v.
    inside = np.minimum(np.minimum(u, pw - u) / grad_u, np.minimum(v, ph - v) / grad_v)
    coverage = np.clip(inside + 0.5, 0.0, 1.0).astype(np.float32)
    su, sv = u - 0.5, v - 0.5
    x0, y0 = np.floor(su), np.floor(sv)
    fx, fy = (su - x0).astype(np.float32)[:, None], (sv - y0).astype(np.float32)[:, None]
    x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.clip(x0i, 0, pw - 1), np.clip(x0i + 1, 0, pw - 1)
    ya, yb = np.clip(y0i, 0, ph - 1) * pw, np.clip(y0i + 1, 0, ph - 1) * pw
    # Gather whole RGBA pixels as one uint32 each (4x fewer index operations than per channel).
    packed = pixels.view(np.uint32).reshape(-1)
    # Premultiply each tap, then lerp (a + (b - a) * f): exact wherever neighbouring taps are equal,
    # so flat colours and opaque interiors stay exact at any scale or angle.
    taps = []
    for index in (ya + xa, ya + xb, yb + xa, yb + xb):
        tap = packed[index].view(np.uint8).reshape(-1, 4).astype(np.float32)
        tap[:, 3] /= np.float32(255)
        tap[:, :3] *= tap[:, 3:4]
        taps.append(tap)
    top = taps[1] - taps[0]
    top *= fx
    top += taps[0]
    bottom = taps[3] - taps[2]
    bottom *= fx
    bottom += taps[2]
    bottom -= top
    bottom *= fy
    bottom += top  # the sampled premultiplied RGBA
    factor = coverage * np.float32(opacity) if opacity != 1.0 else coverage
    return bottom, factor


def _copy_translated(pixels: np.ndarray, offset: tuple[int, int], region: Rect, opacity: float,
                     rgb: np.ndarray, alpha: np.ndarray) -> None:
    dx, dy = offset
    ph, pw = pixels.shape[:2]
    placed = Rect(dx, dy, pw, ph).intersect(region)
    if placed.empty:
        return
    src = pixels[placed.y - dy:placed.y - dy + placed.h, placed.x - dx:placed.x - dx + placed.w]
    a = src[..., 3].astype(np.float32) / np.float32(255)  # division: 255 / 255 is exactly 1
    if opacity != 1.0:
        a *= np.float32(opacity)
    dst = (slice(placed.y - region.y, placed.y - region.y + placed.h),
           slice(placed.x - region.x, placed.x - region.x + placed.w))
    alpha[dst] = a
    rgb[dst] = src[..., :3] * a[..., None]
