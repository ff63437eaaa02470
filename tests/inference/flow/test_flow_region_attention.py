"""The grouped FLUX region attention (inference/flow/region_attention.py) is the masked attention itself:
float64 equality with diffusers' processor on the full mask, locality, and the processors of a run."""

import copy

import numpy as np
import pytest
import torch

from inference.api import RegionSpec
from inference.flow import packing
from inference.flow.region_attention import FluxRegionAttnProcessor, build_joint_layout
from inference.flow.regions import FlowAttentionCoupleExtension, joint_attention_bias
from tests.inference.flow.flow_helpers import flux_request, run_flow, tiny_flux

ROWS, COLUMNS = 3, 4  # image tokens of a 64 x 48 generation
HARD = [np.array([[1, 1, 0, 0]] * 3, np.float32), np.array([[0, 0, 1, 1]] * 3, np.float32)]
SOFT = [np.array([[1, 0.5, 0.25, 0]] * 3, np.float32), np.array([[0, 0, 0.5, 1]] * 3, np.float32)]
OVERLAPPING = [np.array([[1, 1, 1, 0]] * 3, np.float32), np.array([[0, 0.5, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]],
                                                                     np.float32)]
CASES = {
    "hard": (HARD, [1.0, 1.0], [False, False]),
    "soft": (SOFT, [1.0, 1.0], [False, False]),
    "overlapping": (OVERLAPPING, [1.0, 0.5], [False, False]),
    "strength 2": (HARD, [2.0, 1.0], [False, False]),
    "folded": (OVERLAPPING, [2.0, 1.0], [True, False]),
}
BASE, REGION = 6, 5  # token counts of the base prompt and of each region's segment


def attention_layer(stream: str):
    """A float64 copy of the tiny FLUX's first double- or single-stream attention."""
    transformer = tiny_flux("dev").transformer
    blocks = transformer.transformer_blocks if stream == "double" else transformer.single_transformer_blocks
    return copy.deepcopy(blocks[0].attn).to(torch.float64)


def rotary(text_length: int):
    ids = torch.cat([packing.text_ids(text_length), packing.image_ids(ROWS * 2, COLUMNS * 2)])
    return tiny_flux("dev").transformer.pos_embed(ids)


def evaluate(attn, stream, text, image, rotary_emb, **kwargs):
    with torch.no_grad():
        if stream == "double":
            out, text_out = attn(hidden_states=image, encoder_hidden_states=text, image_rotary_emb=rotary_emb, **kwargs)
            return torch.cat([text_out, out], dim=1)
        return attn(hidden_states=torch.cat([text, image], dim=1), image_rotary_emb=rotary_emb, **kwargs)


def inputs(attn, text_length, seed=0):
    generator = torch.Generator().manual_seed(seed)
    width = attn.query_dim
    return (torch.randn(1, text_length, width, generator=generator, dtype=torch.float64),
            torch.randn(1, ROWS * COLUMNS, width, generator=generator, dtype=torch.float64))


@pytest.mark.parametrize("stream", ["double", "single"])
@pytest.mark.parametrize("case", list(CASES))
def test_grouped_attention_is_the_masked_attention(stream, case):
    masks, strengths, folded = CASES[case]
    bias = joint_attention_bias(masks, strengths, BASE, [REGION] * len(masks), folded)
    text_length = bias.shape[0] - ROWS * COLUMNS
    attn = attention_layer(stream)
    text, image = inputs(attn, text_length)
    rotary_emb = rotary(text_length)
    reference = evaluate(attn, stream, text, image, rotary_emb, attention_mask=torch.from_numpy(bias)[None, None])
    attn.set_processor(FluxRegionAttnProcessor())
    # Every group its own call (the split path), and the cost model's choice at this tiny size (one masked call).
    split = build_joint_layout(bias, "cpu", call_overhead_pairs=0, small_group_factor=1.0)
    assert len(split.groups) > 2 and all(g.bias is None or g.bias.shape[2] == 1 for g in split.groups)
    assert any(isinstance(g.rows, slice) for g in split.groups) and any(isinstance(g.rows, torch.Tensor) for g in split.groups)
    for layout in (split, build_joint_layout(bias, "cpu")):
        grouped = evaluate(attn, stream, text, image, rotary_emb, region_layout=layout)
        assert (grouped - reference).abs().max() <= 1e-10 * reference.abs().max()
    # Without a layout it is diffusers' processor itself.
    assert torch.equal(evaluate(attn, stream, text, image, rotary_emb),
                       evaluate(attention_layer(stream), stream, text, image, rotary_emb))


