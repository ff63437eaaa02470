"""LoRA (kohya/A1111 files -> peft adapters) and textual-inversion embeddings on tiny models."""

from __future__ import annotations

import pytest
import torch

from inference.adapters import (
    LORA_ADAPTERS_KEY,
    active_loras,
    apply_loras,
    expand_embedding_names,
    load_embeddings,
)
from inference.api import ModelError
from inference.tiny import build_tiny
from tests.inference.ckpt_helpers import a1111_embedding_pt, kohya_lora_tensors, write_safetensors


def unet_output(model) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    sample = torch.randn(1, model.unet.config.in_channels, 8, 8, generator=generator)
    width = model.unet.config.cross_attention_dim
    context = torch.randn(1, 77, width, generator=generator)
    extra = {}
    if model.family == "sdxl":
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, model.text_encoder_2.config.projection_dim, generator=generator),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
        }
    with torch.no_grad():
        return model.unet(sample, 10, encoder_hidden_states=context, **extra).sample


def prompt_embedding(model, prompt: str, second: bool = False) -> torch.Tensor:
    tokenizer = model.tokenizer_2 if second else model.tokenizer
    encoder = model.text_encoder_2 if second else model.text_encoder
    ids = tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids).last_hidden_state


@pytest.fixture(params=["sd15", "sdxl"])
def family(request) -> str:
    return request.param


def test_lora_changes_the_unet_and_weight_zero_gives_the_base_output_exactly(tmp_path, family):
    model = build_tiny(family)
    lora = write_safetensors(tmp_path / "style.safetensors", kohya_lora_tensors(model, seed=1))
    base_unet = unet_output(model)
    base_text = prompt_embedding(model, "a red house")

    apply_loras(model, [(lora, 1.0)])
    assert not torch.equal(unet_output(model), base_unet)
    assert not torch.equal(prompt_embedding(model, "a red house"), base_text)
    assert active_loras(model) == {str(lora): 1.0}

    apply_loras(model, [(lora, 0.0)])
    assert torch.equal(unet_output(model), base_unet)
    assert torch.equal(prompt_embedding(model, "a red house"), base_text)

    apply_loras(model, [(lora, 0.7)])
    assert not torch.equal(unet_output(model), base_unet)
    apply_loras(model, [])
    assert torch.equal(unet_output(model), base_unet)
    assert torch.equal(prompt_embedding(model, "a red house"), base_text)
    assert active_loras(model) == {}
    assert len(model.extra[LORA_ADAPTERS_KEY]) == 1  # loaded once, switched afterwards


def test_two_loras_combine_and_weights_scale_the_effect(tmp_path):
    model = build_tiny("sd15")
    first = write_safetensors(tmp_path / "first.safetensors", kohya_lora_tensors(model, seed=1))
    second = write_safetensors(tmp_path / "second.safetensors", kohya_lora_tensors(model, seed=2, text_encoder=False))
    base = unet_output(model)
    apply_loras(model, [(first, 1.0)])
    only_first = unet_output(model)
    apply_loras(model, [(first, 1.0), (second, 1.0)])
    both = unet_output(model)
    assert not torch.equal(both, only_first)
    # Through attention the effect is not linear in the weight, but a quarter of it stays closer to the base.
    apply_loras(model, [(first, 0.25)])
    quarter = (unet_output(model) - base).abs().mean()
    assert 0 < quarter < (only_first - base).abs().mean()
    assert len(model.extra[LORA_ADAPTERS_KEY]) == 2


def test_lora_for_another_family_is_a_clear_error(tmp_path):
    sd15 = build_tiny("sd15")
    lora = write_safetensors(tmp_path / "sd15-style.safetensors", kohya_lora_tensors(sd15))
    sdxl = build_tiny("sdxl")
    base = unet_output(sdxl)
    with pytest.raises(ModelError, match=r"sd15-style\.safetensors: is an SD1\.5 LoRA; the model is SDXL\.$"):
        apply_loras(sdxl, [(lora, 1.0)])
    sdxl_lora = write_safetensors(tmp_path / "xl-style.safetensors", kohya_lora_tensors(sdxl))
    with pytest.raises(ModelError, match=r"xl-style\.safetensors: is an SDXL LoRA; the model is SD1\.5\.$"):
        apply_loras(sd15, [(sdxl_lora, 1.0)])
    apply_loras(sdxl, [])
    assert torch.equal(unet_output(sdxl), base)


