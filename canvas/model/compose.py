"""compose(document) -> Composition: a frozen numpy snapshot of what a generation needs.

The snapshot holds copies only (never views into layer arrays), marked read-only, so it can
cross to the inference thread and be pickled while the user keeps painting.

What each layer kind contributes (visible layers in visible groups only):
- ImageLayer (not `reference`): flattened bottom to top into `init_image` over white, placed by
  its transform, weighted by its opacity and combined by its blend mode (canvas.model.blend);
  `init_alpha` is the resulting coverage of the canvas. A GroupLayer's members are flattened
  into a buffer of their own (isolated group) that is then blended with the group's opacity and
  mode, or, for a pass-through group, straight into what is below with the group's opacity
  applied to each member.
  A `collage` piece also gives one plane of `collage_alpha`: that piece's own alpha where it lands
  (after its transform, times its opacity), NOT reduced by pieces stacked above it, so refine
  can find each piece's full outline even where pieces overlap.
- ImageLayer (`reference`): its own pixels, untransformed, over white, in `references`.
- MaskLayer: `inpaint_mask` is the union (maximum) of all of them. Layer opacity only changes how
  the mask is shown, not what is regenerated.
- RegionLayer: one `ComposedRegion` each, bottom first. Opacity is display-only here too.
- ScribbleLayer: sketch-mode strokes go to `sketch_image` (their colours, alpha times the layer
  opacity) and `sketch_mask` (the stroke area, not weakened by opacity); annotation-mode strokes
  go to `annotation_image` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from canvas.model.blend import CLEARS_OUTSIDE, blend_into
from canvas.model.document import Document, DocumentError
from canvas.model.layers import GroupLayer, ImageLayer, Layer, MaskLayer, Rect, RegionLayer, ScribbleLayer
from canvas.model.raster import (
    StrokeCanvas,
    exact_matrix,
    footprint,
    integer_offset,
    strokes_bounds,
    to_uint8,
    warp_rgba,
)

BAND_PIXELS = 1 << 20  # flatten this many canvas pixels at a time, to bound float temporaries
# What one composition may cost, checked before any pixel is drawn: the canvas pixels the image
# layers cover, summed over the layers (as many as four full layers of the largest canvas, the
# same as the pixels a project may hold), and the bytes of refine's one-plane-per-piece outlines.
MAX_DRAWN_PIXELS = 1 << 30
MAX_COLLAGE_BYTES = 2 << 30


class ComposedRegion(NamedTuple):
    mask: np.ndarray  # HxW float32 in [0, 1]
    prompt: str
    negative: str
    strength: float
    loras: tuple[tuple[str, float], ...]
    layer_id: str
    name: str


@dataclass(frozen=True, eq=False)
class Composition:
    width: int
    height: int
    init_image: np.ndarray  # HxWx3 uint8: visible non-reference image layers over white
    init_alpha: np.ndarray  # HxW float32: 0 where no image layer covers the canvas
    has_content: bool  # False: an empty canvas (txt2img)
    inpaint_mask: np.ndarray | None  # HxW float32 union of visible mask layers; None: no mask layer
    regions: tuple[ComposedRegion, ...]
    sketch_image: np.ndarray | None  # HxWx4 uint8 straight alpha; None: no visible sketch strokes
    sketch_mask: np.ndarray | None  # HxW float32 stroke area of the sketch strokes
    annotation_image: np.ndarray | None  # HxWx4 uint8; None: no visible annotation strokes
    collage_alpha: np.ndarray  # N x H x W float32, one plane per visible collage piece, bottom first
    collage_ids: tuple[str, ...]  # the layer id of each collage_alpha plane
    references: tuple[np.ndarray, ...]  # HxWx3 uint8 each, bottom first
    settings: dict[str, Any]

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def compose(document: Document) -> Composition:
    """Freeze the document's visible layers into a Composition (see the module docstring)."""
    width, height = document.width, document.height
    visible = document.shown_layers()
    flat = [la for la in visible if isinstance(la, ImageLayer) and not la.reference]
    collage = [la for la in flat if la.collage]
    init_image, init_alpha, collage_alpha = flatten_layers(document, collage)
    masks = [la for la in visible if isinstance(la, MaskLayer)]
    sketches = [la for la in visible if isinstance(la, ScribbleLayer) and la.mode == "sketch" and la.strokes]
    notes = [la for la in visible if isinstance(la, ScribbleLayer) and la.mode == "annotation" and la.strokes]
    sketch_image, sketch_mask = _draw_scribbles(sketches, width, height) if sketches else (None, None)
    annotation_image = _draw_scribbles(notes, width, height)[0] if notes else None
    return Composition(
        width=width,
        height=height,
        init_image=_frozen(init_image),
        init_alpha=_frozen(init_alpha),
        has_content=bool(init_alpha.max(initial=0.0) > 0),
        inpaint_mask=_frozen(_union_of_masks(masks, width, height)) if masks else None,
        regions=tuple(_prepare_region(la, width, height) for la in visible if isinstance(la, RegionLayer)),
        sketch_image=_frozen(sketch_image),
        sketch_mask=_frozen(sketch_mask),
        annotation_image=_frozen(annotation_image),
        collage_alpha=_frozen(collage_alpha),
        collage_ids=tuple(la.id for la in collage),
        references=tuple(_frozen(_prepare_reference(la)) for la in visible
                         if isinstance(la, ImageLayer) and la.reference),
        settings=document.settings.to_dict(),
    )


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.flags.writeable = False
    return array


