"""The loaded pieces of a Stable Diffusion model, as the denoise loop consumes them.

`inference.models` produces these (from single files, diffusers folders or `inference.tiny`);
`inference.sd` runs them. Nothing here loads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SDModel:
    name: str
    family: str  # "sd15" or "sdxl"
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler_config: dict  # pristine scheduler config; samplers are built with Cls.from_config(this)
    text_encoder_2: Any = None  # SDXL: CLIPTextModelWithProjection
    tokenizer_2: Any = None
    model_hash: str = ""  # A1111-style short hash for the PNG parameters
    builtin: bool = False  # random weights: output is noise and the UI says so
    device: str = "cpu"
    dtype: Any = None  # torch dtype of unet/text encoders
    extra: dict = field(default_factory=dict)  # loaded LoRA adapters, embeddings, TAESD decoder...

    @property
    def inpaint(self) -> bool:
        """A dedicated 9-channel inpaint UNet (latents + mask + masked-image latents)."""
        return int(self.unet.config.in_channels) == 9

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)