def test_a_file_that_is_not_a_lora_is_refused(tmp_path):
    model = build_tiny("sd15")
    not_lora = write_safetensors(tmp_path / "vae.safetensors", {"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)})
    with pytest.raises(ModelError, match=r"vae\.safetensors: is not a LoRA"):
        apply_loras(model, [(not_lora, 1.0)])
    with pytest.raises(ModelError, match="missing.safetensors"):
        apply_loras(model, [(tmp_path / "missing.safetensors", 1.0)])


def test_a1111_embedding_changes_the_prompt_only_where_its_name_is(tmp_path):
    model = build_tiny("sd15")
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    path = a1111_embedding_pt(tmp_path / "shiny-style.pt", vectors, name="shiny-style")
    without_name_before = prompt_embedding(model, "a photo of a cat")
    with_name_before = prompt_embedding(model, "a photo of shiny-style")

    load_embeddings(model, {"shiny-style": path})
    prompt = expand_embedding_names("a photo of shiny-style", model)
    assert prompt == "a photo of shiny-style shiny-style_1"
    assert not torch.equal(prompt_embedding(model, prompt), with_name_before)
    assert torch.equal(prompt_embedding(model, "a photo of a cat"), without_name_before)
    ids = model.tokenizer.convert_tokens_to_ids(["shiny-style", "shiny-style_1"])
    assert torch.equal(model.text_encoder.get_input_embeddings().weight[ids], vectors)

    size, table = len(model.tokenizer), model.text_encoder.get_input_embeddings().weight.clone()
    load_embeddings(model, {"shiny-style": path})  # idempotent
    assert len(model.tokenizer) == size
    assert torch.equal(model.text_encoder.get_input_embeddings().weight, table)


def test_safetensors_and_diffusers_embedding_formats(tmp_path):
    model = build_tiny("sd15")
    a1111 = write_safetensors(tmp_path / "a.safetensors", {"emb_params": torch.full((1, 32), 0.5)})
    learned = tmp_path / "learned_embeds.bin"
    torch.save({"<cat-toy>": torch.full((32,), -0.25)}, learned)
    spaced = write_safetensors(tmp_path / "bad hands.safetensors", {"emb_params": torch.full((1, 32), 2.0)})
    load_embeddings(model, {"aa-style": a1111, "cat-toy": learned, "bad hands": spaced})
    assert model.tokenizer("bad hands, blurry").input_ids[1] == model.tokenizer.convert_tokens_to_ids("bad hands")
    table = model.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[model.tokenizer.convert_tokens_to_ids("aa-style")], torch.full((32,), 0.5))
    assert torch.equal(table[model.tokenizer.convert_tokens_to_ids("cat-toy")], torch.full((32,), -0.25))
    assert model.tokenizer("a cat-toy").input_ids[2] == model.tokenizer.convert_tokens_to_ids("cat-toy")


def test_sdxl_embedding_goes_into_both_text_encoders(tmp_path):
    model = build_tiny("sdxl")
    generator = torch.Generator().manual_seed(4)
    clip_l, clip_g = torch.randn(3, 32, generator=generator), torch.randn(3, 32, generator=generator)
    path = write_safetensors(tmp_path / "xl.safetensors", {"clip_l": clip_l, "clip_g": clip_g})
    before = prompt_embedding(model, "xlstyle portrait", second=True)
    load_embeddings(model, {"xlstyle": path})
    prompt = expand_embedding_names("xlstyle portrait", model)
    assert not torch.equal(prompt_embedding(model, prompt, second=True), before)
    ids = model.tokenizer_2.convert_tokens_to_ids(["xlstyle", "xlstyle_1", "xlstyle_2"])
    assert torch.equal(model.text_encoder_2.get_input_embeddings().weight[ids], clip_g)
    ids = model.tokenizer.convert_tokens_to_ids(["xlstyle", "xlstyle_1", "xlstyle_2"])
    assert torch.equal(model.text_encoder.get_input_embeddings().weight[ids], clip_l)


def test_embedding_of_the_wrong_family_or_width_is_a_clear_error(tmp_path):
    sd15_embedding = a1111_embedding_pt(tmp_path / "old.pt", torch.zeros(1, 32))
    with pytest.raises(ModelError, match=r"old\.pt: this embedding has no clip_g vectors \(it is for SD1.5"):
        load_embeddings(build_tiny("sdxl"), {"old": sd15_embedding})
    wide = a1111_embedding_pt(tmp_path / "wide.pt", torch.zeros(1, 768))
    with pytest.raises(ModelError, match=r"wide\.pt: .*768-wide .* needs 32"):
        load_embeddings(build_tiny("sd15"), {"wide": wide})


class Payload:
    """Not a tensor: unpickling it would run code from the file."""


def test_embedding_pickle_with_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": torch.zeros(1, 32)}, "hook": Payload()}, path)
    with pytest.raises(ModelError, match=r"evil\.pt: refused to load"):
        load_embeddings(build_tiny("sd15"), {"evil": path})
