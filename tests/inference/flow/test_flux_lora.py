"""FLUX LoRAs in the kohya/ComfyUI and AI-Toolkit/diffusers layouts, on a small FLUX transformer."""

from __future__ import annotations

import pytest
import torch

from inference.api import ModelError
from inference.flow.components import FlowModel
from inference.flow.files import load_t5_tokenizer
from inference.flow.lora import apply_flux_loras, remove_flux_loras
from inference.models import load_clip_tokenizer
from tests.inference.ckpt_helpers import write_safetensors

WIDTH, HEADS, RANK = 32, 2, 4


def small_flux_model() -> FlowModel:
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=WIDTH // HEADS,
        num_attention_heads=HEADS, joint_attention_dim=WIDTH, pooled_projection_dim=WIDTH, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    ).eval()
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=WIDTH, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=1, projection_dim=WIDTH)).eval()
    t5 = T5EncoderModel(T5Config(d_model=WIDTH, d_ff=37, d_kv=8, num_heads=4, num_layers=1,
                                 feed_forward_proj="gated-gelu", vocab_size=32128)).eval()
    return FlowModel(
        name="small", family="flux-dev", transformer=transformer, vae=None, text_encoder=clip,
        tokenizer=load_clip_tokenizer(), text_encoder_2=t5, tokenizer_2=load_t5_tokenizer(),
        scheduler_config={"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0},
        dtype=torch.float32,
    )


def kohya_flux_lora() -> dict[str, torch.Tensor]:
    """kohya-ss sd-scripts names: lora_unet_<BFL module path with _>, lora_te1_<CLIP path with _>."""
    generator = torch.Generator().manual_seed(1)
    modules = {  # kohya module -> (in, out)
        "lora_unet_double_blocks_0_img_attn_qkv": (WIDTH, 3 * WIDTH),
        "lora_unet_double_blocks_0_txt_mlp_0": (WIDTH, 4 * WIDTH),
        "lora_unet_single_blocks_0_linear2": (WIDTH + 4 * WIDTH, WIDTH),
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (WIDTH, WIDTH),
        "lora_te1_text_model_encoder_layers_0_self_attn_out_proj": (WIDTH, WIDTH),
    }
    tensors = {}
    for name, (width_in, width_out) in modules.items():
        tensors[f"{name}.lora_down.weight"] = torch.randn(RANK, width_in, generator=generator) * 0.5
        tensors[f"{name}.lora_up.weight"] = torch.randn(width_out, RANK, generator=generator) * 0.5
        tensors[f"{name}.alpha"] = torch.tensor(float(RANK))
    return tensors


def ai_toolkit_flux_lora() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    tensors = {}
    for module in ("transformer.transformer_blocks.0.attn.to_k", "transformer.single_transformer_blocks.0.proj_out"):
        width_in = WIDTH + 4 * WIDTH if module.endswith("proj_out") else WIDTH
        tensors[f"{module}.lora_A.weight"] = torch.randn(RANK, width_in, generator=generator) * 0.5
        tensors[f"{module}.lora_B.weight"] = torch.randn(WIDTH, RANK, generator=generator) * 0.5
    return tensors


def transformer_output(model: FlowModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        return model.transformer(
            hidden_states=torch.randn(1, 4, 16, generator=generator),
            encoder_hidden_states=torch.randn(1, 3, WIDTH, generator=generator),
            pooled_projections=torch.randn(1, WIDTH, generator=generator),
            timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]),
            img_ids=torch.zeros(4, 3), txt_ids=torch.zeros(3, 3), return_dict=False,
        )[0]


def clip_output(model: FlowModel) -> torch.Tensor:
    with torch.no_grad():
        return model.text_encoder(torch.tensor([[49406, 320, 2368, 49407]])).last_hidden_state


def test_kohya_lora_changes_the_transformer_and_clip_and_weight_zero_restores_them(tmp_path):
    model = small_flux_model()
    plain, plain_clip = transformer_output(model), clip_output(model)
    lora = write_safetensors(tmp_path / "style_kohya.safetensors", kohya_flux_lora())

    apply_flux_loras(model, [(lora, 1.0)])
    full = transformer_output(model)
    assert not torch.allclose(full, plain, atol=1e-4)
    assert not torch.allclose(clip_output(model), plain_clip, atol=1e-4)  # lora_te1_ reached CLIP-L
    apply_flux_loras(model, [(lora, 0.5)])
    half = transformer_output(model)
    assert not torch.allclose(half, full, atol=1e-4) and not torch.allclose(half, plain, atol=1e-4)

    apply_flux_loras(model, [(lora, 0.0)])
    assert torch.equal(transformer_output(model), plain)
    apply_flux_loras(model, [])
    assert torch.equal(transformer_output(model), plain) and torch.equal(clip_output(model), plain_clip)
    assert len(model.extra["lora_adapters"]) == 1  # loaded once, switched since

    apply_flux_loras(model, [(lora, 1.0)])
    assert torch.allclose(transformer_output(model), full, atol=1e-6)
    remove_flux_loras(model)
    assert torch.equal(transformer_output(model), plain)
    assert not any("lora" in name for name, _ in model.transformer.named_parameters())


def test_ai_toolkit_lora_stacks_with_a_kohya_one(tmp_path):
    model = small_flux_model()
    plain = transformer_output(model)
    kohya = write_safetensors(tmp_path / "kohya.safetensors", kohya_flux_lora())
    toolkit = write_safetensors(tmp_path / "toolkit.safetensors", ai_toolkit_flux_lora())
    apply_flux_loras(model, [(toolkit, 1.0)])
    only_toolkit = transformer_output(model)
    assert not torch.allclose(only_toolkit, plain, atol=1e-4)
    apply_flux_loras(model, [(toolkit, 1.0), (kohya, 1.0)])
    both = transformer_output(model)
    assert not torch.allclose(both, only_toolkit, atol=1e-4)
    apply_flux_loras(model, [(toolkit, 0.0), (kohya, 0.0)])
    assert torch.equal(transformer_output(model), plain)


def test_files_that_are_no_flux_lora_are_one_sentence(tmp_path):
    model = small_flux_model()
    not_lora = write_safetensors(tmp_path / "vae.safetensors", {"decoder.conv_in.weight": torch.zeros(4, 4)})
    with pytest.raises(ModelError, match=r"vae\.safetensors: is not a LoRA"):
        apply_flux_loras(model, [(not_lora, 1.0)])
    sdxl = write_safetensors(tmp_path / "sdxl.safetensors", {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.zeros(RANK, 2048),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.zeros(640, RANK),
    })
    with pytest.raises(ModelError, match=r"sdxl\.safetensors: "):
        apply_flux_loras(model, [(sdxl, 1.0)])
    assert torch.isfinite(transformer_output(model)).all()  # the model still runs after the refusals
