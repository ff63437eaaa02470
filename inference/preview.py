"""Latents -> a small RGB preview after every step (SPEC §5).

Two ways, both at *latent* resolution times the decoder's own scale:
- linear (default, weights-free): each latent pixel is mapped to RGB with the family's fixed
  channels x 3 matrix (+ bias), its registry entry's preview factors. The image is H/8 x W/8; the UI scales it up (nearest or smooth, its choice) so the
  preview costs nothing here.
- TAESD: when a tiny-autoencoder decoder is available (`taesd_decoder.safetensors` /
  `taesdxl_decoder.safetensors` as published by madebyollin, a diffusers AutoencoderTiny
  `.safetensors`, or a diffusers AutoencoderTiny folder), it decodes to the full H x W.

Both take the latents exactly as the denoise loop holds them (already multiplied by the VAE's
scaling factor): that is the space the factors were fitted in and the one TAESD decodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inference.api import ModelError
from inference.families import FAMILIES, FamilyRegistry

# The published TAESD decoders all use AutoencoderTiny's default decoder shape.
TAESD_DECODER_SHAPE = dict(num_blocks=(3, 3, 3, 1), block_out_channels=(64, 64, 64, 64), upsampling_scaling_factor=2)


def signed_unit_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> 0..255 bytes."""
    return np.clip(np.rint((rgb + 1.0) * 127.5), 0, 255).astype(np.uint8)


def linear_factors(family: str, families: FamilyRegistry = FAMILIES) -> tuple[np.ndarray, np.ndarray]:
    """(channels x 3 matrix, bias) of the family's registry entry; ModelError when it has none."""
    entry = families.find(family)
    if entry is None or entry.preview is None:
        raise ModelError(f"There are no linear preview factors for model family {family!r}.")
    return np.asarray(entry.preview.rgb, np.float32), np.asarray(entry.preview.bias, np.float32)


def linear_preview(latents, family: str) -> np.ndarray:
    """(1 x C x h x w) latents (tensor or array) -> h x w x 3 uint8 with the family's factors."""
    factors, bias = linear_factors(family)
    array = latents.detach().float().cpu().numpy() if hasattr(latents, "detach") else np.asarray(latents, np.float32)
    if array.ndim == 4:
        array = array[0]
    if array.shape[0] != factors.shape[0]:
        raise ModelError(f"Linear previews need {factors.shape[0]} latent channels, not {array.shape[0]}.")
    rgb = np.einsum("chw,cr->hwr", array.astype(np.float32), factors) + bias
    return signed_unit_to_uint8(rgb)


def prepare_taesd_decoder(path: Path):
    """Load a TAESD decoder (any of the three layouts in the module docstring) as a diffusers DecoderTiny."""
    import torch
    from diffusers.models.autoencoders.vae import DecoderTiny

    path = Path(path)
    shape = dict(TAESD_DECODER_SHAPE)
    latent_channels = 4
    if path.is_dir():
        config_file = path / "config.json"
        weights = next((p for p in sorted(path.glob("*.safetensors"))), None)
        if not config_file.is_file() or weights is None:
            raise ModelError(f"The TAESD folder {path} needs a config.json and a .safetensors file.")
        config = json.loads(config_file.read_text(encoding="utf-8"))
        shape = dict(
            num_blocks=tuple(config.get("num_decoder_blocks", shape["num_blocks"])),
            block_out_channels=tuple(config.get("decoder_block_out_channels", shape["block_out_channels"])),
            upsampling_scaling_factor=int(config.get("upsampling_scaling_factor", 2)),
        )
        latent_channels = int(config.get("latent_channels", 4))
    else:
        weights = path
    state = read_safetensors(weights)
    layers_state = taesd_decoder_layers_state(state, weights)
    first = layers_state.get("0.weight")
    if not path.is_dir() and first is not None and first.ndim == 4:
        latent_channels = int(first.shape[1])  # TAESD 4, TAEF1 (FLUX) 16
    decoder = DecoderTiny(
        in_channels=latent_channels, out_channels=3, act_fn="relu", upsample_fn="nearest", **shape
    )
    try:
        decoder.layers.load_state_dict(layers_state)
    except RuntimeError as error:
        raise ModelError(f"The TAESD decoder {weights.name} does not have the expected layout: {str(error).splitlines()[0]}") from None
    return decoder.eval().requires_grad_(False).to(torch.float32)


def read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises several unrelated types for a bad file
        raise ModelError(f"The TAESD decoder {Path(path).name} could not be read: {error}.") from None


def taesd_decoder_layers_state(state: dict, source: Path) -> dict:
    """Keys of `DecoderTiny.layers` from a diffusers AutoencoderTiny file or an original TAESD decoder file."""
    if any(key.startswith("decoder.layers.") for key in state):
        return {key[len("decoder.layers.") :]: value for key, value in state.items() if key.startswith("decoder.layers.")}
    if any(key.startswith("layers.") for key in state):
        return {key[len("layers.") :]: value for key, value in state.items() if key.startswith("layers.")}
    # The original TAESD decoder is a Sequential that starts with a Clamp module (no weights), which
    # diffusers folds into its forward pass: every layer index moves down by one.
    converted = {}
    for key, value in state.items():
        index, _, rest = key.partition(".")
        if not index.isdigit():
            raise ModelError(f"{Path(source).name} is not a TAESD decoder (unexpected key {key!r}).")
        converted[f"{int(index) - 1}.{rest}"] = value
    return converted


class PreviewRenderer:
    """Turns loop latents into preview images; keeps loaded TAESD decoders for the next generations."""

    def __init__(self) -> None:
        self._taesd: dict[str, object] = {}

    def taesd(self, path: Path | None):
        if path is None:
            return None
        key = str(Path(path).resolve())
        if key not in self._taesd:
            self._taesd[key] = prepare_taesd_decoder(Path(path))
        return self._taesd[key]

    def render(self, latents, family: str, taesd_path: Path | None = None) -> np.ndarray:
        decoder = self.taesd(taesd_path)
        if decoder is None:
            return linear_preview(latents, family)
        return taesd_preview(decoder, latents)

    def clear(self) -> None:
        self._taesd.clear()


def taesd_preview(decoder, latents) -> np.ndarray:
    """Decode (1 x 4 x h x w) loop latents with a TAESD DecoderTiny -> (8h x 8w x 3) uint8."""
    import torch

    with torch.no_grad():
        parameter = next(decoder.parameters())
        if parameter.device != latents.device:
            decoder.to(latents.device)
        image = decoder(latents[:1].to(torch.float32))  # DecoderTiny already returns [-1, 1]
    return signed_unit_to_uint8(image[0].permute(1, 2, 0).float().cpu().numpy())
