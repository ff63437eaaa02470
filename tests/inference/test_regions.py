"""Regional prompts, attention method: locality at the processor, equivalence with the plain path,
processor install/restore, strength and soft-mask semantics, precedence and diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import inference.sd.regions as regions_module
from inference.api import GenerationCancelled, GenerationRequest, LoraSpec, Notice, RegionSpec, RequestError
from inference.sd.diagnostics import apply_precedence, deepest_attention_cell, region_notices
from inference.sd.loop import generate_image
from inference.sd.modes import build_extensions
from inference.sd.prompt import encode_prompt_pair
from inference.sd.region_prompts import encode_region_prompts, seed_prompt_cache
from inference.sd.regions import (
    AttentionCoupleExtension,
    RegionAttentionBias,
    RegionAttnProcessor,
    attention_level_sizes,
    cross_attention_modules,
    region_extensions,
)
from inference.tiny import build_tiny
from tests.inference.loop_probes import RecordLatents, left_half

SIZE = 64
CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "configs"


@pytest.fixture(scope="module")
def models():
    import torch

    torch.set_num_threads(1)
    return {family: build_tiny(family) for family in ("sd15", "sdxl")}


def right_half() -> np.ndarray:
    return 1.0 - left_half()


def request_with(regions, **fields) -> GenerationRequest:
    base = dict(mode="regions", prompt="a quiet landscape", negative="blurry", width=SIZE, height=SIZE,
                steps=2, sampler="Euler", seed=3, cfg=7.0)
    base.update(fields)
    return GenerationRequest(regions=tuple(regions), **base)


def run_latents(model, request, extensions, emit=None):
    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative, request.clip_skip)
    recorder = RecordLatents()
    generate_image(model, request, seed=request.seed, cond=cond, uncond=uncond, extensions=[*extensions, recorder],
                   on_step=lambda *args: None, emit=emit or (lambda event: None))
    return recorder.latents


def encode_region_prompt(model, region: RegionSpec, base_negative: str, clip_skip: int, device):
    """One region's prompt pair, encoded on its own."""
    return encode_region_prompts(model, [region], base_negative, clip_skip, device)[0]


def processor_names(unet) -> set[str]:
    return {type(processor).__name__ for processor in unet.attn_processors.values()}


# ---- acceptance (1): locality at the attention processor --------------------------------------


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_changing_one_region_prompt_leaves_the_other_regions_attention_output_unchanged(models, family):
    import torch

    model = models[family]
    latent = SIZE // model.vae_scale_factor
    base, _ = encode_prompt_pair(model, "a quiet landscape", "")
    region_a = encode_region_prompt(model, RegionSpec(left_half(), "a red house"), "", 1, "cpu")
    region_b = encode_region_prompt(model, RegionSpec(right_half(), "a blue car"), "", 1, "cpu")
    region_b2 = encode_region_prompt(model, RegionSpec(right_half(), "a green tree at dusk"), "", 1, "cpu")
    lengths = [base.hidden_states.shape[1], region_a.cond.hidden_states.shape[1], region_b.cond.hidden_states.shape[1]]
    bias = RegionAttentionBias(apply_precedence([left_half(), right_half()]), [1.0, 1.0], lengths,
                               (latent, latent), model.vae_scale_factor)
    processor = RegionAttnProcessor(bias)
    states = torch.cat([base.hidden_states, region_a.cond.hidden_states, region_b.cond.hidden_states], dim=1)
    states_changed = torch.cat([base.hidden_states, region_a.cond.hidden_states, region_b2.cond.hidden_states], dim=1)
    assert not torch.equal(states, states_changed)

    generator = torch.Generator().manual_seed(0)
    checked_levels = set()
    for name, attn in cross_attention_modules(model.unet):
        for level, (h, w) in enumerate(attention_level_sizes(latent, latent)):
            if h < 2:
                continue  # a 1x1 map has no left and right half
            hidden = torch.randn(2, h * w, attn.to_q.in_features, generator=generator)
            with torch.no_grad():
                out = processor(attn, hidden, states.expand(2, -1, -1))
                out_changed = processor(attn, hidden, states_changed.expand(2, -1, -1))
            columns = torch.arange(h * w) % w
            in_a = columns < w // 2
            assert torch.equal(out[:, in_a], out_changed[:, in_a]), f"{name} at {w}x{h} leaked B into A"
            assert (out[:, ~in_a] - out_changed[:, ~in_a]).abs().max() > 1e-4, f"{name}: B's prompt had no effect"
            checked_levels.add(level)
    assert len(checked_levels) >= 2  # the latent resolution and at least one coarser level


