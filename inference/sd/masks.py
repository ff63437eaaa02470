"""Pixel-space helpers for inpainting and blending: numpy and Pillow only (no OpenCV).

Masks are HxW float32 in [0, 1]; images HxWx3 uint8. Blurs are truncated at three sigma so that a
blurred mask is exactly 0 far from the painted area: the composite relies on those exact zeros to
keep untouched pixels byte-identical.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


DIRECT_BLUR_MAX_SIGMA = 4.0  # above this, three box blurs cost the same at any radius


def gaussian_blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with edges replicated; exactly zero far enough from every non-zero pixel.

    Small sigmas use the true kernel truncated at 3 sigma; larger ones three box blurs of matching
    variance (O(pixels) whatever the radius, support about 3 sigma as well).
    """
    mask = np.asarray(mask, dtype=np.float32)
    if sigma <= 0:
        return mask.copy()
    bbox = mask_bbox(mask)
    if bbox is None:
        return mask.copy()
    # Only the painted area and its reach can become non-zero: blur just that window. Padding the
    # window with its edge equals padding the image wherever the window touches the image border,
    # and is zero (as the image is) elsewhere.
    reach = blur_reach(sigma)
    x0, y0, x1, y1 = bbox
    h, w = mask.shape
    window = (slice(max(y0 - reach, 0), min(y1 + reach, h)), slice(max(x0 - reach, 0), min(x1 + reach, w)))
    out = np.zeros_like(mask)
    out[window] = blur_window(mask[window], sigma)
    return out


def blur_reach(sigma: float) -> int:
    """How far (px) a blurred value can spread: beyond this it is exactly 0."""
    if sigma <= DIRECT_BLUR_MAX_SIGMA:
        return len(gaussian_kernel(sigma)) // 2 + 1
    return sum(box_radii_for_gaussian(sigma)) + 1


