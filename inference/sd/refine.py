"""Collage refine (雑コラのリファイン): img2img over the flattened collage with a per-pixel strength map.

The map is built from the collage pieces' alpha (`request.collage_alpha`, one plane per piece,
bottom first, each piece's full outline even where pieces overlap):

- `inside_strength` where a piece covers the canvas, `background_strength` on the untouched
  background, blended by the pieces' (soft) coverage;
- a band of `refine_edge_width` px straddling each piece's outline (half inside, half outside)
  rises smoothly (smoothstep of the distance) to `refine_edge_strength` at the outline itself,
  where the seams are. The outline of a piece is where its alpha crosses half of its own maximum,
  so semi-transparent pieces have outlines too.

The map drives differential denoising through the loop's per-pixel strength (`StrengthBlend`): a
pixel is held to the re-noised collage until the step where an img2img at its strength would
start. The run therefore starts at the map's largest value; the request's own `strength` does not
apply in this mode (the three refine strengths replace it).

Optionally (`request.color_match`) each piece's colours are moved half-way towards the mean and
spread of the picture just around it before encoding, so pieces share the scene's light while
keeping their own colours.

Paste-back: only the refine bounds change — the bounding box of all pieces grown by the band's
outer half. Inside the bounds the result fades in over `BOUNDS_FEATHER` px from their border, so
the low-strength background shows no rectangular seam; outside them (and wherever the map is 0)
the output is the collage, byte for byte.

`build_strength_map` is pure numpy, for the UI's overlay as well.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from inference.api import GenerationRequest, RequestError
from inference.sd.blend import StrengthBlend, StrengthMap
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.diagnostics import apply_precedence
from inference.sd.masks import color_match, composite, dilate, mask_bbox

BOUNDS_FEATHER = 16  # px over which the result fades in from the border of the refine bounds
COLOR_MATCH_AMOUNT = 0.5  # how far a piece's colour statistics move towards its surroundings'
COLOR_MATCH_BAND = 24  # px of surroundings a piece is compared with (at least; grows with the edge band)
MAX_EDGE_WIDTH = 1024


def refine_extensions(request: GenerationRequest, model) -> list[LoopExtension]:
    """Refine, plus the request's regions when there are any (regions inside refine)."""
    from inference.sd.regions import region_extensions

    return [RefineExtension.from_request(request), *region_extensions(request, model)]


# ---- the strength map (pure numpy) ------------------------------------------------------------------


def check_collage_alpha(collage_alpha) -> np.ndarray:
    alpha = np.asarray(collage_alpha, dtype=np.float32) if collage_alpha is not None else None
    if alpha is None or alpha.ndim != 3 or alpha.shape[0] == 0:
        raise RequestError("Refine needs collage pieces: the collage alpha must be an N x H x W stack with N >= 1.")
    if not np.isfinite(alpha).all() or alpha.min() < 0.0 or alpha.max() > 1.0:
        raise RequestError("The collage alpha must hold values between 0 and 1.")
    if not (alpha > 0).any():
        raise RequestError("Refine needs collage pieces, but every piece's alpha is empty.")
    return alpha


def check_refine_settings(edge_width, strengths: dict[str, float]) -> None:
    if isinstance(edge_width, bool) or not isinstance(edge_width, (int, np.integer)) \
            or not 0 <= edge_width <= MAX_EDGE_WIDTH:
        raise RequestError(f"The refine edge width must be a whole number from 0 to {MAX_EDGE_WIDTH} px, not {edge_width!r}.")
    for name, value in strengths.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise RequestError(f"The refine {name} strength must be between 0 and 1, not {value!r}.")


def piece_outline(alpha: np.ndarray) -> np.ndarray:
    """Pixels on either side of where the piece's alpha crosses half its maximum (4-neighbourhood)."""
    peak = float(alpha.max())
    if peak <= 0:
        return np.zeros(alpha.shape, dtype=bool)
    inside = alpha >= 0.5 * peak
    outline = np.zeros_like(inside)
    vertical = inside[1:, :] != inside[:-1, :]
    horizontal = inside[:, 1:] != inside[:, :-1]
    outline[1:, :] |= vertical
    outline[:-1, :] |= vertical
    outline[:, 1:] |= horizontal
    outline[:, :-1] |= horizontal
    return outline