# ---- acceptance (2): one full-canvas region with the base prompt is a plain generation -----------


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_canvas_region_with_the_base_prompt_reproduces_the_plain_generation(family, monkeypatch):
    import torch

    # Without folding (copies_of says no copies), the region's segment is attended as its own: the key
    # sequence is the base prompt twice. Double precision isolates the algorithm from float32 rounding
    # (the softmax sums in another order, which float32 random-weight UNets amplify to ~1e-6 relative).
    monkeypatch.setattr(regions_module, "copies_of", lambda base, embeddings: [False] * len(embeddings))
    model = build_tiny(family)
    for part in (model.unet, model.vae, model.text_encoder, model.text_encoder_2):
        if part is not None:
            part.double()
    model.dtype = torch.float64
    request = request_with([RegionSpec(np.ones((SIZE, SIZE), np.float32), "a quiet landscape")])
    plain = run_latents(model, request, [])
    regional = run_latents(model, request, region_extensions(request, model))
    assert (plain - regional).abs().max().item() <= 1e-4
    assert processor_names(model.unet) == {"AttnProcessor2_0"}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_canvas_region_matches_the_plain_generation_in_float32(models, family):
    """In float32 too: the region repeats the base prompt (and its negative), so its segment folds into
    the base one and every query attends over the base tokens exactly as in the plain path."""
    import torch

    model = models[family]
    request = request_with([RegionSpec(np.ones((SIZE, SIZE), np.float32), "a quiet landscape")])
    plain = run_latents(model, request, [])
    regional = run_latents(model, request, region_extensions(request, model))
    assert torch.equal(plain, regional)


def test_strength_zero_mutes_a_region(models):
    model = models["sd15"]
    request = request_with([RegionSpec(left_half(), "a red house", strength=0.0)])
    plain = run_latents(model, request, [])
    muted = run_latents(model, request, region_extensions(request, model))
    assert (plain - muted).abs().max().item() <= 1e-5 * plain.abs().max().item()


def test_empty_region_list_is_exactly_the_plain_path(models):
    model = models["sd15"]
    request = request_with([])
    assert region_extensions(request, model) == []
    assert build_extensions(request, model) == []


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_regions_change_the_picture_and_the_processors_are_restored(models, family, monkeypatch):
    model = models[family]
    calls = []
    original_call = RegionAttnProcessor.__call__

    def counting_call(self, *args, **kwargs):
        calls.append(1)
        return original_call(self, *args, **kwargs)

    request = request_with([RegionSpec(left_half(), "a red house"), RegionSpec(right_half(), "a blue car")])
    plain = run_latents(model, request, [])
    extensions = region_extensions(request, model)
    assert [type(e) for e in extensions] == [AttentionCoupleExtension]
    monkeypatch.setattr(RegionAttnProcessor, "__call__", counting_call)
    regional = run_latents(model, request, extensions)
    cross_layers = len(cross_attention_modules(model.unet))
    assert len(calls) == cross_layers * request.steps  # one UNet pass per step, through every attn2
    assert (plain - regional).abs().max().item() > 1e-3
    assert processor_names(model.unet) == {"AttnProcessor2_0"}


def test_processors_are_restored_after_a_cancel(models):
    model = models["sd15"]
    request = request_with([RegionSpec(left_half(), "a red house")])
    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative)

    def cancel(step_index, total, latents):
        assert "RegionAttnProcessor" in processor_names(model.unet)
        raise GenerationCancelled()

    with pytest.raises(GenerationCancelled):
        generate_image(model, request, seed=1, cond=cond, uncond=uncond,
                       extensions=region_extensions(request, model), on_step=cancel, emit=lambda e: None)
    assert processor_names(model.unet) == {"AttnProcessor2_0"}


