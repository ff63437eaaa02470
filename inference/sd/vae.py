"""The VAE's side of the SD loop: pixels to scaled latents and back (also used by extensions)."""

from __future__ import annotations

import numpy as np

from inference.components import SDModel


def image_to_tensor(image: np.ndarray):
    """HxWx3 uint8 -> 1x3xHxW float32 in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def ensure_vae_precision(model: SDModel) -> None:
    """fp16 VAEs that declare `force_upcast` (SDXL's original VAE) overflow in half precision: keep
    them in float32 from the first use on (once, rather than converting twice per image)."""
    import torch

    vae = model.vae
    if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        vae.to(torch.float32)


def encode_image(model: SDModel, image: np.ndarray, device):
    """Clean latents of an image (the distribution's mode: deterministic), scaled like the loop's latents."""
    import torch

    ensure_vae_precision(model)
    vae = model.vae
    pixels = image_to_tensor(image).to(device, vae.dtype)
    latents = vae.encode(pixels).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents.float() - shift) * vae.config.scaling_factor).to(torch.float32)


def decode_latents(model: SDModel, latents) -> np.ndarray:
    """Loop latents -> HxWx3 uint8."""
    import torch

    ensure_vae_precision(model)
    vae = model.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    scaled = latents / vae.config.scaling_factor + shift
    pixels = vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
    pixels = ((pixels[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 0).cpu().numpy()