# ---- image layers -----------------------------------------------------------------------------


def layer_matrix(layer: ImageLayer) -> np.ndarray:
    """The layer's transform, validated, with exact quarter turns (see raster.exact_matrix)."""
    values = (layer.x, layer.y, layer.scale, layer.rotation, layer.opacity)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise DocumentError(f"Layer {layer.name!r} has a transform or opacity that is not a finite number.")
    return exact_matrix(layer.x, layer.y, layer.scale, layer.rotation)


def _check_rgba(layer: ImageLayer) -> None:
    p = layer.pixels
    if not (isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 4):
        raise DocumentError(f"Layer {layer.name!r} does not hold HxWx4 8-bit RGBA pixels.")


@dataclass
class _Placed:
    layer: ImageLayer
    pixels: np.ndarray
    matrix: np.ndarray
    reach: Rect


@dataclass
class _PlacedGroup:
    group: GroupLayer
    members: list[_Placed | _PlacedGroup]


def _prepare_stack(tree: dict[GroupLayer | None, list[Layer]], group: GroupLayer | None, width: int,
                   height: int) -> list[_Placed | _PlacedGroup]:
    """The visible image layers and groups composited in `group`, bottom first, with transforms
    validated (raising DocumentError) before any pixel is rendered."""
    out: list[_Placed | _PlacedGroup] = []
    for layer in tree.get(group, []):
        if not layer.visible:
            continue
        if isinstance(layer, GroupLayer):
            if not (isinstance(layer.opacity, (int, float)) and math.isfinite(layer.opacity)):
                raise DocumentError(f"Group {layer.name!r} has an opacity that is not a finite number.")
            members = _prepare_stack(tree, layer, width, height)
            if layer.blend in CLEARS_OUTSIDE or (members and layer.opacity > 0):
                out.append(_PlacedGroup(layer, members))
        elif isinstance(layer, ImageLayer) and not layer.reference:
            _check_rgba(layer)
            matrix = layer_matrix(layer)
            reach = footprint(matrix, layer.size[0], layer.size[1]).clip(width, height)
            if layer.blend in CLEARS_OUTSIDE or (not reach.empty and layer.opacity > 0):
                # contiguous once here, not once per band (warp_rgba gathers whole pixels as uint32)
                out.append(_Placed(layer, np.ascontiguousarray(layer.pixels), matrix, reach))
    return out