def test_self_attention_is_left_alone(models):
    model = models["sd15"]
    request = request_with([RegionSpec(left_half(), "a red house")])
    names = {}

    def look(step_index, total, latents):
        names.update({name: type(p).__name__ for name, p in model.unet.attn_processors.items()})

    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative)
    generate_image(model, request, seed=1, cond=cond, uncond=uncond, extensions=region_extensions(request, model),
                   on_step=look, emit=lambda e: None)
    assert {p for n, p in names.items() if ".attn1." in n} == {"AttnProcessor2_0"}
    assert {p for n, p in names.items() if ".attn2." in n} == {"RegionAttnProcessor"}


# ---- bias semantics -------------------------------------------------------------------------------


def test_soft_masks_and_strength_are_log_weights():
    import torch

    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[:, :32] = 0.5
    bias = RegionAttentionBias([mask], [2.0], [3, 2], (8, 8), 8)
    weights = bias.log_weights(64)  # the 8x8 latent level
    assert weights.shape == (64, 2)
    assert np.all(weights[:, 0] == 0.0)  # base tokens: no bias anywhere
    left = (np.arange(64) % 8) < 4
    np.testing.assert_allclose(weights[left, 1], np.log(0.5 * 2.0))
    assert np.all(np.isneginf(weights[~left, 1]))
    expanded = bias.bias_for(64, dtype=torch.float32, device="cpu")
    assert tuple(expanded.shape) == (1, 1, 64, 5)  # every token of a segment shares its segment's bias


def overlapping_soft_regions() -> list[np.ndarray]:
    """Three regions: a feathered left half, a right strip, and a box lying across both."""
    left = left_half() * np.linspace(1.0, 0.3, SIZE, dtype=np.float32)[None, :]
    strip = np.zeros((SIZE, SIZE), np.float32)
    strip[:, 40:] = 1.0
    box = np.zeros((SIZE, SIZE), np.float32)
    box[16:48, 24:44] = 0.75
    return [left, strip, box]


def attention_with_full_bias(attn, hidden, context, bias):
    """The reference: one attention of every query over every token with the whole bias matrix."""
    import torch
    import torch.nn.functional as F

    batch, query_length, _ = hidden.shape
    with torch.no_grad():
        query = attn.to_q(hidden).view(batch, query_length, attn.heads, -1).transpose(1, 2)
        key = attn.to_k(context).view(batch, -1, attn.heads, query.shape[-1]).transpose(1, 2)
        value = attn.to_v(context).view(batch, -1, attn.heads, query.shape[-1]).transpose(1, 2)
        full = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias.bias_for(query_length, torch.float32, "cpu"), scale=attn.scale
        )
        return attn.to_out[0](full.transpose(1, 2).reshape(batch, query_length, -1))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("overhead", [0, regions_module.GROUP_OVERHEAD_PAIRS])
def test_grouped_attention_equals_attention_with_the_full_bias(models, family, overhead, monkeypatch):
    """Each query attends only over the base and the regions covering it: the same output as one
    attention over every token with the full -inf/log-weight bias (which is what it replaces).
    Overhead 0 splits every level of the tiny canvas into groups; the default keeps them whole."""
    import torch

    monkeypatch.setattr(regions_module, "GROUP_OVERHEAD_PAIRS", overhead)
    model = models[family]
    latent = SIZE // model.vae_scale_factor
    lengths = [77, 77, 154, 77]
    bias = RegionAttentionBias(apply_precedence(overlapping_soft_regions()), [1.0, 2.0, 0.5], lengths,
                               (latent, latent), model.vae_scale_factor)
    processor = RegionAttnProcessor(bias)
    generator = torch.Generator().manual_seed(1)
    several_groups = False
    for _, attn in cross_attention_modules(model.unet)[:4]:
        context = torch.randn(2, sum(lengths), attn.to_k.in_features, generator=generator)
        for query_length in {h * w for h, w in attention_level_sizes(latent, latent)}:
            groups = bias.layout_for(query_length, "cpu").groups
            several_groups |= len(groups) > 2
            hidden = torch.randn(2, query_length, attn.to_q.in_features, generator=generator)
            with torch.no_grad():
                grouped = processor(attn, hidden, context)
            torch.testing.assert_close(grouped, attention_with_full_bias(attn, hidden, context, bias),
                                       rtol=1e-5, atol=1e-5)
            # A second call reuses the cached keys and values (same prompt tensor): same output.
            with torch.no_grad():
                assert torch.equal(processor(attn, hidden, context), grouped)
    assert several_groups == (overhead == 0)  # split where it pays, whole on a 64 px canvas


