"""inference.tiny: random-weight models shaped like SD1.5/SDXL, deterministic and quick to build."""

import time

import pytest
import torch

from inference.api import ModelError
from inference.tiny import TEXT_ENCODER_LAYERS, build_tiny


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("inpaint", [False, True])
def test_shapes_follow_the_real_models(family, inpaint):
    model = build_tiny(family, inpaint=inpaint)
    assert model.family == family and model.builtin
    assert model.name == f"builtin:tiny-{family}" + ("-inpaint" if inpaint else "")
    assert model.inpaint is inpaint
    assert model.unet.config.in_channels == (9 if inpaint else 4)
    assert model.vae_scale_factor == 8  # four VAE blocks: the real 8x latent grid
    assert model.vae.config.latent_channels == 4
    assert model.text_encoder.config.vocab_size == 49408
    assert model.text_encoder.config.num_hidden_layers == TEXT_ENCODER_LAYERS >= 3
    assert model.tokenizer("a cat")["input_ids"] == [49406, 320, 2368, 49407]
    if family == "sdxl":
        assert model.unet.config.addition_embed_type == "text_time"
        assert model.text_encoder_2.config.projection_dim == model.text_encoder_2.config.hidden_size
        assert hasattr(model.text_encoder_2, "text_projection")
        total = model.text_encoder.config.hidden_size + model.text_encoder_2.config.hidden_size
        assert model.unet.config.cross_attention_dim == total
        assert model.tokenizer_2.pad_token_id == 0  # OpenCLIP pads with "!"
        assert model.vae.config.scaling_factor == pytest.approx(0.13025)
    else:
        assert model.text_encoder_2 is None
        assert model.unet.config.cross_attention_dim == model.text_encoder.config.hidden_size
        assert model.vae.config.scaling_factor == pytest.approx(0.18215)


def test_pristine_scheduler_config_is_stable_diffusions():
    config = build_tiny("sd15").scheduler_config
    assert config["beta_schedule"] == "scaled_linear"
    assert config["beta_start"] == 0.00085 and config["beta_end"] == 0.012
    assert config["num_train_timesteps"] == 1000 and config["steps_offset"] == 1
    assert config["clip_sample"] is False and config["set_alpha_to_one"] is False
    assert config["prediction_type"] == "epsilon"


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = build_tiny("sd15", seed=3), build_tiny("sd15", seed=3), build_tiny("sd15", seed=4)
    for first, second in zip(a.unet.parameters(), b.unet.parameters()):
        assert torch.equal(first, second)
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)
    assert torch.equal(a.text_encoder.get_input_embeddings().weight, b.text_encoder.get_input_embeddings().weight)
    assert a.model_hash == b.model_hash != c.model_hash


def test_building_leaves_the_global_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_tiny("sdxl")
    assert torch.equal(torch.rand(3), expected)


def test_models_are_tiny_and_quick():
    build_tiny("sdxl")  # warm: library imports are not the model's cost
    start = time.process_time()  # CPU time: other processes on a shared machine do not count
    model = build_tiny("sdxl", inpaint=True)
    elapsed = time.process_time() - start
    unet_parameters = sum(p.numel() for p in model.unet.parameters())
    vae_parameters = sum(p.numel() for p in model.vae.parameters())
    assert unet_parameters < 2_000_000 and vae_parameters < 200_000
    assert elapsed < 5.0  # well under a second of CPU; generous for slow CI machines


def test_unknown_family_is_a_model_error():
    with pytest.raises(ModelError, match="no built-in tiny model"):
        build_tiny("flux")
