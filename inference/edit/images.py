"""Pixel work around an instruction edit: what the model sees, and how its answer is pasted back.

Plain numpy + Pillow (no torch), so every rule here is unit-testable on its own:
- the annotation markup is alpha-composited onto the picture the model receives;
- the model runs at its native pixel area in the picture's aspect ratio, and the result is
  resized back to the input size;
- with a mask, the result is pasted back only inside the Gaussian-feathered mask; every pixel
  where the feathered mask is 0 is the input byte for byte;
- without a mask the whole picture is the edit area, but annotation strokes that the model merely
  copied through are replaced by the original pixels beneath them (markup never reaches the output).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from inference.api import RequestError

# Mean absolute RGB difference (0..255) under which a stroke pixel counts as "copied through".
COPIED_STROKE_TOLERANCE = 24.0


def as_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """HxWx3 uint8 from an HxWx3 or HxWx4 uint8 array (alpha composited onto white)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise RequestError(f"The {what} must be an 8-bit RGB image (HxWx3 uint8 array).")
    if image.shape[2] == 3:
        return image
    if image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        flattened = image[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(flattened), 0, 255).astype(np.uint8)
    raise RequestError(f"The {what} has {image.shape[2]} channels; an RGB or RGBA image is needed.")


def composite_annotation(image: np.ndarray, annotation: np.ndarray) -> np.ndarray:
    """The picture with the RGBA markup drawn over it (what an edit model is shown)."""
    if annotation.ndim != 3 or annotation.shape[2] != 4 or annotation.dtype != np.uint8:
        raise RequestError("The annotation must be an RGBA image (HxWx4 uint8 array).")
    if annotation.shape[:2] != image.shape[:2]:
        raise RequestError(
            f"The annotation is {annotation.shape[1]}x{annotation.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]}; they must be the same size."
        )
    alpha = annotation[..., 3:4].astype(np.float32) / 255.0
    over = annotation[..., :3].astype(np.float32) * alpha + image.astype(np.float32) * (1.0 - alpha)
    return np.clip(np.rint(over), 0, 255).astype(np.uint8)


def side_by_side(images: list[np.ndarray]) -> np.ndarray:
    """The images in a row, each scaled to the first one's height (Kontext / Qwen-Edit take one image)."""
    height = images[0].shape[0]
    row = [images[0]]
    for image in images[1:]:
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        row.append(resize_rgb(image, width, height))
    return np.concatenate(row, axis=1)


def resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def working_size(
    width: int,
    height: int,
    area: int,
    multiple: int,
    preferred: tuple[tuple[int, int], ...] = (),
) -> tuple[int, int]:
    """(width, height) for the model: its native pixel area in the image's aspect ratio.

    Sides are multiples of `multiple` (VAE factor x patch size). With `preferred` resolutions
    (FLUX.1 Kontext's training buckets) the one closest in aspect ratio wins, as the Kontext
    pipeline's own auto-resize would choose.
    """
    aspect = width / height
    if preferred:
        _, w, h = min((abs(aspect - pw / ph), pw, ph) for pw, ph in preferred)
        return max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)
    w = math.sqrt(area * aspect)
    h = w / aspect
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


def float_to_uint8(image: np.ndarray) -> np.ndarray:
    """A pipeline's float output in [0, 1] as uint8."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def feather_mask(mask: np.ndarray, blur: int) -> np.ndarray:
    """HxW uint8 (0..255): the mask, Gaussian-feathered by `blur` px (PIL radius = standard deviation).

    Quantising to 8 bits first makes "0" exact: pixels far enough from the mask stay 0 after the
    blur, and those are the ones pasted back from the original byte for byte.
    """
    mask8 = np.clip(np.rint(np.asarray(mask, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if blur <= 0:
        return mask8
    return np.asarray(Image.fromarray(mask8, mode="L").filter(ImageFilter.GaussianBlur(radius=blur)))


def paste_back(original: np.ndarray, edited: np.ndarray, feather: np.ndarray) -> np.ndarray:
    """`edited` inside the feathered mask, `original` outside; exact bytes where feather is 0 or 255."""
    weight = feather.astype(np.float32)[..., None] / 255.0
    blended = np.rint(edited.astype(np.float32) * weight + original.astype(np.float32) * (1.0 - weight))
    blended = np.clip(blended, 0, 255).astype(np.uint8)
    out = np.where(feather[..., None] == 0, original, blended)
    return np.where(feather[..., None] == 255, edited, out)


def restore_copied_strokes(
    result: np.ndarray,
    original: np.ndarray,
    model_input: np.ndarray,
    stroke_alpha: np.ndarray,
    tolerance: float = COPIED_STROKE_TOLERANCE,
) -> np.ndarray:
    """Without a mask: put the original pixels back where the model just reproduced the markup.

    A stroke pixel whose result still looks like the annotated input (mean |difference| below
    `tolerance`) was copied through, not edited, so the original pixel underneath returns. Stroke
    pixels the model did repaint keep the model's answer; pixels outside the strokes are untouched.
    """
    strokes = stroke_alpha > 0
    if not strokes.any():
        return result
    difference = np.abs(result.astype(np.int16) - model_input.astype(np.int16)).mean(axis=2)
    copied = strokes & (difference < tolerance)
    return np.where(copied[..., None], original, result)