def test_query_groups_keep_only_the_covering_segments(monkeypatch):
    import torch

    monkeypatch.setattr(regions_module, "GROUP_OVERHEAD_PAIRS", 0)
    left = left_half()
    right = 1.0 - left
    bias = RegionAttentionBias([left, right], [1.0, 1.0], [3, 2, 4], (8, 8), 8)
    layout = bias.layout_for(64, "cpu")
    groups = layout.groups
    assert len(groups) == 2
    order = layout.order.numpy()
    assert sorted(order.tolist()) == list(range(64)) and np.array_equal(order[layout.restore.numpy()], np.arange(64))
    columns = np.arange(64) % 8
    keys = sorted(tuple(range(9)[g.keys] if isinstance(g.keys, slice) else g.keys.tolist()) for g in groups)
    assert keys == [(0, 1, 2, 3, 4), (0, 1, 2, 5, 6, 7, 8)]  # base + left, base + right
    for group in groups:
        assert group.bias(None) is None  # hard masks at strength 1: no bias needed
        sides = set((columns[group.queries] < 4).tolist())
        assert len(group.queries) == 32 and len(sides) == 1
        assert np.array_equal(order[group.start : group.stop], group.queries)
    # One full-canvas region: a single group of every query over every key.
    whole = RegionAttentionBias([np.ones((SIZE, SIZE), np.float32)], [1.0], [3, 2], (8, 8), 8).layout_for(64, "cpu")
    assert len(whole.groups) == 1 and whole.order is None and whole.groups[0].keys == slice(0, 5)
    # Where splitting would not pay (a coarse level), one group with the full bias.
    monkeypatch.setattr(regions_module, "GROUP_OVERHEAD_PAIRS", 10**6)
    coarse = RegionAttentionBias([left, right], [1.0, 1.0], [3, 2, 4], (8, 8), 8).layout_for(64, "cpu")
    assert len(coarse.groups) == 1 and coarse.order is None and coarse.groups[0].keys == slice(0, 9)
    assert coarse.groups[0].bias(torch.float32) is not None


def test_small_regions_survive_max_pooling_to_coarse_levels():
    dot = np.zeros((SIZE, SIZE), np.float32)
    dot[10:12, 40:42] = 1.0
    bias = RegionAttentionBias([dot], [1.0], [1, 1], (8, 8), 8)
    for query_length in (64, 16, 4, 1):
        assert np.isfinite(bias.log_weights(query_length)[:, 1]).sum() == 1


def test_unknown_attention_resolution_is_a_clear_error():
    from inference.api import InferenceError

    bias = RegionAttentionBias([left_half()], [1.0], [1, 1], (8, 8), 8)
    with pytest.raises(InferenceError, match="matches none"):
        bias.log_weights(63)


def test_odd_latent_sizes_round_up_like_the_unet():
    assert attention_level_sizes(9, 5)[:4] == [(9, 5), (5, 3), (3, 2), (2, 1)]


# ---- precedence and diagnostics --------------------------------------------------------------------


def test_later_regions_lie_on_top():
    below = np.ones((4, 4), np.float32)
    above = np.zeros((4, 4), np.float32)
    above[:, 2:] = 1.0
    above[:, 1] = 0.5
    effective_below, effective_above = apply_precedence([below, above])
    np.testing.assert_array_equal(effective_above, above)
    np.testing.assert_array_equal(effective_below[:, 0], 1.0)
    np.testing.assert_array_equal(effective_below[:, 1], 0.5)
    np.testing.assert_array_equal(effective_below[:, 2:], 0.0)


def test_notices_for_small_hidden_and_empty_regions():
    small = np.zeros((SIZE, SIZE), np.float32)
    small[4:10, 4:30] = 1.0
    full = np.ones((SIZE, SIZE), np.float32)
    empty = np.zeros((SIZE, SIZE), np.float32)
    masks = [small, full, empty, full]
    notices = region_notices(masks, apply_precedence(masks), cell=16)
    assert len(notices) == 3
    assert "Region 1" in notices[0] and "hidden" in notices[0]  # the full region on top hides it too
    assert "Region 2" in notices[1] and "hidden" in notices[1]
    assert "Region 3" in notices[2] and "empty" in notices[2]
    alone = region_notices([small], [small], cell=16)
    assert len(alone) == 1 and "26x6 px" in alone[0] and "16-px cell" in alone[0]


