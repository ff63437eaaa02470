"""Composition + generation settings -> `inference.api.GenerationRequest` (pure Python, no Qt).

This is the one place that translates between the canvas' frozen snapshot and what the engine
understands (ARCHITECTURE "data flow" step 2). The mapping per mode:

- generate: txt2img, or img2img at `strength` when the canvas has content;
- inpaint:  the inpaint mask (union of visible mask layers, plus the sketch strokes' area);
- regions:  every region with a prompt becomes a `RegionSpec` (regions also ride along in the
            other diffusion modes, so "regions inside inpaint/refine" work);
- composite: every region with a prompt becomes a `CompositePiece`;
- refine:   the collage layers' alpha stack drives the per-pixel strength map;
- edit:     reference images and the annotation raster go to the instruction-edit model.

Sketch scribbles are painted into the init image here, and their stroke area is passed as
`sketch_mask` (A1111 "inpaint sketch"). Bad settings raise `RequestError` with one sentence:
the request is checked by inference.validate, the same check the engine and the CLI make.

The generation size (issue 16, inference/resolution.py) is chosen here from the family's native
area and the panel's Generation size: a canvas over the generation limit or far above the native
area is generated at about the native area in its aspect ratio, an only_masked crop at its own size
(scaled down when it is large). Inpaint (and an inpaint sketch) sends the canvas-size picture and mask
with the smaller request size; the engine scales the crop (or the whole canvas) there and pastes the
result back inside the blurred mask, so the unmasked bytes stay. The other modes are scaled here:
`build_plan` returns the request at the generation size with the plan to scale its results back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from canvas.model.document import MAX_DOCUMENT_SIDE, GenerationSettings
from inference.api import (
    MAX_CANVAS_PIXELS,
    CompositePiece,
    Finished,
    GenerationRequest,
    LoraSpec,
    Preview,
    RegionSpec,
    RequestError,
)
from inference.families import FAMILIES, Family
from inference.models.discovery import BUILTIN_MODELS
from inference.resolution import GenerationSize, choose_generation_size
from inference.sd.inpaint import natural_crop_box, prepare_inpaint_mask
from inference.sd.masks import resize_image, resize_mask
from inference.sd.sketch import sketch_inpaint_mask, uses_sketch
from inference.validate import validate_request

MASK_EPSILON = 1.0 / 512  # a mask value below this is "not painted" (8-bit masks step by 1/255)
# Modes whose engine path runs the SD denoise loop, where regions can ride along.
_DIFFUSION_MODES = ("generate", "inpaint", "regions", "refine")


@dataclass(frozen=True)
class RegionInput:
    """The fields of one composition region the request needs, whatever shape compose gives."""

    mask: np.ndarray
    prompt: str
    negative: str
    strength: float
    loras: tuple[LoraSpec, ...]
    name: str


def check_canvas_size(width: int, height: int) -> None:
    """Refuse, before it is frozen, a canvas no generation can come from (a canvas over the generation
    limit is generated at a smaller size and scaled back: see `build_plan`)."""
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise RequestError(f"The canvas must be positive whole numbers of pixels, not {width!r} x {height!r}.")
    if width > MAX_DOCUMENT_SIDE or height > MAX_DOCUMENT_SIDE:
        raise RequestError(f"The canvas {width}x{height} is larger than the limit of {MAX_DOCUMENT_SIDE} pixels "
                           "per side.")
    if width * height > MAX_CANVAS_PIXELS:  # what freezing it copies: the picture, masks, each region's
        raise RequestError(f"The canvas {width}x{height} is larger than the limit of "
                           f"{MAX_CANVAS_PIXELS // 1_000_000} million pixels to generate from; crop or scale it.")


def family_entry(model: str, family: str | None = None) -> Family | None:
    """The registry entry of the model's family: `family` when the caller knows it (discovery's
    ModelInfo.family), else the family of a built-in name; None when unknown."""
    if family is None:
        family = next((f for name, f, _inpaint in BUILTIN_MODELS if name == model), None)
    return FAMILIES.find(family) if family else None


def size_step(entry: Family | None) -> int:
    """The px a generation size of the family steps by: its latent cell, twice that for 2x2 patches
    (16 when the family is unknown: every family takes it)."""
    if entry is None:
        return 16
    return entry.latent.scale_factor * (2 if entry.latent.packed else 1)


@dataclass(frozen=True)
class GenerationPlan:
    """A request and where its results go: `canvas` is the canvas size; `size` the generation size
    chosen for the picture (the canvas, or the only_masked crop). `rescale`: the request is at the
    generation size and its results are scaled back to the canvas by `to_canvas` (the modes without a
    paste-back; inpaint scales in the engine, whose results already are canvas-size)."""

    request: GenerationRequest
    canvas: tuple[int, int]
    size: GenerationSize
    rescale: bool = False

    @property
    def notice(self) -> str:
        """One sentence when the picture is generated at another size than its own, else ""."""
        if not self.size.scaled or self.size.reason in ("", "the latent grid"):
            return ""
        w, h = self.size.source
        what = "crop around the mask" if self.size.source != self.canvas else "canvas"
        return (f"Generated at {self.size.width}x{self.size.height} ({self.size.reason}) and scaled back to the "
                f"{w}x{h} {what}.")

    def to_canvas(self, event: Any) -> Any:
        """An engine event with its images and rectangles in canvas pixels."""
        if not self.rescale:
            return event
        if isinstance(event, Finished):
            width, height = self.canvas
            images = tuple(resize_image(image, width, height) for image in event.images)
            return replace(event, images=images, rect=self._canvas_box(event.rect))
        if isinstance(event, Preview):
            return replace(event, rect=self._canvas_box(event.rect))
        return event

    def _canvas_box(self, box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
        width, height = self.canvas
        if box is None:
            return (0, 0, width, height)
        sx, sy = width / self.request.width, height / self.request.height
        x0, y0, x1, y1 = box
        return (max(0, math.floor(x0 * sx)), max(0, math.floor(y0 * sy)), min(width, math.ceil(x1 * sx)),
                min(height, math.ceil(y1 * sy)))


def build_request(composition: Any, settings: GenerationSettings | Mapping[str, Any] | None = None, *,
                  preview: str = "linear", model: str | None = None, family: str | None = None) -> GenerationRequest:
    """Map a frozen composition and the generation settings to one engine request (`build_plan`'s
    request: at the generation size; results of a scaled generation are that size too)."""
    return build_plan(composition, settings, preview=preview, model=model, family=family).request


def build_plan(composition: Any, settings: GenerationSettings | Mapping[str, Any] | None = None, *,
               preview: str = "linear", model: str | None = None, family: str | None = None) -> GenerationPlan:
    """Map a frozen composition and the generation settings to one engine request and its plan.

    `settings` defaults to the composition's own settings snapshot; `model` overrides the
    settings' model (the CLI's --model); `family` is the model's family when the caller knows it
    (a built-in model's is known here), for its native size.
    """
    s = _prepare_settings(composition, settings)
    init_image = _prepare_init_image(composition)
    height, width = init_image.shape[:2]
    check_canvas_size(width, height)  # before the canvas-size arrays below
    has_content = bool(getattr(composition, "has_content", False))
    sketch_image, sketch_mask = _prepare_sketch(composition, width, height)
    if sketch_mask is not None:
        init_image = paint_sketch(init_image, sketch_image)
        has_content = True
    regions = _prepare_regions(composition, width, height)
    mode = s.mode

    fields: dict[str, Any] = dict(
        mode=mode,
        model=model or s.model,
        prompt=s.prompt,
        negative=s.negative,
        width=width,
        height=height,
        sampler=s.sampler,
        steps=s.steps,
        cfg=s.cfg,
        seed=s.seed,
        batch_count=s.batch_count,
        clip_skip=s.clip_skip,
        vae=s.vae or None,
        lcm=s.lcm,
        loras=_prepare_loras(s.loras, "the LoRA list"),
        init_image=init_image if has_content else None,
        strength=s.strength,
        mask_mode=s.mask_mode,
        masked_content=s.masked_content,
        inpaint_area=s.inpaint_area,
        padding=s.padding,
        mask_blur=s.mask_blur,
        color_match=s.color_match,
        region_method=s.region_method,
        composite_step=s.composite_step,
        refine_edge_width=s.refine_edge_width,
        refine_edge_strength=s.refine_edge_strength,
        refine_inside_strength=s.refine_inside_strength,
        refine_background_strength=s.refine_background_strength,
        sketch_mask=sketch_mask,
        image_guidance_scale=s.image_guidance_scale,
        true_cfg_scale=s.true_cfg_scale,
        preview=preview,
    )
    if mode in _DIFFUSION_MODES:
        fields["regions"] = tuple(
            RegionSpec(mask=r.mask, prompt=r.prompt, negative=r.negative, strength=r.strength, loras=r.loras)
            for r in regions
        )

    if mode == "inpaint":
        fields["mask"] = _prepare_inpaint_mask(composition, sketch_mask)
        if fields["init_image"] is None:
            raise RequestError("Inpaint needs a picture to change: add or generate an image layer first.")
    elif mode == "regions":
        if not regions:
            raise RequestError("Regions mode needs at least one region with a prompt: draw a region box "
                               "and type its prompt.")
    elif mode == "composite":
        if not regions:
            raise RequestError("Composite mode needs at least one region with a prompt to generate as a piece.")
        fields["pieces"] = tuple(CompositePiece(mask=r.mask, prompt=r.prompt, negative=r.negative)
                                 for r in regions)
    elif mode == "refine":
        fields["collage_alpha"] = _prepare_collage_alpha(composition, width, height)
        fields["init_image"] = init_image
    elif mode == "edit":
        if not has_content:
            raise RequestError("Edit mode needs a picture to edit: add an image layer first.")
        if not s.prompt.strip():
            raise RequestError("Edit mode needs an instruction: type what to change into the prompt.")
        fields["reference_images"] = _prepare_references(composition)
        fields["annotation_image"] = _prepare_annotation(composition, width, height)
        mask = getattr(composition, "inpaint_mask", None)
        if mask is not None and _painted(mask):
            fields["mask"] = _as_mask(mask, width, height, "the inpaint mask")
    request = GenerationRequest(**fields)
    plan = _plan_size(request, s, (width, height), family_entry(request.model, family))
    validate_request(plan.request)
    return plan


def canvas_generation_size(width: int, height: int, s: GenerationSettings, entry: Family | None) -> GenerationSize:
    """The size a whole `width` x `height` canvas (not an only_masked crop) is generated at, for the
    settings' Generation size and the family `entry` (None: unknown). Raises RequestError."""
    return choose_generation_size(width, height, native_area=entry.native_area if entry is not None else None,
                                  choice=s.generation_size, custom=(s.generation_width, s.generation_height),
                                  cell=size_step(entry))


def _plan_size(request: GenerationRequest, s: GenerationSettings, canvas: tuple[int, int],
               entry: Family | None) -> GenerationPlan:
    """The request at its generation size (see the module text)."""
    width, height = canvas
    custom = (s.generation_width, s.generation_height)
    native_area, cell = (entry.native_area if entry is not None else None), size_step(entry)
    engine_scales = request.mode == "inpaint" or uses_sketch(request)
    if request.mode == "edit":
        # The edit pipelines run at their own native area and size the result back themselves:
        # scaled here only when the canvas is over the limit.
        size = choose_generation_size(width, height, native_area=None)
    elif engine_scales and request.inpaint_area == "only_masked" and request.init_image is not None:
        mask = sketch_inpaint_mask(request) if uses_sketch(request) else prepare_inpaint_mask(request)
        x0, y0, x1, y1 = natural_crop_box(mask, request.padding, request.mask_blur)
        size = choose_generation_size(x1 - x0, y1 - y0, native_area=native_area, choice=s.generation_size,
                                      custom=custom, crop=True, cell=cell)
    else:
        size = canvas_generation_size(width, height, s, entry)
    if (size.width, size.height) == (width, height) and size.source == canvas:
        return GenerationPlan(request, canvas, size)
    if engine_scales:
        return GenerationPlan(replace(request, width=size.width, height=size.height), canvas, size)
    return GenerationPlan(scale_request(request, size.width, size.height), canvas, size, rescale=True)


def scale_request(request: GenerationRequest, width: int, height: int) -> GenerationRequest:
    """The request with its canvas-size pictures and masks resized to `width` x `height`."""

    def mask(array):
        return None if array is None else resize_mask(np.asarray(array, np.float32), width, height)

    def image(array):
        return None if array is None else resize_image(array, width, height)

    return replace(
        request,
        width=width,
        height=height,
        init_image=image(request.init_image),
        mask=mask(request.mask),
        sketch_mask=mask(request.sketch_mask),
        regions=tuple(replace(r, mask=mask(r.mask)) for r in request.regions),
        pieces=tuple(replace(p, mask=mask(p.mask), image=image(p.image)) for p in request.pieces),
        collage_alpha=None if request.collage_alpha is None else np.stack(
            [resize_mask(a, width, height) for a in request.collage_alpha]),
        annotation_image=image(request.annotation_image),
    )


def with_seed(request: GenerationRequest, seed: int) -> GenerationRequest:
    """The same request with another seed (regenerate)."""
    return replace(request, seed=int(seed))


def paint_sketch(init_image: np.ndarray, sketch_rgba: np.ndarray) -> np.ndarray:
    """Sketch colours over the init image by their alpha (straight alpha, uint8 in and out)."""
    alpha = sketch_rgba[..., 3:4].astype(np.float32) / 255.0
    out = init_image.astype(np.float32) * (1.0 - alpha) + sketch_rgba[..., :3].astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---- prepare_* helpers -----------------------------------------------------------------------


def _prepare_settings(composition: Any, settings: GenerationSettings | Mapping[str, Any] | None
                      ) -> GenerationSettings:
    if settings is None:
        settings = getattr(composition, "settings", None) or {}
    if isinstance(settings, GenerationSettings):
        return GenerationSettings.from_dict(settings.to_dict())
    if isinstance(settings, Mapping):
        return GenerationSettings.from_dict(dict(settings))
    raise RequestError(f"Generation settings must be a mapping, not {type(settings).__name__}.")


def _prepare_init_image(composition: Any) -> np.ndarray:
    image = getattr(composition, "init_image", None)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] < 3:
        raise RequestError("The composition has no flattened canvas image (HxWx3).")
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def _prepare_sketch(composition: Any, width: int, height: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    mask = getattr(composition, "sketch_mask", None)
    image = getattr(composition, "sketch_image", None)
    if mask is None or image is None or not _painted(mask):
        return None, None
    mask = _as_mask(mask, width, height, "the sketch mask")
    image = np.asarray(image)
    if image.shape != (height, width, 4):
        raise RequestError(f"The sketch raster is {image.shape}, not {height}x{width} RGBA.")
    return image.astype(np.uint8, copy=False), mask


def _prepare_inpaint_mask(composition: Any, sketch_mask: np.ndarray | None) -> np.ndarray:
    height, width = composition.init_image.shape[:2]
    mask = getattr(composition, "inpaint_mask", None)
    if mask is not None and _painted(mask):
        mask = _as_mask(mask, width, height, "the inpaint mask")
        if sketch_mask is not None:
            mask = np.maximum(mask, sketch_mask)
        return mask
    if sketch_mask is not None:
        return sketch_mask
    raise RequestError("Inpaint needs a mask: add a mask layer and paint over what should change.")


def _prepare_regions(composition: Any, width: int, height: int) -> list[RegionInput]:
    regions = []
    for raw in getattr(composition, "regions", None) or ():
        region = _region_input(raw, width, height)
        if not region.prompt.strip() or not _painted(region.mask):
            continue  # an empty region changes nothing; the inspector shows it as unused
        regions.append(region)
    return regions


def _region_input(raw: Any, width: int, height: int) -> RegionInput:
    """Regions come as objects with fields or as (mask, prompt, negative, strength, loras, id, name)."""
    if hasattr(raw, "mask") and hasattr(raw, "prompt"):
        mask, prompt, negative = raw.mask, raw.prompt, getattr(raw, "negative", "")
        strength, loras = getattr(raw, "strength", 1.0), getattr(raw, "loras", ())
        name = getattr(raw, "name", "") or getattr(raw, "layer_id", "") or "region"
    else:
        values = tuple(raw)
        mask, prompt, negative, strength, loras = values[:5]
        name = values[6] if len(values) > 6 else "region"
    return RegionInput(
        mask=_as_mask(mask, width, height, f"region {name!r}"),
        prompt=str(prompt or ""),
        negative=str(negative or ""),
        strength=float(strength),
        loras=_prepare_loras(loras or (), f"region {name!r}"),
        name=str(name),
    )


def _prepare_loras(loras: Any, where: str) -> tuple[LoraSpec, ...]:
    out = []
    for item in loras or ():
        if isinstance(item, LoraSpec):
            out.append(item)
            continue
        name = getattr(item, "name", None)
        weight = getattr(item, "weight", None)
        if name is None:
            try:
                name, weight = item[0], (item[1] if len(item) > 1 else 1.0)
            except (TypeError, IndexError, KeyError):
                raise RequestError(f"A LoRA entry in {where} is not a name with a weight: {item!r}.") from None
        try:
            weight = float(1.0 if weight is None else weight)
        except (TypeError, ValueError):
            raise RequestError(f"LoRA {name!r} in {where} has a weight that is not a number: {weight!r}.") from None
        if not str(name).strip():
            raise RequestError(f"A LoRA in {where} has no name.")
        out.append(LoraSpec(name=str(name), weight=weight))
    return tuple(out)


def _prepare_collage_alpha(composition: Any, width: int, height: int) -> np.ndarray:
    alpha = getattr(composition, "collage_alpha", None)
    if alpha is None or np.asarray(alpha).size == 0 or not _painted(alpha):
        raise RequestError("Refine needs collage pieces: import or paste images as collage layers first.")
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.ndim == 2:
        alpha = alpha[None]
    if alpha.shape[1:] != (height, width):
        raise RequestError(f"The collage alpha stack is {alpha.shape[1]}x{alpha.shape[2]}, not {height}x{width}.")
    return np.clip(alpha, 0.0, 1.0)


def _prepare_references(composition: Any) -> tuple[np.ndarray, ...]:
    out = []
    for image in getattr(composition, "references", None) or ():
        image = getattr(image, "image", image)  # a (layer id, image) record or the array itself
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise RequestError(f"A reference image has shape {image.shape}; it must be an RGB or RGBA picture.")
        out.append(_over_white(image))
    return tuple(out)


def _prepare_annotation(composition: Any, width: int, height: int) -> np.ndarray | None:
    image = getattr(composition, "annotation_image", None)
    if image is None:
        return None
    image = np.asarray(image)
    if image.shape != (height, width, 4):
        raise RequestError(f"The annotation raster is {image.shape}, not {height}x{width} RGBA.")
    if not image[..., 3].any():
        return None
    return image.astype(np.uint8, copy=False)


def _over_white(image: np.ndarray) -> np.ndarray:
    if image.shape[2] == 3:
        return image.astype(np.uint8, copy=False)
    alpha = image[..., 3:4].astype(np.float32) / 255.0
    rgb = image[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _as_mask(mask: Any, width: int, height: int, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != (height, width):
        raise RequestError(f"The mask of {what} is {mask.shape}, not the canvas size {height}x{width}.")
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / np.float32(255)
    return np.clip(mask.astype(np.float32, copy=False), 0.0, 1.0)


def _painted(mask: Any) -> bool:
    mask = np.asarray(mask)
    if mask.size == 0:
        return False
    if mask.dtype == np.uint8:
        return bool(mask.any())
    return bool((mask > MASK_EPSILON).any())
