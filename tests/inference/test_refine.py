"""Collage refine: the strength map, differential denoising by it, colour match and paste-back."""

from __future__ import annotations

import numpy as np
import pytest

from inference.api import GenerationRequest, RegionSpec, RequestError
from inference.sd.loop import generate_image
from inference.sd.prompt import encode_prompt_pair
from inference.sd.refine import (
    RefineExtension,
    bounds_weight,
    build_strength_map,
    match_piece_colors,
    refine_bounds,
    refine_extensions,
)
from inference.sd.regions import AttentionCoupleExtension
from inference.tiny import build_tiny
from tests.inference.loop_probes import RecordLatents

SIZE = 96


@pytest.fixture(scope="module")
def models():
    import torch

    torch.set_num_threads(1)
    return {family: build_tiny(family) for family in ("sd15", "sdxl")}


def hand_made_collage() -> tuple[np.ndarray, np.ndarray]:
    """A gradient background with a red square pasted hard and a half-transparent blue piece."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([x * 2, y * 2, np.full_like(x, 90)], -1).astype(np.uint8)
    alpha = np.zeros((2, SIZE, SIZE), np.float32)
    alpha[0, 24:48, 32:64] = 1.0
    alpha[1, 60:72, 16:40] = 0.4
    image[24:48, 32:64] = (210, 40, 40)
    image[60:72, 16:40] = (0.6 * image[60:72, 16:40] + 0.4 * np.array([40, 40, 210])).astype(np.uint8)
    return image, alpha


def refine_request(image, alpha, **fields) -> GenerationRequest:
    values = dict(mode="refine", prompt="a photo", negative="", width=SIZE, height=SIZE, steps=4, sampler="Euler",
                  seed=2, cfg=5.0, init_image=image, collage_alpha=alpha, refine_edge_width=16)
    values.update(fields)
    return GenerationRequest(**values)


def run_refine(model, request, extra=(), on_step=None):
    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative)
    return generate_image(model, request, seed=request.seed, cond=cond, uncond=uncond,
                          extensions=[*refine_extensions(request, model), *extra],
                          on_step=on_step or (lambda *args: None), emit=lambda event: None)


# ---- acceptance (5b): the strength map ---------------------------------------------------------------


def test_strength_map_is_highest_on_the_edge_band_of_a_hand_made_collage():
    _, alpha = hand_made_collage()
    strength = build_strength_map(alpha, edge_width=16, edge_strength=0.8, inside_strength=0.45,
                                  background_strength=0.1)
    assert strength.dtype == np.float32 and strength.shape == (SIZE, SIZE)
    # On the red square's outline (both sides of it) the map is the edge strength, and nowhere higher.
    assert strength[36, 31] == pytest.approx(0.8) and strength[36, 32] == pytest.approx(0.8)
    assert strength.max() == pytest.approx(0.8)
    assert strength[36, 48] == pytest.approx(0.45)  # deep inside the square
    assert strength[5, 90] == pytest.approx(0.1)  # untouched background
    # Band of 16 px straddling the outline: 8 px each side, falling off smoothly.
    row = strength[36, 16:32]
    assert row[0] == pytest.approx(0.1) and np.all(np.diff(row) >= 0)
    row_inside = strength[36, 32:48]
    assert np.all(np.diff(row_inside) <= 0) and row_inside[-1] == pytest.approx(0.45)
    assert np.abs(np.diff(strength, axis=1)).max() < 0.2  # smooth: no jumps


def test_a_semi_transparent_piece_has_an_outline_and_weaker_inside():
    _, alpha = hand_made_collage()
    strength = build_strength_map(alpha, edge_width=8, edge_strength=0.75, inside_strength=0.45,
                                  background_strength=0.15)
    assert strength[60, 28] == pytest.approx(0.75)  # its outline
    assert strength[66, 28] == pytest.approx(0.15 + 0.3 * 0.4)  # inside: coverage 0.4


def test_no_edge_band_leaves_coverage_only():
    _, alpha = hand_made_collage()
    strength = build_strength_map(alpha, edge_width=0, edge_strength=1.0, inside_strength=0.5,
                                  background_strength=0.0)
    np.testing.assert_allclose(np.unique(strength), [0.0, 0.5 * 0.4, 0.5], rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (dict(collage_alpha=None), "collage pieces"),
    (dict(collage_alpha=np.zeros((1, 8, 8), np.float32)), "empty"),
    (dict(collage_alpha=np.full((1, 8, 8), 2.0, np.float32)), "between 0 and 1"),
    (dict(edge_strength=1.5), "edge strength"),
    (dict(edge_width=-3), "edge width"),
])
def test_bad_refine_input_is_a_request_error(bad, match):
    values = dict(collage_alpha=hand_made_collage()[1], edge_width=8, edge_strength=0.7)
    values.update(bad)
    alpha = values.pop("collage_alpha")
    with pytest.raises(RequestError, match=match):
        build_strength_map(alpha, **values)


def test_bounds_weight_fades_in_and_is_zero_outside():
    weight = bounds_weight((40, 40), (10, 0, 30, 40), feather=4)
    assert weight[:, :10].max() == 0.0 and weight[:, 30:].max() == 0.0
    assert weight[20, 10] == pytest.approx(0.2) and weight[20, 20] == 1.0
    assert weight[0, 20] == 1.0  # the bounds reach the canvas border there: nothing to fade into


# ---- acceptance (5a): pixels outside the refine bounds are the collage, byte for byte -------------------


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_pixels_outside_the_refine_bounds_are_byte_identical(models, family):
    image, alpha = hand_made_collage()
    request = refine_request(image, alpha, color_match=True)
    out = run_refine(models[family], request)
    x0, y0, x1, y1 = refine_bounds(alpha, request.refine_edge_width)
    assert (x0, y0, x1, y1) == (8, 16, 72, 80)
    outside = np.ones((SIZE, SIZE), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], image[outside])
    assert (out[24:48, 32:64] != image[24:48, 32:64]).any()  # the piece itself was refined


def test_where_the_map_is_zero_the_collage_is_kept_even_inside_the_bounds(models):
    image, alpha = hand_made_collage()
    request = refine_request(image, alpha, refine_background_strength=0.0, refine_inside_strength=0.0)
    out = run_refine(models["sd15"], request)
    strength = build_strength_map(alpha, edge_width=16, edge_strength=0.75, inside_strength=0.0,
                                  background_strength=0.0)
    assert np.array_equal(out[strength == 0], image[strength == 0])
    assert (out[strength > 0.5] != image[strength > 0.5]).any()


def test_the_run_starts_at_the_strongest_pixel_and_weak_pixels_are_held(models):
    image, alpha = hand_made_collage()
    request = refine_request(image, alpha, steps=8, refine_edge_strength=0.5, refine_inside_strength=0.25,
                             refine_background_strength=0.1, strength=1.0)
    steps = []
    recorder = RecordLatents()
    run_refine(models["sd15"], request, extra=[recorder], on_step=lambda index, total, latents: steps.append(total))
    assert steps == [4] * 4  # int(8 * 0.5): the request's own strength does not apply in refine
    # The background (strength 0.1 -> int(0.8) = 0 steps) is held to the collage's latents to the end.
    held = (recorder.latents - recorder.image_latents)[..., 0:1, 11:12].abs().max().item()
    moved = (recorder.latents - recorder.image_latents)[..., 4, 5].abs().max().item()
    assert held == 0.0 and moved > 0.0


def test_color_match_moves_pieces_towards_their_surroundings():
    image = np.full((64, 64, 3), 100, np.uint8)
    image[20:40, 20:40] = (220, 100, 100)
    alpha = np.zeros((1, 64, 64), np.float32)
    alpha[0, 20:40, 20:40] = 1.0
    matched = match_piece_colors(image, alpha, band=8, amount=0.5)
    assert matched[30, 30, 0] == 160  # half-way from 220 to the surroundings' 100
    assert np.array_equal(matched[:20], image[:20])  # only the piece changes


def test_regions_ride_along_in_refine(models):
    image, alpha = hand_made_collage()
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[:, :48] = 1.0
    request = refine_request(image, alpha, regions=(RegionSpec(mask, "a red brick wall"),))
    extensions = refine_extensions(request, models["sd15"])
    assert [type(e) for e in extensions] == [RefineExtension, AttentionCoupleExtension]
    with_regions = run_refine(models["sd15"], request)
    without = run_refine(models["sd15"], refine_request(image, alpha))
    assert (with_regions != without).any()


def test_refine_needs_the_collage_image(models):
    _, alpha = hand_made_collage()
    request = refine_request(None, alpha)
    with pytest.raises(RequestError, match="flattened collage"):
        run_refine(models["sd15"], request)