@pytest.mark.parametrize("family, cell", [("sd15", 64), ("sdxl", 32)])
def test_deepest_attention_cell_of_the_real_architectures(family, cell):
    import torch
    from diffusers import UNet2DConditionModel

    config = json.loads((CONFIGS / family / "unet" / "config.json").read_text())
    with torch.device("meta"):  # the real shapes without allocating their weights
        unet = UNet2DConditionModel.from_config(config)
    assert deepest_attention_cell(unet, 8) == cell


def test_a_tiny_region_and_region_loras_are_reported_during_the_run(models):
    model = models["sd15"]
    tiny = np.zeros((SIZE, SIZE), np.float32)
    tiny[0:8, 0:8] = 1.0
    request = request_with([RegionSpec(tiny, "a bird", loras=(LoraSpec("style"),)), RegionSpec(right_half(), "sea")])
    events = []
    run_latents(model, request, region_extensions(request, model), emit=events.append)
    messages = [event.message for event in events if isinstance(event, Notice)]
    assert any("Region 1 is only 8x8 px" in m for m in messages)
    assert any("Region 1 has LoRAs" in m for m in messages)
    assert not any("Region 2" in m for m in messages)


@pytest.mark.parametrize("strength", [-0.1, 2.5, float("nan")])
def test_region_strength_out_of_range_is_a_request_error(models, strength):
    request = request_with([RegionSpec(left_half(), "a red house", strength=strength)])
    with pytest.raises(RequestError, match="strength of region 1"):
        region_extensions(request, models["sd15"])


def test_a_long_region_prompt_adds_its_chunks_to_the_key_sequence(models):
    model = models["sd15"]
    long_prompt = ", ".join(f"detail number {index}" for index in range(20))  # ~95 tokens: two chunks
    request = request_with([RegionSpec(left_half(), long_prompt)], steps=1)
    extension = region_extensions(request, model)[0]
    latents = run_latents(model, request, [extension])
    assert extension.bias.segment_lengths == [77, 154]
    assert bool(latents.isfinite().all())