def drawn_pixels(document: Document) -> int:
    """The canvas pixels the document's image layers cover, summed over the layers (hidden ones
    too: the editor draws them when shown): what flattening or showing it costs. Whole-canvas blend
    modes count the canvas. Raises DocumentError for a transform that is not a finite number."""
    total = 0
    for layer in document.layers:
        if isinstance(layer, ImageLayer) and not layer.reference:
            _check_rgba(layer)
            if layer.blend in CLEARS_OUTSIDE:
                total += document.width * document.height
            else:
                reach = footprint(layer_matrix(layer), *layer.size).clip(document.width, document.height)
                total += 0 if reach.empty else reach.w * reach.h
    return total


def warped_pixels(document: Document) -> int:
    """The canvas pixels covered by image layers that are not at a whole-pixel offset (scaled,
    turned or at a fractional offset), summed over the layers: what resampling costs when the
    document is flattened, and again when it is saved (each such layer is written as shown)."""
    total = 0
    for layer in document.layers:
        if isinstance(layer, ImageLayer) and not layer.reference:
            _check_rgba(layer)
            matrix = layer_matrix(layer)
            if integer_offset(matrix) is None:
                reach = footprint(matrix, *layer.size).clip(document.width, document.height)
                total += 0 if reach.empty else reach.w * reach.h
    return total


class CostlyDocumentError(DocumentError):
    """Refused only by a budget that follows the size of the file it came from (`warp_budget`): a
    reader may let the user open it anyway (canvas.io.errors.CostlyFileError)."""


def check_cost(document: Document, collage_pieces: int = 0, *, warp_budget: int | None = None) -> None:
    """Refuse, in one sentence and before anything is allocated, a document too costly to flatten.
    `warp_budget`: at most that many warped pixels (warped_pixels); readers give a budget that follows
    the size of the file, so a small file cannot ask for minutes of resampling."""
    drawn = drawn_pixels(document)
    if drawn > MAX_DRAWN_PIXELS:
        raise DocumentError(f"The image layers cover the canvas {drawn / (document.width * document.height):.0f} "
                            f"times over ({drawn / 1e9:.1f} billion pixels to draw); at most "
                            f"{MAX_DRAWN_PIXELS / 1e9:.1f} billion can be composed. Merge or remove some layers.")
    if warp_budget is not None:
        warped = warped_pixels(document)
        if warped > warp_budget:
            raise CostlyDocumentError(
                f"Its scaled or turned layers cover {warped / 1e6:.0f} million canvas pixels, more than the "
                f"{warp_budget / 1e6:.0f} million a file of this size may ask to resample (each costs time when "
                "the picture is composed or saved).")
    planes = collage_pieces * document.width * document.height * 4
    if planes > MAX_COLLAGE_BYTES:
        raise DocumentError(f"Refine keeps an outline of each collage piece: {collage_pieces} pieces on a "
                            f"{document.width}x{document.height} canvas need {planes / 2**30:.1f} GiB, more than "
                            f"the {MAX_COLLAGE_BYTES >> 30} GiB allowed. Merge some pieces or use fewer.")


