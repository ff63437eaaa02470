"""FLUX's 2x2 latent packing, in one place.

The flow loop and every extension keep latents spatial (1 x C x h x w, h and w even), exactly as the
SD loop does, so latent blending, per-pixel strength and composites work on them unchanged. Only the
transformer sees the packed form: each 2x2 patch of latent pixels becomes one image token of C*4
features (channel-major: c0's four pixels, then c1's, ...), tokens in row-major order. Conditioning
channels stacked onto the latents (Fill: masked-image latents and the 8x8 pixel mask) pack the same
way, so the packed features of [latents, conditioning] are the concatenation of their packings.
"""

from __future__ import annotations

PATCH = 2  # latent pixels per token side


def pack(latents):
    """B x C x h x w -> B x (h/2 * w/2) x (C * 4)."""
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // PATCH, PATCH, width // PATCH, PATCH)
    return patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, (height // PATCH) * (width // PATCH), channels * PATCH**2)


def unpack(tokens, height: int, width: int):
    """B x (h/2 * w/2) x (C * 4) -> B x C x h x w (latent size h x w)."""
    batch, _, features = tokens.shape
    channels = features // PATCH**2
    patches = tokens.view(batch, height // PATCH, width // PATCH, channels, PATCH, PATCH)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def image_ids(height: int, width: int, device=None, dtype=None):
    """(h/2 * w/2) x 3 rotary position ids of the image tokens: (0, row, column)."""
    import torch

    rows, columns = height // PATCH, width // PATCH
    ids = torch.zeros(rows, columns, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(rows)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(columns)[None, :]
    return ids.reshape(rows * columns, 3).to(device=device, dtype=dtype)


def text_ids(length: int, device=None, dtype=None):
    """length x 3 zeros: FLUX.1 gives text tokens no position of their own."""
    import torch

    return torch.zeros(length, 3, device=device, dtype=dtype)


def pixel_mask_channels(mask, cell: int):
    """B x 1 x H x W pixel mask -> B x (cell*cell) x H/cell x W/cell: each latent pixel carries its
    cell's mask pixels as channels (FLUX.1 Fill's mask input, before packing)."""
    batch, _, height, width = mask.shape
    cells = mask[:, 0].view(batch, height // cell, cell, width // cell, cell)
    return cells.permute(0, 2, 4, 1, 3).reshape(batch, cell * cell, height // cell, width // cell)
