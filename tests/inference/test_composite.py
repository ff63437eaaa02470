"""Latent composite: pieces run on their own, are pasted by mask, and the whole finishes together."""

from __future__ import annotations

import numpy as np
import pytest

from inference.api import CompositePiece, GenerationRequest, RegionSpec, RequestError
from inference.sd.composite import CompositeExtension, composite_extensions
from inference.sd.loop import generate_image
from inference.sd.prompt import encode_prompt_pair
from inference.sd.regions import AttentionCoupleExtension, RegionAttnProcessor
from inference.tiny import build_tiny
from tests.inference.loop_probes import CountUnetInputs, RecordLatents, left_half

SIZE = 64
BASE = "a meadow under a grey sky"
PIECE = "a red barn"


@pytest.fixture(scope="module")
def models():
    import torch

    torch.set_num_threads(1)
    return {family: build_tiny(family) for family in ("sd15", "sdxl")}


def request_with(pieces, **fields) -> GenerationRequest:
    values = dict(mode="composite", prompt=BASE, negative="blurry", width=SIZE, height=SIZE, steps=4,
                  sampler="Euler", seed=9, cfg=6.0, composite_step=0.5)
    values.update(fields)
    return GenerationRequest(pieces=tuple(pieces), **values)


def run_latents(model, request, extensions, prompt=None, on_step=None):
    cond, uncond = encode_prompt_pair(model, prompt or request.prompt, request.negative)
    recorder = RecordLatents()
    image = generate_image(model, request, seed=request.seed, cond=cond, uncond=uncond,
                           extensions=[*extensions, recorder], on_step=on_step or (lambda *args: None),
                           emit=lambda event: None)
    return recorder.latents, image


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_piece_that_runs_all_steps_alone_is_its_own_generation_inside_its_mask(models, family):
    model = models[family]
    request = request_with([CompositePiece(left_half(), PIECE)], composite_step=1.0)
    composite, _ = run_latents(model, request, composite_extensions(request, model))
    piece_alone, _ = run_latents(model, request_with([]), [], prompt=PIECE)
    base_alone, _ = run_latents(model, request_with([]), [])
    scale = base_alone.abs().max().item()
    assert (composite - piece_alone)[..., :4].abs().max().item() <= 1e-5 * scale
    assert (composite - base_alone)[..., 4:].abs().max().item() <= 1e-5 * scale
    assert (piece_alone - base_alone)[..., :4].abs().max().item() > 1e-2


def test_solo_steps_batch_background_and_pieces_then_the_whole_runs_as_one(models):
    model = models["sd15"]
    pieces = [CompositePiece(left_half(), PIECE), CompositePiece(1.0 - left_half(), "a pond", negative="ugly")]
    request = request_with(pieces, steps=4, composite_step=0.5)
    with CountUnetInputs(model.unet) as counter:
        run_latents(model, request, composite_extensions(request, model))
    assert counter.calls == [6, 6, 2, 2]  # (background + 2 pieces) x [uncond, cond], then the whole


def test_a_full_canvas_piece_with_the_base_prompt_changes_nothing(models):
    model = models["sd15"]
    request = request_with([CompositePiece(np.ones((SIZE, SIZE), np.float32), BASE)], composite_step=0.5)
    composite, _ = run_latents(model, request, composite_extensions(request, model))
    plain, _ = run_latents(model, request, [])
    assert (composite - plain).abs().max().item() <= 1e-5 * plain.abs().max().item()


def test_an_image_piece_is_an_img2img_of_its_picture_at_the_request_strength(models):
    model = models["sd15"]
    picture = np.random.default_rng(4).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    request = request_with([CompositePiece(left_half(), PIECE, image=picture)], composite_step=1.0, strength=0.5)
    composite, _ = run_latents(model, request, composite_extensions(request, model))
    img2img = request_with([], init_image=picture, strength=0.5)
    piece_alone, _ = run_latents(model, img2img, [], prompt=PIECE)
    assert (composite - piece_alone)[..., :4].abs().max().item() <= 1e-4 * piece_alone.abs().max().item()


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Euler a", "UniPC", "DPM++ SDE Karras"])
def test_samplers_with_history_or_noise_start_afresh_at_the_paste(models, sampler):
    model = models["sdxl"]
    request = request_with([CompositePiece(left_half(), PIECE)], sampler=sampler)
    steps = []
    latents, image = run_latents(model, request, composite_extensions(request, model),
                                 on_step=lambda index, total, preview: steps.append(index))
    assert bool(latents.isfinite().all()) and image.shape == (SIZE, SIZE, 3)
    assert steps == list(range(len(steps))) and len(steps) >= request.steps


def test_attention_regions_are_off_while_pieces_run_alone_and_on_afterwards(models, monkeypatch):
    model = models["sd15"]
    request = request_with([CompositePiece(left_half(), PIECE)],
                           regions=(RegionSpec(1.0 - left_half(), "a white horse"),))
    extensions = composite_extensions(request, model)
    assert [type(e) for e in extensions] == [CompositeExtension, AttentionCoupleExtension]
    biased = []
    original = RegionAttnProcessor.__call__

    def spy(self, attn, hidden_states, encoder_hidden_states=None, **kwargs):
        biased.append(self.bias.enabled)
        return original(self, attn, hidden_states, encoder_hidden_states, **kwargs)

    monkeypatch.setattr(RegionAttnProcessor, "__call__", spy)
    run_latents(model, request, extensions)
    layers = len(biased) // request.steps
    assert biased == [False] * (2 * layers) + [True] * (2 * layers)


@pytest.mark.parametrize("fields, match", [
    (dict(pieces=()), "at least one piece"),
    (dict(composite_step=1.5), "composite step"),
    (dict(pieces=(CompositePiece(np.ones((SIZE, SIZE), np.float32), PIECE, image=np.zeros((8, 8, 3), np.uint8)),)),
     "image of piece 1"),
])
def test_bad_composite_input_is_a_request_error(models, fields, match):
    values = dict(pieces=(CompositePiece(left_half(), PIECE),))
    values.update(fields)
    request = request_with(values.pop("pieces"), **values)
    with pytest.raises(RequestError, match=match):
        run_latents(models["sd15"], request, composite_extensions(request, models["sd15"]))
