"""Which size a picture is generated at (SPEC §3 only_masked, issue 16): torch-free, Qt-free.

A canvas (or, for inpaint `only_masked`, the crop around the mask) is generated at a resolution
the model is made for and scaled back to the canvas afterwards. The choices:

- `auto` (the default): the picture's own size while it is within the generation limit and not
  far above the family's native area (at most `AUTO_AREA_FACTOR` times it); otherwise the native
  area in the picture's aspect ratio, in whole `GRID` px. Auto never enlarges a picture: a small
  crop costs what its own pixels cost (a quarter mask on a native-size canvas ~ 0.35x of `whole`).
- `picture`: the picture's own size (rounded to the 8 px latent grid); refused over the limit.
- `custom`: the user's width x height. For a crop that is exactly the generation size (the crop
  grows to its aspect, as in A1111); for a whole canvas it is the pixel area in the canvas' aspect,
  so nothing is stretched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from inference.api import MAX_PIXELS, MAX_SIDE, RequestError
from inference.validate import validate_size

GenerationSizeChoice = Literal["auto", "picture", "custom"]
GENERATION_SIZE_CHOICES: tuple[str, ...] = get_args(GenerationSizeChoice)
GRID = 64  # px: a scaled generation's sides are whole multiples (every family's latent grid divides it)
CELL = 8  # px: the finest size step any family accepts (SD's latent cell)
AUTO_AREA_FACTOR = 2.25  # 1.5x the native side: above that a family repeats subjects and loses coherence
FALLBACK_NATIVE_AREA = 1024 * 1024  # a model whose family is unknown: scaled only when over the limit


@dataclass(frozen=True)
class GenerationSize:
    """The size chosen for a picture of `source` size, and whether it is a scaled one."""

    width: int
    height: int
    source: tuple[int, int]  # (width, height) of the picture: the canvas or the only_masked crop
    reason: str = ""  # "" when it is the picture's own size; otherwise why it was scaled

    @property
    def scaled(self) -> bool:
        return (self.width, self.height) != self.source


def fits_limit(width: int, height: int) -> bool:
    return width <= MAX_SIDE and height <= MAX_SIDE and width * height <= MAX_PIXELS


def round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def at_area(width: int, height: int, area: int, multiple: int = GRID) -> tuple[int, int]:
    """A size of `width`:`height`'s aspect ratio and about `area` pixels, in whole `multiple` px,
    within the generation limit (a very long canvas keeps its long side at the limit)."""
    aspect = width / height
    w = math.sqrt(area * aspect)
    h = w / aspect
    w, h = round_to(w, multiple), round_to(h, multiple)
    cap = MAX_SIDE // multiple * multiple
    if w > cap:
        w, h = cap, round_to(cap / aspect, multiple)
    if h > cap:
        w, h = round_to(cap * aspect, multiple), cap
    return w, h


def own_size(width: int, height: int, cell: int = CELL) -> tuple[int, int]:
    """The picture's size on the latent grid (a crop is rounded up: the engine grows it to match)."""
    return max(cell, math.ceil(width / cell) * cell), max(cell, math.ceil(height / cell) * cell)


def choose_generation_size(width: int, height: int, *, native_area: int | None, choice: GenerationSizeChoice = "auto",
                           custom: tuple[int, int] = (512, 512), crop: bool = False,
                           cell: int = CELL) -> GenerationSize:
    """The generation size of a `width` x `height` picture (see the module text for the choices);
    `cell`: the family's size step (8 px for SD, 16 for the 2x2-patch transformers)."""
    source = (int(width), int(height))
    if choice not in GENERATION_SIZE_CHOICES:
        raise RequestError(f"Unknown generation size {choice!r}; choose one of: {', '.join(GENERATION_SIZE_CHOICES)}.")
    exact = not crop and width % CELL == 0 and height % CELL == 0  # a canvas the family refuses is its to say
    own = source if exact else own_size(width, height, cell)
    if choice == "custom":
        cw, ch = custom
        validate_size(cw, ch, "The requested size")  # the sentence the engine gives a request of that size
        size = (cw, ch) if crop else at_area(width, height, cw * ch, cell)
        return GenerationSize(*size, source=source, reason="the generation size set in the panel")
    if choice == "picture":
        if not fits_limit(*own):
            what = "crop around the mask" if crop else "canvas"
            raise RequestError(f"The {what} {width}x{height} is larger than the limit of {MAX_SIDE} pixels per "
                               "side to generate at its own size; set the generation size to Auto (native).")
        return GenerationSize(*own, source=source, reason="" if own == source else "the latent grid")
    area = native_area or FALLBACK_NATIVE_AREA
    over_limit = not fits_limit(*own)
    if over_limit or (native_area and own[0] * own[1] > AUTO_AREA_FACTOR * native_area):
        why = "the generation limit" if over_limit else "the model's native size"
        return GenerationSize(*at_area(width, height, area), source=source, reason=why)
    return GenerationSize(*own, source=source, reason="" if own == source else "the latent grid")
