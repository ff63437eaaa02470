"""The loaded pieces of a flow-matching transformer model, as the flow loop consumes them.

The loaders (inference/flow/loading.py, the tiny builders) produce these; inference/flow/loop.py
runs them. Nothing here loads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FlowModel:
    name: str
    family: str  # "flux-dev" | "flux-schnell" | "flux-fill" | "zimage"
    transformer: Any  # diffusers FluxTransformer2DModel (ZImageTransformer2DModel for Z-Image)
    vae: Any  # diffusers AutoencoderKL (16 latent channels for FLUX and Z-Image)
    text_encoder: Any  # transformers CLIPTextModel (pooled prompt embedding); Qwen3Model for Z-Image
    tokenizer: Any  # transformers CLIPTokenizer; Qwen2TokenizerFast for Z-Image
    text_encoder_2: Any  # transformers T5EncoderModel (None for Z-Image)
    tokenizer_2: Any  # transformers T5TokenizerFast (None for Z-Image)
    scheduler_config: dict  # pristine FlowMatchEulerDiscreteScheduler config
    model_hash: str = ""
    builtin: bool = False  # random weights: output is noise and the UI says so
    device: str = "cpu"
    dtype: Any = None  # compute dtype of the transformer and text encoders
    extra: dict = field(default_factory=dict)  # loaded LoRA adapters, TAESD decoder, ...
    # The FlowContext subclass that encodes its prompts and calls its transformer (None: FLUX.1's).
    context: Any = None

    @property
    def parts(self) -> dict[str, Any]:
        """The torch modules it has, by attribute name (moved together between devices)."""
        names = ("transformer", "vae", "text_encoder", "text_encoder_2")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    @property
    def inpaint(self) -> bool:
        """FLUX.1 Fill: masked-image latents and the packed mask are extra input channels."""
        return self.family == "flux-fill"

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)
