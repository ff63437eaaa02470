"""Tiny random-weight FLUX.1 models built in code (`builtin:tiny-flux-dev`, `-schnell`, `-fill`), and Z-Image (`builtin:tiny-zimage`).

Real diffusers/transformers classes with the real wiring — FluxTransformer2DModel with double- and
single-stream blocks and rotary positions, a 16-channel 8x VAE with FLUX's scale and shift, CLIP-L's
tokenizer with the real vocabulary and T5's — at tiny widths, so a 64x64 generation takes a fraction
of a second on a CPU. dev and Fill have the guidance embedding, schnell not; Fill takes 384 input
features per token (64 latents + 64 masked-image latents + 256 mask). Their output is noise.
"""

from __future__ import annotations

import hashlib

from inference.api import ModelError
from inference.flow.components import FlowModel

VARIANTS = ("dev", "schnell", "fill")
BUILTIN_FLOW_MODELS = {f"builtin:tiny-flux-{variant}": variant for variant in VARIANTS}

# The pristine scheduler configs of the FLUX.1 releases.
FLUX_DEV_SCHEDULER_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
FLUX_SCHNELL_SCHEDULER_CONFIG = {**FLUX_DEV_SCHEDULER_CONFIG, "shift": 1.0, "use_dynamic_shifting": False}
SCHEDULER_CONFIGS = {
    "flux-dev": FLUX_DEV_SCHEDULER_CONFIG,
    "flux-fill": FLUX_DEV_SCHEDULER_CONFIG,
    "flux-schnell": FLUX_SCHNELL_SCHEDULER_CONFIG,
}

CLIP_HIDDEN = 32
T5_HIDDEN = 32
HEADS = 2
HEAD_DIM = 16
ROPE_AXES = (4, 6, 6)  # sums to HEAD_DIM, like FLUX's (16, 56, 56) sums to 128


def build_tiny_flux(variant: str, seed: int = 0, *, double_blocks: int = 1, single_blocks: int = 1) -> FlowModel:
    """A deterministic random-weight FLUX.1-shaped model (CPU, float32)."""
    if variant not in VARIANTS:
        raise ModelError(f"There is no built-in tiny FLUX model {variant!r}; use one of {', '.join(VARIANTS)}.")
    import torch

    from inference.flow.tokenizers import load_t5_tokenizer
    from inference.tiny import prepare_tokenizer

    family = f"flux-{variant}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = prepare_clip_encoder()
        text_encoder_2 = prepare_t5_encoder()
        transformer = prepare_transformer(variant, double_blocks, single_blocks)
        vae = prepare_vae()
    for module in (text_encoder, text_encoder_2, transformer, vae):
        module.eval().requires_grad_(False)
    name = f"builtin:tiny-flux-{variant}"
    return FlowModel(
        name=name,
        family=family,
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=prepare_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=load_t5_tokenizer(),
        scheduler_config=dict(SCHEDULER_CONFIGS[family]),
        model_hash=hashlib.sha256(f"{name}:{seed}".encode()).hexdigest()[:10],
        builtin=True,
        device="cpu",
        dtype=torch.float32,
        extra={"seed": seed},
    )


def prepare_clip_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=CLIP_HIDDEN, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    return CLIPTextModel(config)


def prepare_t5_encoder():
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=32128, d_model=T5_HIDDEN, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
    )
    return T5EncoderModel(config)


def prepare_transformer(variant: str, double_blocks: int, single_blocks: int, *, heads: int = HEADS,
                        head_dim: int = HEAD_DIM, rope_axes: tuple = ROPE_AXES):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=384 if variant == "fill" else 64,
        out_channels=64,
        num_layers=double_blocks,
        num_single_layers=single_blocks,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=T5_HIDDEN,
        pooled_projection_dim=CLIP_HIDDEN,
        guidance_embeds=variant != "schnell",
        axes_dims_rope=rope_axes,
    )


def prepare_vae():
    from diffusers import AutoencoderKL

    # Four blocks: FLUX's 8x downscale, 16 latent channels, its scale and shift, no quant convs.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


# ---- Z-Image (Turbo) ------------------------------------------------------------------------------

ZIMAGE_BUILTIN = "builtin:tiny-zimage"
# Z-Image-Turbo's pristine scheduler config: a fixed shift of 3, no dynamic shifting.
ZIMAGE_SCHEDULER_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "use_dynamic_shifting": False,
    "shift": 3.0,
}
QWEN3_HIDDEN = 32
ZIMAGE_AXES = (4, 6, 6)
ZIMAGE_AXES_LENS = (1536, 512, 512)  # the real model's: caption/frame, rows, columns


def build_tiny_zimage(seed: int = 0, *, layers: int = 2, refiner_layers: int = 1) -> FlowModel:
    """A deterministic random-weight Z-Image-shaped model (CPU, float32): ZImageTransformer2DModel with
    noise and context refiners and the unified [image, caption] layers, a Qwen3 text encoder, the
    Qwen tokenizer with its real vocabulary, and FLUX.1's 16-channel VAE shape."""
    import torch

    from inference.flow.zimage import ZImageContext, load_qwen_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = prepare_qwen3_encoder()
        transformer = prepare_zimage_transformer(layers, refiner_layers)
        vae = prepare_vae()
    for module in (text_encoder, transformer, vae):
        module.eval().requires_grad_(False)
    return FlowModel(
        name=ZIMAGE_BUILTIN,
        family="zimage",
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_qwen_tokenizer(),
        text_encoder_2=None,
        tokenizer_2=None,
        scheduler_config=dict(ZIMAGE_SCHEDULER_CONFIG),
        model_hash=hashlib.sha256(f"{ZIMAGE_BUILTIN}:{seed}".encode()).hexdigest()[:10],
        builtin=True,
        device="cpu",
        dtype=torch.float32,
        extra={"seed": seed},
        context=ZImageContext,
    )


def prepare_qwen3_encoder():
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(
        vocab_size=151936, hidden_size=QWEN3_HIDDEN, intermediate_size=37, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    )
    return Qwen3Model(config)


def prepare_zimage_transformer(layers: int = 2, refiner_layers: int = 1, *, heads: int = 2,
                               axes: tuple = ZIMAGE_AXES):
    from diffusers import ZImageTransformer2DModel

    return ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=heads * sum(axes),
        n_layers=layers,
        n_refiner_layers=refiner_layers,
        n_heads=heads,
        n_kv_heads=heads,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=QWEN3_HIDDEN,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=list(axes),
        axes_lens=list(ZIMAGE_AXES_LENS),
    )


def build_builtin_flow_model(name: str) -> FlowModel:
    """The built-in flow model called `name` (builtin:tiny-flux-dev / -schnell / -fill, builtin:tiny-zimage)."""
    if name == ZIMAGE_BUILTIN:
        return build_tiny_zimage()
    if name in BUILTIN_FLOW_MODELS:
        return build_tiny_flux(BUILTIN_FLOW_MODELS[name])
    known = ", ".join([*BUILTIN_FLOW_MODELS, ZIMAGE_BUILTIN])
    raise ModelError(f"There is no built-in flow model {name!r}; the built-in ones are {known}.")
