"""The flow loop's VAE encoding: pixels to latents scaled and shifted like the loop's latents."""

from __future__ import annotations

from inference.flow.components import FlowModel


def encode_pixels(model: FlowModel, pixels, device):
    """Clean latents (the distribution's mode) of a 1x3xHxW [-1, 1] tensor, scaled like the loop's latents."""
    import torch

    vae = model.vae
    latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents.float() - shift) * vae.config.scaling_factor).to(torch.float32)
