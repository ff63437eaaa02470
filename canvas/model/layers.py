"""The four layer kinds of SPEC §1 and groups, as plain data objects with an events group.

Groups are kept flat: every layer, a GroupLayer included, sits in Document.layers (bottom first)
and names the group it belongs to by id in `group` ("" = the document itself). A group's
members are composited in their list order into the group's own buffer, which is then blended
like one layer at the group's place (canvas.model.compose). Flat storage lets every command,
view and panel that walks Document.layers keep working when groups are added.

Layers hold numpy arrays and Python values only. Views subscribe to `layer.events` and repaint
the dirty rectangle they are told about; they never poll. Every change a user can undo goes
through a command (canvas.model.commands), which mutates the layer and emits the event.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from psygnal import Signal, SignalGroup


class Rect(NamedTuple):
    """An integer pixel rectangle: x, y of the top-left corner, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def empty(self) -> bool:
        return self.w <= 0 or self.h <= 0

    def union(self, other: Rect) -> Rect:
        if self.empty:
            return other
        if other.empty:
            return self
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def intersect(self, other: Rect) -> Rect:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.w, other.x + other.w)
        y1 = min(self.y + self.h, other.y + other.h)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def clip(self, width: int, height: int) -> Rect:
        return self.intersect(Rect(0, 0, width, height))

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices for indexing an HxW(xC) array."""
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)


BLEND_MODES: tuple[str, ...] = (
    "normal", "multiply", "screen", "overlay", "darken", "lighten", "color-dodge", "color-burn",
    "hard-light", "soft-light", "difference", "color", "luminosity", "hue", "saturation",
    "plus", "dst-in", "dst-out", "src-atop", "dst-atop",
)
"""Every OpenRaster composite-op, by the name after its "svg:" prefix ("normal" = svg:src-over)."""


# A layer name longer than this is cut when it is read or typed: a name of megabytes would make a
# project whose layer list no program (this one included) opens again. Photoshop allows 255.
MAX_NAME_CHARS = 1024


class LayerEvents(SignalGroup):
    changed = Signal(str)  # name of the property that changed
    pixels_changed = Signal(object)  # Rect in the layer's own pixel coordinates
    strokes_changed = Signal()


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(eq=False)
class Layer:
    """Common properties. Identity (not value) equality, so layers can key dicts and signals."""

    kind: ClassVar[str] = "layer"
    name: str = "Layer"
    visible: bool = True
    opacity: float = 1.0
    locked: bool = False
    blend: str = "normal"  # one of BLEND_MODES
    group: str = ""  # id of the GroupLayer this layer belongs to; "" = top level
    # Attributes other programs wrote on the layer's stack.xml element, written back unchanged.
    foreign: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)
    events: LayerEvents = field(default_factory=LayerEvents, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Not a field: how many times the pixels changed, so a saver can tell pixels it already
        # copied or encoded. Every change goes through `pixels_touched`.
        self.revision = 0

    def pixels_touched(self, rect: Rect) -> None:
        """The pixels changed in `rect` (layer coordinates): counted, and pixels_changed emitted."""
        self.revision += 1
        self.events.pixels_changed.emit(rect)

    def state(self) -> dict[str, Any]:
        """Every field's value (arrays included), for comparisons and serialisation."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "events"}

    def same_as(self, other: Layer) -> bool:
        """Value equality of every field, arrays compared exactly."""
        if type(self) is not type(other):
            return False
        a, b = self.state(), other.state()
        return all(_values_equal(a[k], b[k]) for k in a)


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _empty_rgba() -> np.ndarray:
    return np.zeros((1, 1, 4), np.uint8)


