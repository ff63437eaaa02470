"""Regional prompts, attention method: locality at the processor, equivalence with the plain path,
processor install/restore, strength and soft-mask semantics, precedence and diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.api import GenerationCancelled, GenerationRequest, LoraSpec, Notice, RegionSpec, RequestError
from inference.sd.diagnostics import apply_precedence, deepest_attention_cell, region_notices
from inference.sd.loop import generate_image
from inference.sd.modes import build_extensions
from inference.sd.prompt import encode_prompt_pair
from inference.sd.regions import (
    AttentionCoupleExtension,
    RegionAttentionBias,
    RegionAttnProcessor,
    attention_level_sizes,
    cross_attention_modules,
    encode_region_prompt,
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
def test_full_canvas_region_with_the_base_prompt_reproduces_the_plain_generation(family):
    import torch

    # Double precision isolates the algorithm from float32 rounding: with the key sequence duplicated the
    # softmax sums in another order, which float32 random-weight UNets amplify to ~1e-6 relative.
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


def test_full_canvas_region_matches_the_plain_generation_in_float32(models):
    model = models["sd15"]
    request = request_with([RegionSpec(np.ones((SIZE, SIZE), np.float32), "a quiet landscape")])
    plain = run_latents(model, request, [])
    regional = run_latents(model, request, region_extensions(request, model))
    scale = plain.abs().max().item()
    assert (plain - regional).abs().max().item() <= 1e-5 * scale


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
    """Three regions without their own negative share the base negative: 3 prompts + 1 negative."""
    import torch

    model = models["sd15"]
    calls = []
    original = model.text_encoder.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.text_encoder.forward = counting
    try:
        cache: dict = {}
        prompts = [encode_region_prompt(model, RegionSpec(left_half(), text), "blurry", 1, "cpu", cache)
                   for text in ("a red house", "a blue car", "a red house")]
    finally:
        del model.text_encoder.forward
    assert len(calls) == 3  # "a red house", "a blue car", "blurry"
    plain = encode_region_prompt(model, RegionSpec(left_half(), "a blue car"), "blurry", 1, "cpu")
    assert torch.equal(prompts[1].cond.hidden_states, plain.cond.hidden_states)
    assert torch.equal(prompts[1].uncond.hidden_states, plain.uncond.hidden_states)
    assert prompts[0].uncond is prompts[1].uncond