def flatten_layers(document: Document, collage: list[ImageLayer] = (), *,
                   with_alpha: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(init_image over white, init_alpha, collage_alpha) of the document's visible image layers,
    in bands of rows to bound memory. Without `with_alpha`, init_alpha is None (a save needs the
    picture only: 4 bytes a canvas pixel less)."""
    width, height = document.width, document.height
    check_cost(document, len(collage))
    init_image = np.empty((height, width, 3), np.uint8)
    init_alpha = np.empty((height, width), np.float32) if with_alpha else None
    collage_alpha = np.zeros((len(collage), height, width), np.float32)
    plane_of = {id(la): i for i, la in enumerate(collage)}
    stack = _prepare_stack(document.tree(), None, width, height)
    band_rows = max(1, BAND_PIXELS // width)
    for y0 in range(0, height, band_rows):
        band = Rect(0, y0, width, min(band_rows, height - y0))
        rgb = np.zeros((band.h, width, 3), np.float32)
        alpha = np.zeros((band.h, width), np.float32)
        _composite_band(stack, band, rgb, alpha, 1.0, collage_alpha, plane_of)
        init_image[band.y:band.y + band.h] = to_uint8(rgb + (1 - alpha)[..., None] * np.float32(255))
        if init_alpha is not None:
            init_alpha[band.y:band.y + band.h] = alpha
    return init_image, init_alpha, collage_alpha


def _composite_band(stack: list[_Placed | _PlacedGroup], band: Rect, rgb: np.ndarray, alpha: np.ndarray,
                    opacity: float, collage_alpha: np.ndarray, plane_of: dict[int, int]) -> None:
    """Blend the stack's items bottom to top onto the band's premultiplied (rgb, alpha)."""
    for item in stack:
        if isinstance(item, _PlacedGroup):
            group = item.group
            if not group.isolated:  # pass-through: members blend onto what is below the group
                _composite_band(item.members, band, rgb, alpha, opacity * float(group.opacity),
                                collage_alpha, plane_of)
                continue
            group_rgb = np.zeros_like(rgb)
            group_alpha = np.zeros_like(alpha)
            _composite_band(item.members, band, group_rgb, group_alpha, 1.0, collage_alpha, plane_of)
            weight = np.float32(opacity * float(group.opacity))
            if weight != 1:
                group_rgb *= weight
                group_alpha *= weight
            blend_into(rgb, alpha, group_rgb, group_alpha, group.blend)
            continue
        part = band if item.layer.blend in CLEARS_OUTSIDE else item.reach.intersect(band)
        if part.empty:
            continue
        src_rgb, src_alpha = warp_rgba(item.pixels, item.matrix, part, float(item.layer.opacity) * opacity)
        rows = slice(part.y - band.y, part.y - band.y + part.h)
        cols = slice(part.x, part.x + part.w)
        blend_into(rgb[rows, cols], alpha[rows, cols], src_rgb, src_alpha, item.layer.blend)
        if id(item.layer) in plane_of:
            collage_alpha[plane_of[id(item.layer)], part.y:part.y + part.h, cols] = src_alpha


def _prepare_reference(layer: ImageLayer) -> np.ndarray:
    _check_rgba(layer)
    pixels = layer.pixels
    alpha = pixels[..., 3:4].astype(np.float32) / np.float32(255)
    return to_uint8(pixels[..., :3] * alpha + (1 - alpha) * np.float32(255))


# ---- masks, regions, scribbles ----------------------------------------------------------------


def _union_of_masks(layers: list[MaskLayer], width: int, height: int) -> np.ndarray:
    union = np.zeros((height, width), np.uint8)
    for layer in layers:
        p = layer.pixels
        if not (isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 2):
            raise DocumentError(f"Mask layer {layer.name!r} does not hold HxW 8-bit pixels.")
        h, w = min(height, p.shape[0]), min(width, p.shape[1])
        np.maximum(union[:h, :w], p[:h, :w], out=union[:h, :w])
    return union.astype(np.float32) / np.float32(255)


def _prepare_region(layer: RegionLayer, width: int, height: int) -> ComposedRegion:
    if layer.mask is not None and not (isinstance(layer.mask, np.ndarray) and layer.mask.dtype == np.uint8
                                       and layer.mask.ndim == 2):
        raise DocumentError(f"Region {layer.name!r} has a mask that is not HxW 8-bit pixels.")
    return ComposedRegion(
        mask=_frozen(layer.coverage(width, height)),
        prompt=str(layer.prompt),
        negative=str(layer.negative),
        strength=float(layer.strength),
        loras=tuple((str(lora.name), float(lora.weight)) for lora in layer.loras),
        layer_id=layer.id,
        name=layer.name,
    )


def _draw_scribbles(layers: list[ScribbleLayer], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((height, width, 4), np.uint8)
    area = np.zeros((height, width), np.float32)
    try:
        box = Rect(0, 0, 0, 0)
        for layer in layers:
            box = box.union(strokes_bounds(layer.strokes, width, height))
        if box.empty:
            return image, area
        canvas = StrokeCanvas(box)
        for layer in layers:
            for stroke in layer.strokes:
                canvas.draw(stroke.points, stroke.color, stroke.width, float(layer.opacity))
    except (ValueError, TypeError) as exc:
        raise DocumentError(f"A stroke of {layer.name!r} cannot be drawn: {exc}") from None
    image[box.slices] = canvas.rgba()
    area[box.slices] = canvas.area
    return image, area