@dataclass(eq=False)
class ImageLayer(Layer):
    """RGBA pixels placed on the document by a transform.

    A layer pixel (u, v) lands at document point (x, y) + R(rotation) · scale · (u, v): the
    transform's origin is the layer's top-left corner; tools that rotate about the centre
    adjust x, y. `collage` marks a pasted piece (refine builds its strength map from these);
    `reference` marks an input image for instruction-edit models (not part of the flattened canvas);
    `generation` is the parameters record of the generation that made it (None for other pixels).
    """

    kind: ClassVar[str] = "image"
    name: str = "Image"
    pixels: np.ndarray = field(default_factory=_empty_rgba)  # HxWx4 uint8, straight alpha
    x: float = 0.0
    y: float = 0.0
    scale: float = 1.0
    rotation: float = 0.0  # degrees, clockwise on screen (y down)
    collage: bool = False
    reference: bool = False
    # The record of the generation that made this layer (an accepted result): what Export PNG writes.
    generation: dict[str, Any] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def matrix(self) -> np.ndarray:
        """3x3 affine from layer pixel coordinates to document coordinates."""
        a = math.radians(self.rotation)
        c, s = math.cos(a) * self.scale, math.sin(a) * self.scale
        return np.array([[c, -s, self.x], [s, c, self.y], [0.0, 0.0, 1.0]])

    def bounds(self) -> tuple[float, float, float, float]:
        """Axis-aligned document-space bounds (x0, y0, x1, y1) of the transformed layer."""
        w, h = self.size
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float).T
        pts = self.matrix() @ corners
        return float(pts[0].min()), float(pts[1].min()), float(pts[0].max()), float(pts[1].max())


@dataclass(eq=False)
class MaskLayer(Layer):
    """An 8-bit inpaint mask at document size; 255 = regenerate."""

    kind: ClassVar[str] = "mask"
    name: str = "Mask"
    pixels: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.uint8))  # HxW uint8


@dataclass(frozen=True)
class LoraRef:
    name: str
    weight: float = 1.0


@dataclass(eq=False)
class RegionLayer(Layer):
    """A regional prompt over a rectangle, or over a painted mask when `mask` is set."""

    kind: ClassVar[str] = "region"
    name: str = "Region"
    rect: tuple[int, int, int, int] = (0, 0, 0, 0)  # x, y, w, h in document pixels
    mask: np.ndarray | None = None  # HxW uint8 at document size; None = the rectangle
    prompt: str = ""
    negative: str = ""
    strength: float = 1.0  # 0..2
    loras: tuple[LoraRef, ...] = ()
    color: str = "#e0604f"

    STRENGTH_RANGE: ClassVar[tuple[float, float]] = (0.0, 2.0)

    def coverage(self, width: int, height: int) -> np.ndarray:
        """The region as an HxW float32 mask in [0, 1] at document size."""
        if self.mask is not None:
            m = np.zeros((height, width), np.float32)
            h, w = min(height, self.mask.shape[0]), min(width, self.mask.shape[1])
            m[:h, :w] = self.mask[:h, :w] / np.float32(255)
            return m
        m = np.zeros((height, width), np.float32)
        r = Rect(*self.rect).clip(width, height)
        if not r.empty:
            m[r.slices] = 1.0
        return m


@dataclass(frozen=True)
class Stroke:
    points: tuple[tuple[float, float], ...]  # document coordinates
    color: str = "#ff0000"  # #rrggbb
    width: float = 8.0  # px


@dataclass(eq=False)
class ScribbleLayer(Layer):
    """Vector pen strokes. `sketch`: painted into the init image, their area becomes the mask;
    `annotation`: markup shown only to instruction-edit models, never in the output."""

    kind: ClassVar[str] = "scribble"
    name: str = "Scribble"
    strokes: tuple[Stroke, ...] = ()
    mode: Literal["sketch", "annotation"] = "sketch"


@dataclass(eq=False)
class GroupLayer(Layer):
    """A nested stack: the layers whose `group` is this layer's id. `isolated`: its members are
    blended together first and the result onto what is below (OpenRaster isolation="isolate");
    otherwise ("pass-through") each member blends straight onto what is below the group."""

    kind: ClassVar[str] = "group"
    name: str = "Group"
    isolated: bool = True

