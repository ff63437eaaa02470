"""The one request validation: every value of a `GenerationRequest` checked before any model work.

The CLI (through the request builder), the GUI's request builder, `Engine.run` and the edit path
all call `validate_request`, so an invalid value gets the same sentence wherever it comes from.
The choices come from the `Literal` types in inference.api and the limits from its constants;
nothing here knows a second copy of them. Each failure is a `RequestError` with one sentence
naming the setting the way the generation panel does.
"""

from __future__ import annotations

import math
from typing import get_args

import numpy as np

from inference.api import (
    CFG_RANGE,
    IMAGE_GUIDANCE_RANGE,
    MAX_BATCH,
    MAX_CANVAS_PIXELS,
    MAX_CANVAS_SIDE,
    MAX_CLIP_SKIP,
    MAX_MASK_BLUR,
    MAX_PIXELS,
    MAX_PROMPT_CHARS,
    MAX_REFINE_EDGE_WIDTH,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    REGION_STRENGTH_RANGE,
    TRUE_CFG_RANGE,
    GenerationRequest,
    InpaintArea,
    LoraSpec,
    MaskedContent,
    MaskMode,
    Mode,
    PreviewMethod,
    RegionMethod,
    RequestError,
    Sampler,
)
from inference.families import Family

# (request field, what the user calls it, the Literal of its choices)
CHOICES = (
    ("mode", "mode", Mode),
    ("mask_mode", "mask mode", MaskMode),
    ("masked_content", "masked content", MaskedContent),
    ("inpaint_area", "inpaint area", InpaintArea),
    ("region_method", "region method", RegionMethod),
    ("preview", "preview method", PreviewMethod),
)
# (request field, label, lowest, highest): whole numbers
WHOLE_NUMBERS = (
    ("steps", "Steps", 1, MAX_STEPS),
    ("batch_count", "Batch count", 1, MAX_BATCH),
    ("clip_skip", "Clip skip", 1, MAX_CLIP_SKIP),
    ("padding", "Inpaint padding", 0, MAX_SIDE),
    ("mask_blur", "Mask blur", 0, MAX_MASK_BLUR),
    ("refine_edge_width", "Refine edge width", 0, MAX_REFINE_EDGE_WIDTH),
)
# (request field, label, lowest, highest): finite numbers
NUMBERS = (
    ("cfg", "CFG scale", *CFG_RANGE),
    ("strength", "Denoising strength", 0.0, 1.0),
    ("composite_step", "Composite step", 0.0, 1.0),
    ("refine_edge_strength", "Refine edge strength", 0.0, 1.0),
    ("refine_inside_strength", "Refine inside strength", 0.0, 1.0),
    ("refine_background_strength", "Refine background strength", 0.0, 1.0),
    ("image_guidance_scale", "Image guidance scale", *IMAGE_GUIDANCE_RANGE),
    ("true_cfg_scale", "True CFG scale", *TRUE_CFG_RANGE),
)


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def validate_request(request: GenerationRequest) -> None:
    """Raise RequestError with one sentence for the first thing wrong with the request."""
    for name, label, choices in CHOICES:
        validate_choice(label, getattr(request, name), get_args(choices))
    if not request.lcm:  # LCM requests run the LCM sampler whatever the field says
        validate_choice("sampler", request.sampler, get_args(Sampler))
    if not isinstance(request.model, str) or not request.model.strip():
        raise RequestError("No model is chosen: pick one in the generation panel.")
    validate_size(request.width, request.height, "The requested size")
    for name, label, low, high in WHOLE_NUMBERS:
        validate_whole_number(label, getattr(request, name), low, high)
    for name, label, low, high in NUMBERS:
        validate_number(label, getattr(request, name), low, high)
    if not is_int(request.seed) or not -1 <= request.seed <= MAX_SEED:
        raise RequestError(f"Seed must be -1 (random) or a whole number from 0 to {MAX_SEED}, not {request.seed!r}.")
    validate_text("prompt", request.prompt)
    validate_text("negative prompt", request.negative)
    validate_loras(request.loras, "the LoRA list")
    validate_parts(request)
    validate_images(request)


MODE_NAMES = {"regions": "Regions (attention and latent couple) are"}


def validate_family_supports(request: GenerationRequest, entry: Family, model: str) -> None:
    """Refuse, before loading, a mode or region method the family's registry entry does not list."""
    supports = entry.supports
    if request.mode in supports.modes:
        if request.mode == "regions" and request.region_method not in supports.region_methods:
            raise RequestError(
                f"The model {model!r} is a {entry.label} model, which cannot run {request.region_method} regions "
                f"(it runs: {', '.join(supports.region_methods) or 'none'})."
            )
        return
    if supports.modes == ("edit",):
        raise RequestError(f"The model {model!r} is a {entry.name} model, which runs in the edit mode only.")
    if request.mode in supports.planned:
        what = MODE_NAMES.get(request.mode, f"The {request.mode} mode")
        raise RequestError(f"{what} not yet for {entry.label}: the model {model!r} runs {', '.join(supports.modes)}.")
    raise RequestError(
        f"The model {model!r} is a {entry.label} model, which cannot run the {request.mode} mode "
        f"(it runs: {', '.join(supports.modes)})."
    )