def test_each_distinct_region_text_is_encoded_once_per_run(models):
    """Three regions without their own negative share the base negative: 3 prompts + 1 negative,
    minus what the run already encoded (its own negative), all in ONE text-encoder call."""
    import torch

    model = models["sd15"]
    calls = []
    original = model.text_encoder.forward

    def counting(ids, *args, **kwargs):
        calls.append(int(ids.shape[0]))  # rows: one per 77-token chunk
        return original(ids, *args, **kwargs)

    base_negative = encode_prompt_pair(model, "a quiet landscape", "blurry")[1]
    model.text_encoder.forward = counting
    try:
        cache: dict = {}
        seed_prompt_cache(cache, "blurry", base_negative, 1, "cpu")
        regions = [RegionSpec(left_half(), text) for text in ("a red house", "a blue car", "a red house")]
        prompts = encode_region_prompts(model, regions, "blurry", 1, "cpu", cache)
    finally:
        del model.text_encoder.forward
    assert calls == [2]  # "a red house" and "a blue car" in one batch; "blurry" came from the run
    assert all(prompt.uncond is cache[("blurry", 1, 1)] for prompt in prompts)
    assert prompts[0].cond is prompts[2].cond
    alone = encode_region_prompt(model, RegionSpec(left_half(), "a blue car"), "blurry", 1, "cpu")
    torch.testing.assert_close(prompts[1].cond.hidden_states, alone.cond.hidden_states, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(prompts[1].uncond.hidden_states, alone.uncond.hidden_states, rtol=1e-5, atol=1e-5)


def test_prompt_keys_and_values_are_projected_once_per_layer_and_run(models):
    """The regional prompt tensor is the same at every step: its keys and values are computed once.
    Other prompt tensors (composite's pieces run with the regions off) are never kept, and a layer
    holds one entry at most."""
    import torch

    model = models["sd15"]
    attn = cross_attention_modules(model.unet)[0][1]
    projections = []
    handle = attn.to_k.register_forward_hook(lambda *_: projections.append(1))
    try:
        bias = RegionAttentionBias([left_half(), right_half()], [1.0, 1.0], [77, 77, 77], (8, 8), 8)
        processor = RegionAttnProcessor(bias)
        hidden = torch.randn(2, 64, attn.to_q.in_features)
        prompt = torch.randn(2, 231, attn.to_k.in_features)
        with torch.no_grad():
            first = processor(attn, hidden, prompt)
            assert torch.equal(processor(attn, hidden, prompt), first)
            assert len(projections) == 1
            held = processor._kv_bytes
            assert held > 0
            other = torch.randn(2, 231, attn.to_k.in_features)
            processor(attn, hidden, other)  # another prompt tensor replaces the layer's entry
            assert len(projections) == 2 and len(processor._kv) == 1 and processor._kv_bytes == held
            bias.enabled = False
            for _ in range(3):
                processor(attn, hidden, torch.randn(2, 231, attn.to_k.in_features))
            assert len(projections) == 5 and processor._kv_bytes == held
            bias.enabled = True
            uncached = RegionAttnProcessor(bias, cache_bytes=0)
            assert torch.equal(uncached(attn, hidden, prompt), first) and uncached._kv_bytes == 0
        processor.clear()
        assert processor._kv_bytes == 0 and not processor._kv
    finally:
        handle.remove()


@pytest.mark.parametrize("overhead", [0, regions_module.GROUP_OVERHEAD_PAIRS])
def test_regions_repeating_the_base_tokens_fold_into_the_base(models, overhead, monkeypatch):
    """In the unconditional row, regions without their own negative repeat the base negative's tokens;
    a region may also repeat the base prompt. Such segments are folded into the base (weight 1 + w)
    instead of attended: the output equals attention over every segment with the plain bias."""
    import torch

    monkeypatch.setattr(regions_module, "GROUP_OVERHEAD_PAIRS", overhead)
    model = models["sd15"]
    latent = SIZE // model.vae_scale_factor
    masks = apply_precedence(overlapping_soft_regions())
    strengths, lengths = [1.0, 2.0, 0.5], [77, 77, 77, 77]
    fold_uncond, fold_cond = [True, True, False], [False, True, False]  # region 2 repeats the base prompt
    generator = torch.Generator().manual_seed(2)
    attn = cross_attention_modules(model.unet)[0][1]
    width = attn.to_k.in_features
    base_uncond, base_cond = torch.randn(1, 77, width, generator=generator), torch.randn(1, 77, width, generator=generator)
    own = [torch.randn(1, 77, width, generator=generator) for _ in range(4)]
    uncond = torch.cat([base_uncond, base_uncond, base_uncond, own[0]], dim=1)
    cond = torch.cat([base_cond, own[1], base_cond, own[2]], dim=1)
    context = torch.cat([uncond, cond])

    def bias(folded):
        return RegionAttentionBias(masks, strengths, lengths, (latent, latent), model.vae_scale_factor, folded=folded)

    folded = bias([a and b for a, b in zip(fold_uncond, fold_cond)])
    folded.halves = (bias(fold_uncond), bias(fold_cond))
    plain = bias(None)
    for query_length in {h * w for h, w in attention_level_sizes(latent, latent)}:
        hidden = torch.randn(2, query_length, attn.to_q.in_features, generator=generator)
        with torch.no_grad():
            out = RegionAttnProcessor(folded)(attn, hidden, context)
        torch.testing.assert_close(out, attention_with_full_bias(attn, hidden, context, plain), rtol=1e-5, atol=1e-5)
    # The unconditional row never attends over the two copies of its base negative.
    layout = folded.halves[0].layout_for(latent * latent, "cpu")
    attended = set()
    for group in layout.groups:
        attended |= set(range(308)[group.keys] if isinstance(group.keys, slice) else group.keys.tolist())
    assert attended.isdisjoint(range(77, 231))


def test_a_run_folds_the_shared_negative_and_a_region_repeating_the_prompt(models):
    model = models["sd15"]
    request = request_with([RegionSpec(left_half(), "a red house"), RegionSpec(np.ones((SIZE, SIZE), np.float32),
                            "a quiet landscape")], steps=1)
    extension = region_extensions(request, model)[0]
    run_latents(model, request, [extension])
    assert extension.bias.folded == [False, True]  # region 2 repeats the base prompt in both rows
    assert extension.bias.halves[0].folded == [True, True]  # both use the base negative
    assert extension.bias.halves[1].folded == [False, True]