def blur_window(mask: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= DIRECT_BLUR_MAX_SIGMA:
        out = mask
        for axis in (0, 1):
            out = convolve_axis(out, gaussian_kernel(sigma), axis)
        # The kernel sums to 1 only up to rounding; keep exact zeros exact.
        out[out < 1e-7] = 0.0
    else:
        out = mask.astype(np.float64)
        for radius in box_radii_for_gaussian(sigma):
            for axis in (0, 1):
                out = box_blur_axis(out, radius, axis)
        out = out.astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def convolve_axis(array: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    radius = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(array, pad, mode="edge")
    length = array.shape[axis]
    out = np.zeros_like(array)
    for offset, weight in enumerate(kernel):
        out += weight * (padded[offset : offset + length] if axis == 0 else padded[:, offset : offset + length])
    return out


def box_radii_for_gaussian(sigma: float, passes: int = 3) -> list[int]:
    """Box radii whose repeated blur has (nearly) the variance of a Gaussian of `sigma` (Kutskir)."""
    ideal_width = math.sqrt(12.0 * sigma * sigma / passes + 1.0)
    lower = int(ideal_width)
    if lower % 2 == 0:
        lower -= 1
    upper = lower + 2
    lower_count = round((12.0 * sigma * sigma - passes * lower * lower - 4 * passes * lower - 3 * passes) / (-4 * lower - 4))
    return [(lower if index < lower_count else upper) // 2 for index in range(passes)]


def box_blur_axis(array: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a window of 2*radius+1 along one axis, from a float64 running sum.

    Over a run of zeros the running sum does not change, so windows there are exactly 0.
    """
    if radius <= 0:
        return array
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius + 1, radius)
    padded = np.pad(array, pad, mode="edge")
    total = np.cumsum(padded, axis=axis)
    length = array.shape[axis]
    width = 2 * radius + 1
    if axis == 0:
        window = total[width : width + length] - total[:length]
    else:
        window = total[:, width : width + length] - total[:, :length]
    return np.maximum(window / width, 0.0)


def cell_max(mask: np.ndarray, cell: int) -> np.ndarray:
    """The maximum of each cell x cell block: (H/cell x W/cell). H and W must be multiples of `cell`."""
    h, w = mask.shape
    return mask.reshape(h // cell, cell, w // cell, cell).max(axis=(1, 3))


def cell_mean(mask: np.ndarray, cell: int) -> np.ndarray:
    h, w = mask.shape
    return mask.reshape(h // cell, cell, w // cell, cell).mean(axis=(1, 3))


def dilate_to_grid(mask: np.ndarray, cell: int) -> np.ndarray:
    """Every cell x cell block takes its maximum: the mask grows to whole latent pixels."""
    return np.repeat(np.repeat(cell_max(mask, cell), cell, axis=0), cell, axis=1)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a square of side 2*radius+1 (max filter)."""
    out = mask.astype(bool)
    if radius <= 0:
        return out
    h, w = out.shape
    for axis, length in ((0, h), (1, w)):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="constant")
        acc = np.zeros_like(out)
        for offset in range(2 * radius + 1):
            acc |= padded[offset : offset + length] if axis == 0 else padded[:, offset : offset + length]
        out = acc
    return out


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float mask; areas far from any non-zero value stay exactly 0."""
    if mask.shape[1] == width and mask.shape[0] == height:
        return mask.astype(np.float32)
    resized = Image.fromarray(mask.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def fill_masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A1111's `fill`: paint the masked area with colours spread in from its surroundings.

    The unmasked pixels are blurred outward at falling radii and layered, so the hole takes the
    average colour of what is around it at several scales; unmasked pixels stay as they were.
    """
    alpha = np.clip(np.rint((1.0 - mask) * 255.0), 0, 255).astype(np.uint8)
    if alpha.min() == 255:
        return image.copy()
    if alpha.max() == 0:
        return image.copy()  # nothing to spread from
    premultiplied = Image.fromarray(np.dstack([image, alpha]), mode="RGBA").convert("RGBa")
    canvas = Image.new("RGBA", premultiplied.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = premultiplied.filter(ImageFilter.GaussianBlur(radius)) if radius else premultiplied
        layer = layer.convert("RGBA")
        for _ in range(repeats):
            canvas.alpha_composite(layer)
    filled = np.asarray(canvas.convert("RGB"))
    return np.where((alpha == 255)[..., None], image, filled)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end-exclusive, of the pixels > 0; None for an empty mask."""
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def expand_crop_region(
    box: tuple[int, int, int, int], target_width: int, target_height: int, image_width: int, image_height: int
) -> tuple[int, int, int, int]:
    """Grow a box to the aspect of the target size, shifting it to stay inside the image (A1111)."""
    x0, y0, x1, y1 = box
    box_ratio = (x1 - x0) / (y1 - y0)
    target_ratio = target_width / target_height
    if box_ratio > target_ratio:
        grow = int(round((x1 - x0) / target_ratio - (y1 - y0)))
        y0 -= grow // 2
        y1 += grow - grow // 2
        if y1 > image_height:
            y0 -= y1 - image_height
            y1 = image_height
        if y0 < 0:
            y1 -= y0
            y0 = 0
        y1 = min(y1, image_height)
    else:
        grow = int(round((y1 - y0) * target_ratio - (x1 - x0)))
        x0 -= grow // 2
        x1 += grow - grow // 2
        if x1 > image_width:
            x0 -= x1 - image_width
            x1 = image_width
        if x0 < 0:
            x1 -= x0
            x0 = 0
        x1 = min(x1, image_width)
    return x0, y0, x1, y1


def crop_region(mask: np.ndarray, padding: int, target_width: int, target_height: int) -> tuple[int, int, int, int]:
    """The only_masked crop: the mask's bounding box + padding, grown to the target aspect, on the image."""
    bbox = mask_bbox(mask)
    if bbox is None:
        raise ValueError("empty mask")
    h, w = mask.shape
    x0, y0, x1, y1 = bbox
    box = (max(x0 - padding, 0), max(y0 - padding, 0), min(x1 + padding, w), min(y1 + padding, h))
    return expand_crop_region(box, target_width, target_height, w, h)


def color_match(generated: np.ndarray, reference: np.ndarray, region: np.ndarray, surroundings: np.ndarray) -> np.ndarray:
    """Shift/scale each channel of `generated` inside `region` so its mean and std match `reference`
    over `surroundings` (boolean masks). The gain is kept within [0.5, 2] so a flat area cannot explode."""
    out = generated.astype(np.float32)
    if not region.any() or not surroundings.any():
        return generated.copy()
    for channel in range(3):
        values = out[..., channel][region]
        target = reference[..., channel][surroundings].astype(np.float32)
        mean, std = float(values.mean()), float(values.std())
        target_mean, target_std = float(target.mean()), float(target.std())
        gain = float(np.clip(target_std / std, 0.5, 2.0)) if std > 1e-3 else 1.0
        out[..., channel][region] = (values - mean) * gain + target_mean
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def composite(original: np.ndarray, generated: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """original * (1 - weight) + generated * weight; where weight is 0 the original bytes are kept as-is."""
    w = weight.astype(np.float32)[..., None]
    blended = original.astype(np.float32) * (1.0 - w) + generated.astype(np.float32) * w
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return np.where(w > 0, blended, original)
