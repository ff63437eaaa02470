"""Inpaint (SPEC §3) as an extension of the denoise loop.

Geometry, in order:
- The request mask (1 = regenerate) is inverted for mask_mode="not_masked".
- inpaint_area="only_masked": the mask's bounding box + `padding` px, grown to the request's aspect,
  is cut from the canvas and resized to width x height; "whole": the canvas is the generation (a
  request of another size than the canvas scales the whole canvas there: the crop is all of it).
- In generation space the mask is dilated to whole 8-px latent cells (so every painted pixel lies in
  a regenerated latent pixel; no seam where the painted edge cuts a cell), then blurred by
  `mask_blur` (converted to generation pixels). That blurred mask is the composite weight; the
  latent pixels it touches are the ones the model regenerates.
- After the decode the generation is (optionally colour-matched and) resized back into the crop and
  composited over the canvas image with the blurred mask. Where the blurred mask is 0, the output
  is the input, byte for byte.

Latents: masked_content "fill" pre-fills the hole from its surroundings before encoding, "original"
encodes as is, "latent_noise" replaces masked latents with fresh noise, "latent_nothing" zeroes them.
4-channel models hold unmasked latents to the re-noised original every step (`StrengthBlend`);
9-channel inpaint models get the mask and the masked-image latents as extra input channels.
"""

from __future__ import annotations

import math

import numpy as np

from inference.api import RequestError
from inference.sd.blend import StrengthBlend
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.masks import (
    cell_max,
    color_match,
    composite,
    crop_region,
    dilate,
    dilate_to_grid,
    fill_masked,
    gaussian_blur,
    mask_bbox,
    resize_image,
    resize_mask,
)

COLOR_MATCH_BAND = 16  # px of original around the regenerated area that colour match compares against


def prepare_inpaint_mask(request) -> np.ndarray:
    """The request mask as "1 = regenerate", after mask_mode."""
    mask = np.asarray(request.mask, dtype=np.float32)
    if request.mask_mode == "not_masked":
        mask = 1.0 - mask
    return np.clip(mask, 0.0, 1.0)


def crop_scale(box: tuple[int, int, int, int], ctx: DenoiseContext) -> float:
    """Canvas pixels per generation pixel of a crop box, the larger of the two axes."""
    x0, y0, x1, y1 = box
    return max((x1 - x0) / ctx.width, (y1 - y0) / ctx.height)


def crop_margin(padding: int, mask_blur: float, cell: int, scale: float) -> int:
    """Canvas px around the mask's box an only_masked crop takes: `padding`, the blur's feather and a
    latent cell (+3 px of resampling) at the crop's scale (canvas px per generation px; 0: the first guess)."""
    feather = math.ceil(3.0 * float(mask_blur))
    grid = cell if scale <= 0 else math.ceil((cell + 3) * scale)
    return int(padding) + feather + grid


def natural_crop_box(mask: np.ndarray, padding: int, mask_blur: float, cell: int = 8) -> tuple[int, int, int, int]:
    """The only_masked crop of a generation at the crop's own size (scale 1), before it is grown to the
    generation's aspect: what the request builder sizes the generation from."""
    box = mask_bbox(mask)
    if box is None:
        raise RequestError("The inpaint mask is empty: paint the area to regenerate.")
    margin = crop_margin(padding, mask_blur, cell, 1.0)
    height, width = mask.shape[:2]
    x0, y0, x1, y1 = box
    return max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, width), min(y1 + margin, height)


def weight_box(weight: np.ndarray) -> tuple[int, int, int, int]:
    """The (x0, y0, x1, y1) box of the pixels a composite weight lets change ((0, 0, 0, 0): none)."""
    ys, xs = np.nonzero(weight > 0)
    if ys.size == 0:
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