def grow(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    """Binary dilation by one pixel: the 4-neighbourhood, or the 8-neighbourhood with `diagonal`."""
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    if diagonal:
        out[1:, 1:] |= mask[:-1, :-1]
        out[1:, :-1] |= mask[:-1, 1:]
        out[:-1, 1:] |= mask[1:, :-1]
        out[:-1, :-1] |= mask[1:, 1:]
    return out


def distance_to(mask: np.ndarray, limit: int) -> np.ndarray:
    """Distance in px from every pixel to the nearest pixel of `mask`, capped at `limit` (inf beyond).

    Grows the mask one pixel at a time, alternating 4- and 8-neighbourhoods: the octagonal
    distance, within 8 % of the Euclidean one, in O(limit) numpy passes.
    """
    distance = np.full(mask.shape, np.inf, dtype=np.float32)
    distance[mask] = 0.0
    reached = mask.copy()
    for step in range(1, limit + 1):
        grown = grow(reached, diagonal=step % 2 == 0)
        distance[grown & ~reached] = step
        reached = grown
        if reached.all():
            break
    return distance


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def build_strength_map(collage_alpha: np.ndarray, *, edge_width: int = 24, edge_strength: float = 0.75,
                       inside_strength: float = 0.45, background_strength: float = 0.15) -> np.ndarray:
    """Per-pixel denoising strength (HxW float32 in [0, 1]) for refining a collage; see the module doc."""
    alpha = check_collage_alpha(collage_alpha)
    check_refine_settings(edge_width, {"edge": edge_strength, "inside": inside_strength,
                                       "background": background_strength})
    coverage = 1.0 - np.prod(1.0 - alpha, axis=0)
    strength = background_strength + (inside_strength - background_strength) * coverage
    half_band = edge_width / 2.0
    if half_band > 0:
        outlines = np.zeros(alpha.shape[1:], dtype=bool)
        for plane in alpha:
            outlines |= piece_outline(plane)
        distance = distance_to(outlines, math.ceil(half_band))
        closeness = smoothstep(1.0 - distance / half_band)
        strength = strength + (edge_strength - strength) * closeness
    return np.clip(strength, 0.0, 1.0).astype(np.float32)


def refine_bounds(collage_alpha: np.ndarray, edge_width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end-exclusive: the pieces' bounding box grown by the band's outer half."""
    alpha = check_collage_alpha(collage_alpha)
    x0, y0, x1, y1 = mask_bbox(alpha.max(axis=0))
    reach = math.ceil(edge_width / 2.0)
    height, width = alpha.shape[1:]
    return max(x0 - reach, 0), max(y0 - reach, 0), min(x1 + reach, width), min(y1 + reach, height)


def bounds_weight(shape: tuple[int, int], bounds: tuple[int, int, int, int], feather: int = BOUNDS_FEATHER) -> np.ndarray:
    """1 well inside the bounds, rising linearly from their border over `feather` px, 0 outside.

    Sides of the bounds that lie on the canvas border need no fade (nothing to blend with there).
    """
    height, width = shape
    x0, y0, x1, y1 = bounds
    weight = np.zeros(shape, dtype=np.float32)
    if x1 <= x0 or y1 <= y0:
        return weight

    def ramp(length: int, start_open: bool, end_open: bool) -> np.ndarray:
        index = np.arange(length, dtype=np.float32)
        values = np.ones(length, dtype=np.float32)
        if feather > 0 and not start_open:
            values = np.minimum(values, (index + 1) / (feather + 1))
        if feather > 0 and not end_open:
            values = np.minimum(values, (length - index) / (feather + 1))
        return values

    rows = ramp(y1 - y0, y0 == 0, y1 == height)
    columns = ramp(x1 - x0, x0 == 0, x1 == width)
    weight[y0:y1, x0:x1] = rows[:, None] * columns[None, :]
    return weight


def match_piece_colors(image: np.ndarray, collage_alpha: np.ndarray, band: int,
                       amount: float = COLOR_MATCH_AMOUNT) -> np.ndarray:
    """Move each visible piece's per-channel mean/std part of the way towards its surroundings'."""
    result = image.copy()
    for visible in apply_precedence(list(collage_alpha)):
        region = visible >= 0.5
        if not region.any():
            continue
        surroundings = dilate(region, band) & ~region
        if not surroundings.any():
            continue
        matched = color_match(result, image, region, surroundings).astype(np.float32)
        moved = result.astype(np.float32) + amount * (matched - result.astype(np.float32))
        result = np.where(region[..., None], np.clip(np.rint(moved), 0, 255).astype(np.uint8), result)
    return result


# ---- the loop extension -------------------------------------------------------------------------------


class RefineExtension(LoopExtension):
    """Differential img2img of the collage by its strength map, with paste-back outside the bounds."""

    def __init__(self, collage_alpha: np.ndarray, *, edge_width: int = 24, edge_strength: float = 0.75,
                 inside_strength: float = 0.45, background_strength: float = 0.15, color_match: bool = False):
        self.collage_alpha = check_collage_alpha(collage_alpha)
        check_refine_settings(edge_width, {"edge": edge_strength, "inside": inside_strength,
                                           "background": background_strength})
        self.edge_width = int(edge_width)
        self.strengths = dict(edge_strength=edge_strength, inside_strength=inside_strength,
                              background_strength=background_strength)
        self.color_match = color_match
        self.strength_map: np.ndarray | None = None
        self.paste_weight: np.ndarray | None = None
        self.blend: StrengthBlend | None = None

    @classmethod
    def from_request(cls, request: GenerationRequest) -> RefineExtension:
        return cls(request.collage_alpha, edge_width=request.refine_edge_width,
                   edge_strength=request.refine_edge_strength, inside_strength=request.refine_inside_strength,
                   background_strength=request.refine_background_strength, color_match=request.color_match)

    def prepare_image(self, ctx: DenoiseContext) -> None:
        canvas = ctx.canvas_image
        if canvas is None:
            raise RequestError("Refine needs the flattened collage as its input image.")
        if self.collage_alpha.shape[1:] != canvas.shape[:2] or ctx.crop_box is not None \
                or canvas.shape[:2] != (ctx.height, ctx.width):
            raise RequestError(
                f"The collage alpha is {self.collage_alpha.shape[2]}x{self.collage_alpha.shape[1]} but the refine"
                f" runs at {ctx.width}x{ctx.height}; refine works on the whole canvas at its own size."
            )
        self.strength_map = build_strength_map(self.collage_alpha, edge_width=self.edge_width, **self.strengths)
        bounds = refine_bounds(self.collage_alpha, self.edge_width)
        self.paste_weight = bounds_weight(self.strength_map.shape, bounds) * (self.strength_map > 0)
        ctx.source_image = canvas
        ctx.init_image = canvas.copy()
        if self.color_match:
            ctx.init_image = match_piece_colors(canvas, self.collage_alpha, max(COLOR_MATCH_BAND, self.edge_width))
        # The run starts where the strongest pixel starts; weaker pixels wait for their own step.
        ctx.request = dataclasses.replace(ctx.request, strength=float(self.strength_map.max()))
        self.blend = StrengthBlend(StrengthMap(self.strength_map))

    def prepare(self, ctx: DenoiseContext) -> None:
        self.blend.prepare(ctx)

    def after_step(self, ctx: DenoiseContext, step_index: int, latents):
        return self.blend.after_step(ctx, step_index, latents)

    def finish(self, ctx: DenoiseContext, image: np.ndarray) -> np.ndarray:
        return composite(ctx.canvas_image, image, self.paste_weight)
