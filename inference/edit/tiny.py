"""Tiny random-weight edit pipelines built in code (tests and the built-in demo models).

Each is the real diffusers pipeline class with components shaped like the real ones (same latent
channel counts, packing and VAE normalisation) but a few thousand parameters, in the spirit of
diffusers' `get_dummy_components`. Their output is noise.

Tokenizers: no T5 or Qwen2 tokenizer exists offline, so the tiny models tokenize every text with
the CLIP BPE tokenizer shipped in resources/tokenizer (vocab 49408):
- tiny InstructPix2Pix: CLIP tokenizer + tiny CLIPTextModel, exactly like the real model;
- tiny Kontext: the CLIP tokenizer also stands in for T5's (`tokenizer_2`), feeding a tiny
  T5EncoderModel with a CLIP-sized vocabulary, so the pipeline encodes the prompt itself;
- tiny Qwen-Image-Edit (+Plus): the Qwen2.5-VL processor cannot exist offline, so the instruction
  is encoded outside the pipeline (`EditModel.encode_instruction`): CLIP token ids through a tiny
  Qwen2.5-VL language model, last hidden state, passed as `prompt_embeds`. The tiny text encoder
  does not see the image (the real one does, through its vision tower).
"""

from __future__ import annotations

import os
from pathlib import Path

from inference.api import ModelError
from inference.edit.model import (
    BUILTIN_EDIT_MODELS,
    FAMILY_IP2P,
    FAMILY_KONTEXT,
    FAMILY_QWEN_EDIT,
    FAMILY_QWEN_EDIT_PLUS,
    EditModel,
    EncodedInstruction,
)

TINY_AREA = 64 * 64
TINY_MAX_SEQUENCE_LENGTH = 32
CLIP_HIDDEN = 32
QWEN_TEXT_HIDDEN = 16


def _tokenizer():
    from transformers import CLIPTokenizer

    import resources

    folder = Path(resources.__file__).parent / "tokenizer"
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _tiny_clip_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=CLIP_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=CLIP_HIDDEN,
        max_position_embeddings=77,
    )
    return CLIPTextModel(config)


def _build_ip2p(name: str) -> EditModel:
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )

    tokenizer = _tokenizer()
    text_encoder = _tiny_clip_text_encoder(tokenizer)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,  # 4 noisy latent channels + 4 channels of the encoded input image
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CLIP_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8, 8),  # 8x downsampling like SD's VAE
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    pipeline = StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return EditModel(
        name=name, family=FAMILY_IP2P, pipeline=pipeline, size_multiple=pipeline.vae_scale_factor
    )


def _build_kontext(name: str) -> EditModel:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = _tokenizer()
    text_encoder = _tiny_clip_text_encoder(tokenizer)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=16,  # FLUX.1's VAE latent channels, so the Flux preview factors apply
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
        sample_size=64,
    )
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels packed as 2x2 patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=CLIP_HIDDEN,
        axes_dims_rope=(4, 4, 8),
        guidance_embeds=True,  # FLUX.1 Kontext [dev] is guidance-distilled
    )
    pipeline = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer,  # stands in for T5's tokenizer, see the module docstring
        transformer=transformer,
    )
    return EditModel(
        name=name,
        family=FAMILY_KONTEXT,
        pipeline=pipeline,
        size_multiple=pipeline.vae_scale_factor * 2,
        max_sequence_length=TINY_MAX_SEQUENCE_LENGTH,
    )


def _tiny_qwen_text_encoder(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    special = len(tokenizer) - 8  # ids for vision tokens the tiny model never receives
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": QWEN_TEXT_HIDDEN,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        hidden_size=QWEN_TEXT_HIDDEN,
        vocab_size=len(tokenizer),
        vision_start_token_id=special,
        vision_end_token_id=special + 1,
        vision_token_id=special + 2,
        image_token_id=special + 3,
        video_token_id=special + 4,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _qwen_instruction_encoder(tokenizer, text_encoder):
    def encode(instruction: str, negative: str) -> EncodedInstruction:
        import torch

        def embed(text: str) -> dict:
            tokens = tokenizer(
                [text], max_length=TINY_MAX_SEQUENCE_LENGTH, truncation=True, return_tensors="pt"
            )
            with torch.no_grad():
                out = text_encoder(
                    input_ids=tokens.input_ids.to(text_encoder.device),
                    attention_mask=tokens.attention_mask.to(text_encoder.device),
                    output_hidden_states=True,
                )
            return {"embeds": out.hidden_states[-1], "mask": tokens.attention_mask.to(text_encoder.device)}

        positive, negative_embedded = embed(instruction), embed(negative)
        return EncodedInstruction(
            prompt_kwargs={"prompt_embeds": positive["embeds"], "prompt_embeds_mask": positive["mask"]},
            negative_kwargs={
                "negative_prompt_embeds": negative_embedded["embeds"],
                "negative_prompt_embeds_mask": negative_embedded["mask"],
            },
        )

    return encode


def _build_qwen(name: str, family: str) -> EditModel:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )

    tokenizer = _tokenizer()
    text_encoder = _tiny_qwen_text_encoder(tokenizer)
    # The pipelines always encode the input picture at ~1024x1024, so the VAE stays very thin:
    # 16x downsampling keeps its mid-block attention small, no residual blocks, 2 channels.
    vae = AutoencoderKLQwenImage(
        base_dim=2,
        z_dim=16,  # Qwen-Image's (Wan 2.1) latent channels, so its preview factors apply
        dim_mult=[1, 1, 1, 1, 1],
        num_res_blocks=0,
        temperal_downsample=[False, True, True, True],
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=QWEN_TEXT_HIDDEN,
        axes_dims_rope=(2, 2, 4),
    )
    pipeline_class = QwenImageEditPlusPipeline if family == FAMILY_QWEN_EDIT_PLUS else QwenImageEditPipeline
    pipeline = pipeline_class(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=None,  # see the module docstring: the instruction is encoded outside the pipeline
        processor=None,
        transformer=transformer,
    )
    return EditModel(
        name=name,
        family=family,
        pipeline=pipeline,
        size_multiple=pipeline.vae_scale_factor * 2,
        max_sequence_length=TINY_MAX_SEQUENCE_LENGTH,
        encode_instruction=_qwen_instruction_encoder(tokenizer, text_encoder),
    )


def build_tiny_edit(family: str) -> EditModel:
    """A tiny random-weight pipeline of `family` (or a builtin name such as "builtin:tiny-kontext")."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    name = next((n for n, f in BUILTIN_EDIT_MODELS.items() if f == family), None)
    if family in BUILTIN_EDIT_MODELS:
        name, family = family, BUILTIN_EDIT_MODELS[family]
    if name is None:
        raise ModelError(f"There is no built-in edit model of the family {family!r}.")
    builders = {
        FAMILY_IP2P: _build_ip2p,
        FAMILY_KONTEXT: _build_kontext,
        FAMILY_QWEN_EDIT: lambda n: _build_qwen(n, FAMILY_QWEN_EDIT),
        FAMILY_QWEN_EDIT_PLUS: lambda n: _build_qwen(n, FAMILY_QWEN_EDIT_PLUS),
    }
    with torch.random.fork_rng(devices=[]):  # fixed weights without disturbing the caller's RNG
        torch.manual_seed(0)
        model = builders[family](name)
    for component in model.pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            # modules are built in training mode: T5's dropout would make seeds not reproduce
            component.eval()
    model.pipeline.set_progress_bar_config(disable=True)
    model.builtin = True
    model.native_area = TINY_AREA
    model.dtype = torch.float32
    model.device = "cpu"
    model.placement = "cpu"
    return model