class InpaintExtension(LoopExtension):
    """Regenerate under the mask; paste everything else back from the original."""

    def __init__(self, mask: np.ndarray, *, masked_content: str = "original", inpaint_area: str = "whole",
                 padding: int = 32, mask_blur: int = 4, color_match: bool = False):
        self.mask = mask  # canvas size, 1 = regenerate (mask_mode already applied)
        self.masked_content = masked_content
        self.inpaint_area = inpaint_area
        self.padding = int(padding)
        self.mask_blur = float(mask_blur)
        self.color_match = color_match
        # Set while preparing:
        self.composite_weight: np.ndarray | None = None  # canvas size, the blurred mask
        self.generation_weight: np.ndarray | None = None  # generation size, the blurred mask
        self.generation_grid_mask: np.ndarray | None = None  # generation size, mask dilated to the grid
        self.latent_mask: np.ndarray | None = None  # latent size, 1 = regenerated latent pixel
        self.blend: StrengthBlend | None = None

    @classmethod
    def from_request(cls, request) -> InpaintExtension:
        return cls(
            prepare_inpaint_mask(request),
            masked_content=request.masked_content,
            inpaint_area=request.inpaint_area,
            padding=request.padding,
            mask_blur=request.mask_blur,
            color_match=request.color_match,
        )

    # ---- pixel space --------------------------------------------------------------------------

    def prepare_image(self, ctx: DenoiseContext) -> None:
        canvas = ctx.canvas_image
        if canvas is None:
            raise RequestError("Inpainting needs an input image.")
        if self.mask.shape != canvas.shape[:2]:
            raise RequestError("The inpaint mask and the image have different sizes.")
        if not (self.mask > 0).any():
            raise RequestError("The inpaint mask is empty: paint the area to regenerate.")
        canvas_h, canvas_w = self.mask.shape
        if self.inpaint_area == "only_masked":
            ctx.crop_box = self.choose_crop_box(ctx)
        elif (canvas_h, canvas_w) != (ctx.height, ctx.width):
            # The whole canvas at another generation size (a canvas far from the model's native size):
            # the crop is all of it, scaled there and back; the paste-back keeps the unmasked bytes.
            ctx.crop_box = (0, 0, canvas_w, canvas_h)
        ctx.source_image = ctx.to_generation_space(canvas, is_mask=False)
        ctx.init_image = ctx.source_image.copy()
        self.prepare_masks(ctx)
        if self.masked_content == "fill":
            ctx.init_image = fill_masked(ctx.init_image, self.generation_grid_mask)

    def choose_crop_box(self, ctx: DenoiseContext) -> tuple[int, int, int, int]:
        """The mask's box grown by the feather (blur, grid cells, resampling) and then by `padding`,
        so the blurred mask falls to zero inside the crop and the paste-back has no hard edge."""
        cell = ctx.model.vae_scale_factor
        box = crop_region(self.mask, crop_margin(self.padding, self.mask_blur, cell, 0.0), ctx.width, ctx.height)
        for _ in range(2):  # the crop's scale sets how wide a latent cell is on the canvas
            scale = max(1.0, crop_scale(box, ctx))
            box = crop_region(self.mask, crop_margin(self.padding, self.mask_blur, cell, scale), ctx.width, ctx.height)
        return box

    def prepare_masks(self, ctx: DenoiseContext) -> None:
        cell = ctx.model.vae_scale_factor
        generation_mask = ctx.to_generation_space(self.mask, is_mask=True)
        self.generation_grid_mask = dilate_to_grid(generation_mask, cell)
        # mask_blur is given in canvas pixels; the crop may be scaled on its way to the generation.
        # A crop clamped by the image edge can be stretched unevenly; the larger scale keeps the
        # feather within mask_blur on the canvas along both axes.
        scale = crop_scale(ctx.crop_box, ctx) if ctx.crop_box is not None else 1.0
        self.generation_weight = gaussian_blur(self.generation_grid_mask, self.mask_blur / scale)
        self.latent_mask = (cell_max(self.generation_weight, cell) > 0).astype(np.float32)
        self.composite_weight = self.to_canvas_weight(ctx, self.generation_weight)

    def to_canvas_weight(self, ctx: DenoiseContext, weight: np.ndarray) -> np.ndarray:
        if ctx.crop_box is None:
            return weight
        x0, y0, x1, y1 = ctx.crop_box
        canvas_weight = np.zeros(self.mask.shape, dtype=np.float32)
        canvas_weight[y0:y1, x0:x1] = resize_mask(weight, x1 - x0, y1 - y0)
        return canvas_weight

    # ---- latent space -------------------------------------------------------------------------

    def prepare(self, ctx: DenoiseContext) -> None:
        import torch

        latent_mask = torch.from_numpy(self.latent_mask)[None, None].to(ctx.device)
        if self.masked_content == "latent_noise":
            fresh = torch.randn(ctx.image_latents.shape, generator=ctx.generator, dtype=torch.float32)
            ctx.image_latents = ctx.image_latents * (1 - latent_mask) + fresh.to(ctx.device) * latent_mask
        elif self.masked_content == "latent_nothing":
            ctx.image_latents = ctx.image_latents * (1 - latent_mask)
        if ctx.model.inpaint:
            ctx.conditioning_channels = ctx.inpaint_conditioning(ctx.init_image, self.generation_grid_mask, latent_mask)
        else:
            self.blend = StrengthBlend(latent_strength=self.latent_mask * ctx.strength)
            self.blend.prepare(ctx)

    def after_step(self, ctx: DenoiseContext, step_index: int, latents):
        if self.blend is None:
            return latents
        return self.blend.after_step(ctx, step_index, latents)

    # ---- back to the canvas -------------------------------------------------------------------

    def finish(self, ctx: DenoiseContext, image: np.ndarray) -> np.ndarray:
        if self.color_match:
            image = self.match_colors(ctx, image)
        canvas = ctx.canvas_image
        ctx.changed_box = weight_box(self.composite_weight)
        if ctx.crop_box is None:
            return composite(canvas, image, self.composite_weight)
        x0, y0, x1, y1 = ctx.crop_box
        placed = canvas.copy()
        placed[y0:y1, x0:x1] = resize_image(image, x1 - x0, y1 - y0)
        return composite(canvas, placed, self.composite_weight)

    def match_colors(self, ctx: DenoiseContext, image: np.ndarray) -> np.ndarray:
        """Match the regenerated area's per-channel mean/std to the original pixels just around it."""
        region = self.generation_weight > 0
        surroundings = dilate(region, COLOR_MATCH_BAND) & ~region
        if not surroundings.any():
            ctx.notify("Colour match was skipped: the mask leaves no surrounding pixels to match.")
            return image
        return color_match(image, ctx.source_image, region, surroundings)


class WholeImageConditioning(LoopExtension):
    """9-channel inpaint models outside inpainting (txt2img, img2img): everything counts as masked.

    Like A1111, the mask input is all ones and the masked image is uniform grey, so the model
    generates freely; img2img still starts from the noised image latents.
    """

    def prepare(self, ctx: DenoiseContext) -> None:
        ctx.conditioning_channels = ctx.inpaint_conditioning(None, None, None)
