"""Warnings about regions that cannot work as drawn (SPEC §2), emitted as `Notice` events.

Two things go wrong silently otherwise:

- A region smaller than one cell of the model's coarsest cross-attention level. Masks are
  max-pooled down to every attention resolution (so the region survives there), but at that level
  its prompt then reaches a whole cell: the prompt bleeds into the surroundings, and the region
  itself is too small for the model to draw much in. SD1.5's coarsest cross-attention runs at 1/64
  of the picture (8x8 cells at 512 px), SDXL's at 1/32.
- A region fully hidden by the regions above it. Precedence follows the layer order: regions later
  in the request are painted on top (see `apply_precedence`), so a region under an opaque one of
  the same shape has nothing left to say.

Pure numpy, plus the UNet's module names for the attention levels.
"""

from __future__ import annotations

import re

import numpy as np

from inference.sd.masks import mask_bbox

VISIBLE = 1.0 / 512  # a mask weight below this counts as "not there" (8-bit masks step by 1/255)


def apply_precedence(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Later masks lie on top of earlier ones, like layers: each mask keeps what those above leave.

    effective_i = mask_i * prod_{j > i} (1 - mask_j). A soft (feathered) mask on top lets the
    regions below show through in proportion, so overlaps blend over the feather instead of
    switching hard.
    """
    effective: list[np.ndarray] = []
    uncovered = None
    for mask in reversed(masks):
        mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
        effective.append(mask if uncovered is None else mask * uncovered)
        uncovered = (1.0 - mask) if uncovered is None else uncovered * (1.0 - mask)
    effective.reverse()
    return effective


def cross_attention_levels(unet) -> list[int]:
    """The resolution level (0 = latent size, k = 1/2^k of it) of each cross-attention layer of a UNet.

    Read from diffusers' module names: down_blocks.i is level i, the mid block is the deepest down
    level, up_blocks.j mirrors down level (n - 1 - j). Works for any UNet2DConditionModel shape.
    """
    config = unet.config
    down_count = len(config.down_block_types)
    up_count = len(config.up_block_types)
    levels = []
    for name, module in unet.named_modules():
        if getattr(module, "is_cross_attention", False) is not True:
            continue
        match = re.match(r"(down_blocks|up_blocks)\.(\d+)\.", name)
        if name.startswith("mid_block."):
            levels.append(down_count - 1)
        elif match and match.group(1) == "down_blocks":
            levels.append(int(match.group(2)))
        elif match:
            levels.append(up_count - 1 - int(match.group(2)))
    return levels


def deepest_attention_cell(unet, vae_scale_factor: int) -> int:
    """Side in pixels of one cell of the coarsest cross-attention level (64 for SD1.5, 32 for SDXL)."""
    levels = cross_attention_levels(unet)
    deepest = max(levels) if levels else 0
    return int(vae_scale_factor) * 2**deepest


def region_notices(masks: list[np.ndarray], effective: list[np.ndarray], cell: int, *,
                   what: str = "region", level_name: str = "the model's coarsest attention level") -> list[str]:
    """One sentence per region that is empty, smaller than `cell` px, or hidden by the regions above it.

    `masks` are the regions as drawn and `effective` what precedence leaves of them (same order);
    both at the same pixel size. Regions are numbered from 1 in request order.
    """
    notices = []
    for number, (mask, visible) in enumerate(zip(masks, effective), start=1):
        drawn = mask > VISIBLE
        if not drawn.any():
            notices.append(f"{what.capitalize()} {number} has an empty mask and is ignored.")
            continue
        if not (visible > VISIBLE).any():
            notices.append(
                f"{what.capitalize()} {number} is fully hidden by the {what}s above it (later {what}s are on top)"
                " and has no effect."
            )
            continue
        x0, y0, x1, y1 = mask_bbox(drawn.astype(np.float32))
        width, height = x1 - x0, y1 - y0
        if width < cell or height < cell:
            notices.append(
                f"{what.capitalize()} {number} is only {width}x{height} px, smaller than one {cell}-px cell of"
                f" {level_name}: its prompt will bleed into its surroundings; draw it larger."
            )
    return notices
