"""inference.sd.prompt: clip_skip in A1111 numbering, 75-token chunks, LoRA tags, embeddings' tokens."""

import pytest
import torch

from inference.api import LoraSpec, RequestError
from inference.sd.prompt import (
    CHUNK_TOKENS,
    encode_prompt,
    encode_prompt_pair,
    final_layer_norm_of,
    find_embedding_names,
    parse_lora_tags,
    tokenize_chunks,
)
from inference.tiny import build_tiny
from tests.inference import engine_fakes  # noqa: F401  (one torch thread)

LONG_PROMPT = " ".join(["a photo of a red apple on a wooden table"] * 12)  # ~108 tokens


@pytest.fixture(scope="module")
def sd15():
    return build_tiny("sd15")


@pytest.fixture(scope="module")
def sdxl():
    return build_tiny("sdxl")


def by_hand(encoder, prompt, tokenizer, layer, final_norm):
    ids = tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        output = encoder(ids, output_hidden_states=True)
        hidden = output.hidden_states[layer]
        if final_norm:
            hidden = final_layer_norm_of(encoder)(hidden)
    return hidden, output


def test_lora_tags_are_taken_out_in_order():
    text, loras = parse_lora_tags("<lora:inkStyle:0.6> a castle, <LORA:detail>  at dusk <lora:x: -1.5>")
    assert text == "a castle, at dusk"
    assert loras == [LoraSpec("inkStyle", 0.6), LoraSpec("detail", 1.0), LoraSpec("x", -1.5)]
    assert parse_lora_tags("no tags here") == ("no tags here", [])


def test_lora_tag_with_a_bad_weight_is_a_request_error():
    with pytest.raises(RequestError, match="not a number"):
        parse_lora_tags("a cat <lora:style:strong>")


def test_short_prompt_is_one_padded_chunk(sd15):
    (chunk,) = tokenize_chunks("a cat", sd15.tokenizer)
    assert len(chunk) == CHUNK_TOKENS + 2
    assert chunk[:4] == [49406, 320, 2368, 49407]
    assert set(chunk[4:]) == {sd15.tokenizer.pad_token_id}


def test_long_prompt_is_split_into_75_token_chunks(sd15):
    ids = sd15.tokenizer(LONG_PROMPT, add_special_tokens=False)["input_ids"]
    chunks = tokenize_chunks(LONG_PROMPT, sd15.tokenizer)
    assert len(ids) > CHUNK_TOKENS and len(chunks) == 2
    assert all(len(c) == 77 and c[0] == 49406 for c in chunks)
    assert chunks[0][1:76] == ids[:75] and chunks[0][76] == 49407
    assert chunks[1][1 : 1 + len(ids) - 75] == ids[75:]


def test_sd15_clip_skip_1_and_2_are_the_last_and_penultimate_layers(sd15):
    skip1 = encode_prompt(sd15, "a cat", clip_skip=1).hidden_states
    skip2 = encode_prompt(sd15, "a cat", clip_skip=2).hidden_states
    expected1, output = by_hand(sd15.text_encoder, "a cat", sd15.tokenizer, -1, final_norm=True)
    expected2, _ = by_hand(sd15.text_encoder, "a cat", sd15.tokenizer, -2, final_norm=True)
    assert torch.allclose(skip1, expected1, atol=1e-6)
    assert torch.allclose(skip1, output.last_hidden_state, atol=1e-6)
    assert torch.allclose(skip2, expected2, atol=1e-6)
    assert not torch.allclose(skip1, skip2, atol=1e-3)
    assert encode_prompt(sd15, "a cat").pooled is None


def test_sdxl_uses_penultimate_layers_of_both_encoders_and_pooled_from_the_second(sdxl):
    embedding = encode_prompt(sdxl, "a cat", clip_skip=1)
    first, _ = by_hand(sdxl.text_encoder, "a cat", sdxl.tokenizer, -2, final_norm=False)
    second, output_2 = by_hand(sdxl.text_encoder_2, "a cat", sdxl.tokenizer_2, -2, final_norm=False)
    assert torch.allclose(embedding.hidden_states, torch.cat([first, second], dim=-1), atol=1e-6)
    assert torch.allclose(embedding.pooled, output_2.text_embeds, atol=1e-6)
    skipped = encode_prompt(sdxl, "a cat", clip_skip=2)
    first_3, _ = by_hand(sdxl.text_encoder, "a cat", sdxl.tokenizer, -3, final_norm=False)
    assert torch.allclose(skipped.hidden_states[..., :32], first_3, atol=1e-6)
    assert torch.allclose(skipped.pooled, embedding.pooled)  # pooled never moves with clip_skip


def test_long_prompt_chunks_are_encoded_separately_and_concatenated(sd15):
    embedding = encode_prompt(sd15, LONG_PROMPT)
    assert embedding.hidden_states.shape == (1, 2 * 77, 32) and embedding.chunks == 2
    chunks = tokenize_chunks(LONG_PROMPT, sd15.tokenizer)
    with torch.no_grad():
        second = sd15.text_encoder(torch.tensor([chunks[1]])).last_hidden_state
    assert torch.allclose(embedding.hidden_states[:, 77:], second, atol=1e-6)


def test_prompt_and_negative_get_the_same_number_of_chunks(sdxl):
    cond, uncond = encode_prompt_pair(sdxl, LONG_PROMPT, "blurry", clip_skip=1)
    assert cond.hidden_states.shape == uncond.hidden_states.shape == (1, 154, 64)
    cond, uncond = encode_prompt_pair(sdxl, "", "", clip_skip=1)
    assert cond.hidden_states.shape == (1, 77, 64)


def test_clip_skip_beyond_the_encoder_is_a_request_error(sd15, sdxl):
    with pytest.raises(RequestError, match="clip_skip 6"):
        encode_prompt(sd15, "a cat", clip_skip=6)
    with pytest.raises(RequestError, match="1 to 4"):
        encode_prompt(sdxl, "a cat", clip_skip=5)


def test_embedding_names_match_whole_words_only():
    texts = ["a portrait, easynegative, badhands", "style of inkpunk-v2"]
    found = find_embedding_names(texts, ["EasyNegative", "badhand", "inkpunk-v2", "ink"])
    assert found == ["EasyNegative", "inkpunk-v2"]

