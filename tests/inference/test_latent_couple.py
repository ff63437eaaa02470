"""Regional prompts, latent method: per-region LoRAs, mask weights, batching and LoRA bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from inference.api import GenerationRequest, LoraSpec, RegionSpec, RequestError
from inference.sd.latent_couple import BASE_WEIGHT, LatentCoupleExtension
from inference.sd.loop import generate_image
from inference.sd.prompt import encode_prompt_pair
from inference.sd.regions import region_extensions
from inference.tiny import build_tiny
from tests.inference.ckpt_helpers import kohya_lora_tensors, write_safetensors
from tests.inference.loop_probes import CountUnetInputs, RecordLatents, left_half

SIZE = 64
PROMPT = "a red cat on a sofa"


@pytest.fixture(scope="module")
def model():
    import torch

    torch.set_num_threads(1)
    return build_tiny("sd15")


def request_with(regions, **fields) -> GenerationRequest:
    values = dict(mode="regions", region_method="latent", prompt=PROMPT, negative="blurry", width=SIZE,
                  height=SIZE, steps=3, sampler="Euler", seed=5, cfg=7.0)
    values.update(fields)
    return GenerationRequest(regions=tuple(regions), **values)


def run_latents(model, request, extensions, *, loras=(), apply_loras=None):
    if apply_loras is not None:
        apply_loras(list(loras))
    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative)
    recorder = RecordLatents()
    generate_image(model, request, seed=request.seed, cond=cond, uncond=uncond, extensions=[*extensions, recorder],
                   on_step=lambda *args: None, emit=lambda event: None, loras=tuple(loras), apply_loras=apply_loras)
    return recorder.latents


# ---- acceptance (4): a different LoRA on each of two regions ----------------------------------------


def test_each_region_moves_towards_its_own_loras_single_lora_run(tmp_path):
    from inference.adapters import apply_loras

    model = build_tiny("sd15")  # its own copy: LoRA adapters stay on the model they were loaded into
    files = {name: write_safetensors(tmp_path / f"{name}.safetensors", kohya_lora_tensors(model, seed=seed))
             for name, seed in (("ink", 1), ("oil", 2))}
    applied = []

    def apply_lora_specs(specs):
        applied.append(tuple(spec.name for spec in specs))
        apply_loras(model, [(files[spec.name], spec.weight) for spec in specs])

    # Same prompt everywhere, so the LoRAs are the only difference between the regions.
    request = request_with([RegionSpec(left_half(), PROMPT, loras=(LoraSpec("ink"),)),
                            RegionSpec(1.0 - left_half(), PROMPT, loras=(LoraSpec("oil"),))], steps=2)
    alone = request_with([], steps=2)
    ink_alone = run_latents(model, alone, [], loras=(LoraSpec("ink"),), apply_loras=apply_lora_specs)
    oil_alone = run_latents(model, alone, [], loras=(LoraSpec("oil"),), apply_loras=apply_lora_specs)
    plain = run_latents(model, alone, [], apply_loras=apply_lora_specs)
    applied.clear()
    couple = run_latents(model, request, region_extensions(request, model), apply_loras=apply_lora_specs)

    # Distance: mean absolute difference of the final latents over the latent pixels of one mask.
    def distance(a, b, columns):
        return (a - b)[..., columns].abs().mean().item()

    left, right = slice(0, 4), slice(4, 8)
    assert distance(couple, ink_alone, left) < 0.5 * distance(couple, oil_alone, left)
    assert distance(couple, oil_alone, right) < 0.5 * distance(couple, ink_alone, right)
    assert distance(couple, ink_alone, left) < 0.5 * distance(plain, ink_alone, left)
    assert distance(couple, oil_alone, right) < 0.5 * distance(plain, oil_alone, right)
    # LoRA sets switch per group within a step, and the run's own (empty) set is back at the end of each.
    steps = request.steps
    assert applied[-1] == ()
    assert applied.count(("ink",)) == steps + 1  # once to encode the region's prompt, then once per step
    assert applied.count(("oil",)) == steps + 1


def test_region_loras_without_a_lora_loader_are_a_clear_error(model):
    request = request_with([RegionSpec(left_half(), PROMPT + " <lora:ink:0.5>")])
    with pytest.raises(RequestError, match="LoRA"):
        run_latents(model, request, region_extensions(request, model))


# ---- mixing ------------------------------------------------------------------------------------------


def test_full_canvas_region_with_the_base_prompt_reproduces_the_plain_generation(model):
    request = request_with([RegionSpec(np.ones((SIZE, SIZE), np.float32), PROMPT)])
    plain = run_latents(model, request, [])
    extension = LatentCoupleExtension.from_request(request)
    with CountUnetInputs(model.unet) as counter:
        couple = run_latents(model, request, [extension])
    assert (plain - couple).abs().max().item() <= 1e-4
    assert counter.calls == [2] * request.steps  # equal prompts are evaluated once: [uncond, cond]


def test_weights_base_fills_uncovered_pixels_and_regions_take_most_of_covered_ones(model):
    soft = left_half()
    soft[:, 24:32] = 0.5  # a feathered edge one latent column wide
    request = request_with([RegionSpec(soft, "a blue dog", strength=1.0)])
    extension = LatentCoupleExtension.from_request(request)
    run_latents(model, request, [extension])
    base, region = (term.weight[0, 0].numpy() for term in extension.terms)
    np.testing.assert_allclose(base + region, 1.0, rtol=1e-6)
    np.testing.assert_allclose(base[:, 4:], 1.0)  # nothing covers the right half
    np.testing.assert_allclose(region[:, :3], 1.0 / (1.0 + BASE_WEIGHT), rtol=1e-6)
    assert region[0, 2] > region[0, 3] > 0.0  # the feather blends


def test_uncovered_pixels_follow_the_base_prompt_only(model):
    request = request_with([RegionSpec(left_half(), "a blue dog")], steps=1)
    plain = run_latents(model, request, [])
    couple = run_latents(model, request, region_extensions(request, model))
    # After one step the right half's prediction is the base prompt's alone (batching aside).
    assert (plain - couple)[..., 4:].abs().max().item() <= 1e-4
    assert (plain - couple)[..., :4].abs().max().item() > 1e-2


def test_batches_are_chunked_and_shared_negatives_evaluated_once(model):
    regions = [RegionSpec(left_half(), "a blue dog"), RegionSpec(1.0 - left_half(), "a green tree"),
               RegionSpec(left_half() * 0.5, "a yellow sun")]
    request = request_with(regions, steps=2)
    whole = LatentCoupleExtension.from_request(request)
    with CountUnetInputs(model.unet) as counter:
        together = run_latents(model, request, [whole])
    assert counter.calls == [5] * 2  # base + 3 region prompts + one shared negative, in one batch
    chunked = LatentCoupleExtension(request.regions, base_negative="blurry", max_batch=2)
    with CountUnetInputs(model.unet) as counter:
        separate = run_latents(model, request, [chunked])
    assert counter.calls == [2, 2, 1] * 2
    assert (together - separate).abs().max().item() <= 1e-4 * together.abs().max().item()


def test_sdxl_regions_use_their_own_pooled_embeddings():
    model = build_tiny("sdxl")
    request = request_with([RegionSpec(left_half(), "a blue dog")], steps=2)
    plain = run_latents(model, request, [])
    couple = run_latents(model, request, region_extensions(request, model))
    assert couple.shape == plain.shape and bool((plain - couple)[..., :4].abs().max() > 1e-2)


def test_large_pictures_get_smaller_batches():
    from types import SimpleNamespace

    from inference.sd.batching import batch_limit

    assert batch_limit(SimpleNamespace(latent_size=(64, 64)), 8) == 8  # SD1.5 at 512 px
    assert batch_limit(SimpleNamespace(latent_size=(128, 128)), 8) == 8  # SDXL at 1024 px
    assert batch_limit(SimpleNamespace(latent_size=(256, 256)), 8) == 2  # 2048 px: one CFG pair at a time
    assert batch_limit(SimpleNamespace(latent_size=(512, 512)), 8) == 2
    assert batch_limit(SimpleNamespace(latent_size=(64, 64)), 1) == 1


def test_prompts_of_different_lengths_go_in_separate_batches(model):
    long_prompt = ", ".join(f"detail number {index}" for index in range(20))  # ~95 tokens: two CLIP chunks
    request = request_with([RegionSpec(left_half(), long_prompt)], steps=1, negative="")
    with CountUnetInputs(model.unet) as counter:
        latents = run_latents(model, request, region_extensions(request, model))
    # base [uncond, cond] share one length; the region's pair (negative padded to its length) another.
    assert sorted(counter.calls) == [2, 2] and bool(latents.isfinite().all())
