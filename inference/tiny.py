"""Tiny random-weight Stable Diffusion models built in code (`builtin:tiny-*`).

They exist for tests and for trying the whole workflow before real weights are installed: the
components have the real shapes and wiring (8x VAE with four blocks, CLIP tokenizer with the real
vocabulary, SDXL's two text encoders and text_time embedding, 9-channel inpaint UNets) but tiny
widths, so a 64x64 generation takes a fraction of a second on a CPU. Their output is noise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from inference.api import ModelError
from inference.components import SDModel

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "resources" / "tokenizer"
FAMILIES = ("sd15", "sdxl")

# The pristine scheduler config of Stable Diffusion checkpoints; samplers are built from it.
SD_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "prediction_type": "epsilon",
    "trained_betas": None,
}

# Five layers so that clip_skip 2 (and SDXL's penultimate default + 1) pick distinct layers.
TEXT_ENCODER_LAYERS = 5
TEXT_HIDDEN = 32


def builtin_name(family: str, inpaint: bool) -> str:
    return f"builtin:tiny-{family}" + ("-inpaint" if inpaint else "")


def build_tiny(family: str, inpaint: bool = False, seed: int = 0) -> SDModel:
    """A deterministic random-weight SD1.5- or SDXL-shaped model (CPU, float32)."""
    if family not in FAMILIES:
        raise ModelError(f"There is no built-in tiny model of family {family!r}; use one of {', '.join(FAMILIES)}.")
    import torch

    # A private RNG stream: building a model must not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = prepare_tokenizer()
        text_encoder = prepare_text_encoder(with_projection=False, act="quick_gelu")
        tokenizer_2 = text_encoder_2 = None
        if family == "sdxl":
            tokenizer_2 = prepare_tokenizer(pad_token="!")
            text_encoder_2 = prepare_text_encoder(with_projection=True, act="gelu")
        unet = prepare_unet(family, in_channels=9 if inpaint else 4)
        vae = prepare_vae(family)
    for module in (text_encoder, text_encoder_2, unet, vae):
        if module is not None:
            module.eval().requires_grad_(False)
    name = builtin_name(family, inpaint)
    return SDModel(
        name=name,
        family=family,
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_config=dict(SD_SCHEDULER_CONFIG),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        model_hash=hashlib.sha256(f"{name}:{seed}".encode()).hexdigest()[:10],
        builtin=True,
        device="cpu",
        dtype=torch.float32,
        extra={"seed": seed},
    )


def prepare_tokenizer(pad_token: str | None = None):
    from transformers import CLIPTokenizer

    kwargs = {"model_max_length": 77}
    if pad_token is not None:
        kwargs["pad_token"] = pad_token  # SDXL's OpenCLIP encoder pads with "!" (id 0), not end-of-text
    return CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"), **kwargs)


def prepare_text_encoder(*, with_projection: bool, act: str):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=TEXT_ENCODER_LAYERS,
        projection_dim=TEXT_HIDDEN,
        max_position_embeddings=77,
        hidden_act=act,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config)


def prepare_unet(family: str, in_channels: int):
    from diffusers import UNet2DConditionModel

    common = dict(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        norm_num_groups=8,
    )
    if family == "sd15":
        # Cross-attention at the high resolution, like SD1.5's first blocks.
        return UNet2DConditionModel(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TEXT_HIDDEN,
            attention_head_dim=(2, 4),
            **common,
        )
    # SDXL: cross-attention at the low resolution, two concatenated encoders, pooled text + time ids.
    time_embed_dim = 8
    return UNet2DConditionModel(
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * TEXT_HIDDEN,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + TEXT_HIDDEN,
        transformer_layers_per_block=(1, 2),
        **common,
    )


def prepare_vae(family: str):
    from diffusers import AutoencoderKL

    # Four blocks: an 8x downscale like the real VAEs, so latent-grid logic is exercised for real.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215 if family == "sd15" else 0.13025,
        force_upcast=family == "sdxl",
    )