@pytest.mark.parametrize("stream", ["double", "single"])
def test_grouped_image_queries_of_a_region_ignore_the_other_regions_prompt(stream):
    bias = joint_attention_bias(HARD, [1.0, 1.5], BASE, [REGION, REGION], [False, False])
    attn = copy.deepcopy(attention_layer(stream)).float()
    attn.set_processor(FluxRegionAttnProcessor())
    text, image = (t.float() for t in inputs(attn, BASE + 2 * REGION))
    other = text.clone()
    other[:, BASE + REGION :] = torch.randn(1, REGION, text.shape[2], generator=torch.Generator().manual_seed(3))
    layout = build_joint_layout(bias, "cpu", call_overhead_pairs=0, small_group_factor=1.0)
    rotary_emb = rotary(text.shape[1])
    first = evaluate(attn, stream, text, image, rotary_emb, region_layout=layout)[:, text.shape[1] :]
    second = evaluate(attn, stream, other, image, rotary_emb, region_layout=layout)[:, text.shape[1] :]
    in_a = torch.from_numpy(HARD[0].reshape(-1) > 0)
    assert torch.equal(first[:, in_a], second[:, in_a])
    assert (first[:, ~in_a] - second[:, ~in_a]).abs().min() > 0


def test_a_run_installs_the_grouped_processor_and_restores_diffusers_own():
    model = tiny_flux("dev")
    request = flux_request(width=64, height=48, steps=1)
    left = np.zeros((48, 64), np.float32)
    left[:, :32] = 1.0
    seen = []

    class Spy(FlowAttentionCoupleExtension):
        def after_step(self, ctx, step_index, latents):
            seen.append({type(m.processor).__name__ for m in ctx.model.transformer.modules() if hasattr(m, "processor")})
            return latents

    before = {type(m.processor).__name__ for m in model.transformer.modules() if hasattr(m, "processor")}
    run_flow(model, request, extensions=[Spy((RegionSpec(left, "a cat"),), base_prompt=request.prompt)])
    after = {type(m.processor).__name__ for m in model.transformer.modules() if hasattr(m, "processor")}
    assert seen == [{"FluxRegionAttnProcessor"}] and before == after == {"FluxAttnProcessor"}


def test_the_cost_model_gives_the_base_prompt_its_own_call_and_masks_the_small_groups_together():
    # The bench's layout: 512 base tokens, 4 regions of 6 tokens, 24 x 24 image tokens in 4 stripes.
    stripes = []
    for index in range(4):
        mask = np.zeros((24, 24), np.float32)
        mask[:, index * 6 : index * 6 + 6] = 1.0
        stripes.append(mask)
    bias = joint_attention_bias(stripes, [1.0] * 4, 512, [6] * 4, [False] * 4)
    layout = build_joint_layout(bias, "cpu")
    assert [g.rows for g in layout.groups][0] == slice(0, 512)  # consecutive, a broadcast row
    assert layout.groups[0].bias.shape[2] == 1
    assert len(layout.groups) == 2 and layout.groups[1].rows == slice(512, bias.shape[0])  # one masked call


def test_region_texts_are_encoded_without_clip_and_keep_their_t5_states():
    from inference.flow.prompt import encode_flow_prompts

    model = tiny_flux("dev")
    with_clip = encode_flow_prompts(model, ["a red barn", "a blue lake"])
    calls = []
    handle = model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        without = encode_flow_prompts(model, ["a red barn", "a blue lake"], pooled=False)
    finally:
        handle.remove()
    assert calls == [] and all(e.pooled is None for e in without)
    assert all(torch.equal(a.hidden_states, b.hidden_states) for a, b in zip(with_clip, without))