def validate_choice(label: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RequestError(f"Unknown {label} {value!r}; choose one of: {', '.join(choices)}.")


def validate_whole_number(label: str, value, low: int, high: int) -> None:
    if not is_int(value) or not low <= value <= high:
        raise RequestError(f"{label} must be a whole number from {low} to {high}, not {value!r}.")


def validate_number(label: str, value, low: float, high: float) -> None:
    if not is_number(value) or not low <= value <= high:
        raise RequestError(f"{label} must be a number from {low:g} to {high:g}, not {value!r}.")


def validate_size(width, height, what: str) -> None:
    if not is_int(width) or not is_int(height) or width <= 0 or height <= 0:
        raise RequestError(f"{what} must be positive whole numbers of pixels, not {width!r} x {height!r}.")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise RequestError(f"{what} {width}x{height} is larger than the limit of {MAX_SIDE} pixels per side.")
    if width % 8 or height % 8:
        raise RequestError(f"{what} {width}x{height} is not a multiple of 8 pixels on each side.")


def encodable_text(text: str) -> str:
    """The text with lone surrogates (valid in a project's JSON, "\\ud800", but no character)
    replaced by U+FFFD; the tokenizers fail on them deep inside with a UnicodeEncodeError."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # utf-16 with surrogatepass pairs up halves that belong together and marks the rest.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def validate_text(label: str, text, where: str = "") -> None:
    owner = f"{where} " if where else ""
    if not isinstance(text, str):
        raise RequestError(f"The {owner}{label} must be text.")
    if len(text) > MAX_PROMPT_CHARS:
        raise RequestError(f"The {owner}{label} is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}.")


def validate_loras(loras, where: str) -> None:
    for lora in loras:
        if not isinstance(lora, LoraSpec) or not isinstance(lora.name, str) or not lora.name.strip():
            raise RequestError(f"A LoRA in {where} has no name.")
        if not is_number(lora.weight) or not (lora.unet_weight is None or is_number(lora.unet_weight)):
            raise RequestError(f"The LoRA {lora.name!r} in {where} has a weight that is not a finite number.")


def validate_parts(request: GenerationRequest) -> None:
    """Regions and composite pieces: their prompts, strengths and LoRAs (masks in validate_images)."""
    low, high = REGION_STRENGTH_RANGE
    for index, region in enumerate(request.regions, start=1):
        where = f"region {index}"
        validate_text("prompt", region.prompt, where)
        validate_text("negative prompt", region.negative, where)
        if not is_number(region.strength) or not low <= region.strength <= high:
            raise RequestError(
                f"The strength of {where} must be a number from {low:g} to {high:g}, not {region.strength!r}."
            )
        validate_loras(region.loras, where)
    for index, piece in enumerate(request.pieces, start=1):
        validate_text("prompt", piece.prompt, f"piece {index}")
        validate_text("negative prompt", piece.negative, f"piece {index}")


def validate_images(request: GenerationRequest) -> None:
    image = request.init_image
    canvas_shape = (request.height, request.width)
    # Only inpaint (alone, under regions, or an inpaint sketch) scales its canvas, or a crop of it,
    # to the generation size and pastes the result back: its canvas may have another size.
    crops_to_generation = (
        (request.mask is not None and request.mode in ("inpaint", "regions"))
        or (request.sketch_mask is not None and request.mode in ("generate", "inpaint"))
    )
    if image is not None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RequestError("The input image must be an HxWx3 array of 8-bit RGB.")
        largest = MAX_CANVAS_SIDE if crops_to_generation else MAX_SIDE
        if image.shape[0] > largest or image.shape[1] > largest:
            raise RequestError(f"The input image {image.shape[1]}x{image.shape[0]} is larger than {largest} pixels per side.")
        if image.shape[0] * image.shape[1] > MAX_CANVAS_PIXELS:
            raise RequestError(f"The input image {image.shape[1]}x{image.shape[0]} is larger than the limit of "
                               f"{MAX_CANVAS_PIXELS // 1_000_000} million pixels.")
        if image.shape[:2] != canvas_shape and not crops_to_generation and request.mode != "edit":
            raise RequestError(
                f"The input image is {image.shape[1]}x{image.shape[0]} but the request is {request.width}x{request.height}."
            )
        canvas_shape = image.shape[:2]
    sketched = request.sketch_mask is not None  # an inpaint sketch's strokes are a mask of their own
    if request.mode == "inpaint" and (image is None or (request.mask is None and not sketched)):
        raise RequestError("Inpainting needs both an input image and a mask.")
    if request.mode == "edit" and image is None:
        raise RequestError("Edit mode needs a picture to edit, but the canvas is empty.")
    if request.mask is not None:
        validate_mask("The inpaint mask", request.mask, canvas_shape)
        regenerated = request.mask if request.mask_mode == "masked" else 1.0 - request.mask
        if request.mode == "inpaint" and not sketched and not (regenerated > 0).any():
            raise RequestError("The inpaint mask is empty: paint the area to regenerate.")
    if request.sketch_mask is not None:
        validate_mask("The sketch mask", request.sketch_mask, canvas_shape)
    for index, region in enumerate(request.regions, start=1):
        validate_mask(f"The mask of region {index}", region.mask, canvas_shape)
    for index, piece in enumerate(request.pieces, start=1):
        validate_mask(f"The mask of piece {index}", piece.mask, canvas_shape)
    if request.collage_alpha is not None:
        alpha = request.collage_alpha
        if not isinstance(alpha, np.ndarray) or alpha.ndim != 3 or alpha.shape[1:] != canvas_shape:
            raise RequestError("The collage alpha must be an N x H x W array at the canvas size.")


def validate_mask(what: str, mask, shape: tuple[int, int]) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise RequestError(f"{what} must be a 2-D HxW array.")
    if mask.shape != tuple(shape):
        raise RequestError(f"{what} is {mask.shape[1]}x{mask.shape[0]} but the image is {shape[1]}x{shape[0]}.")
    values = mask.astype(np.float32, copy=False)
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise RequestError(f"{what} must hold values between 0 and 1.")
