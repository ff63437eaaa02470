"""The pixel rules of instruction editing, without any model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.api import RequestError
from inference.edit.images import (
    as_rgb,
    composite_annotation,
    feather_mask,
    paste_back,
    restore_copied_strokes,
    side_by_side,
    working_size,
)
from inference.edit.preview import latents_to_rgb
from inference.families.latents import FLUX_PREVIEW, QWEN_IMAGE_PREVIEW


def noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_annotation_is_alpha_composited_over_the_picture():
    image = np.full((4, 4, 3), 100, np.uint8)
    annotation = np.zeros((4, 4, 4), np.uint8)
    annotation[0, 0] = (255, 0, 0, 255)
    annotation[1, 1] = (200, 200, 200, 128)
    out = composite_annotation(image, annotation)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[1, 1]) == (150, 150, 150)  # 200 * 128/255 + 100 * 127/255, rounded
    assert np.array_equal(out[2:], image[2:])


def test_rgba_inputs_flatten_onto_white_and_other_shapes_are_refused():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)
    flat = as_rgb(rgba, "reference image 1")
    assert tuple(flat[0, 0]) == (0, 0, 0) and tuple(flat[1, 1]) == (255, 255, 255)
    with pytest.raises(RequestError, match="reference image 2"):
        as_rgb(np.zeros((2, 2, 2), np.uint8), "reference image 2")
    with pytest.raises(RequestError, match="8-bit"):
        as_rgb(np.zeros((2, 2, 3), np.float32), "image to edit")


def test_working_size_keeps_the_area_and_aspect_on_the_grid():
    assert working_size(512, 512, 1024 * 1024, 16) == (1024, 1024)
    w, h = working_size(1920, 1080, 1024 * 1024, 16)
    assert w % 16 == 0 and h % 16 == 0
    assert abs(w / h - 1920 / 1080) < 0.03 and abs(w * h - 1024 * 1024) < 0.05 * 1024 * 1024
    assert working_size(10, 1000, 64 * 64, 32) == (32, 640)  # never below one grid cell
    preferred = ((672, 1568), (1024, 1024), (1568, 672))
    assert working_size(300, 700, 1024 * 1024, 16, preferred) == (672, 1568)
    assert working_size(900, 880, 1024 * 1024, 16, preferred) == (1024, 1024)


def test_side_by_side_scales_references_to_the_picture_height():
    row = side_by_side([noise((40, 30, 3)), noise((20, 20, 3), 1), noise((80, 40, 3), 2)])
    assert row.shape == (40, 30 + 40 + 20, 3)


def test_feather_is_exactly_zero_far_from_the_mask_and_full_deep_inside():
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1.0
    feather = feather_mask(mask, 4)
    assert feather.dtype == np.uint8
    assert feather[32, 32] == 255 and feather[0, 0] == 0 and feather[16, 32] not in (0, 255)
    assert np.array_equal(feather_mask(mask, 0), (mask * 255).astype(np.uint8))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), blur=st.integers(0, 6), x=st.integers(0, 20), y=st.integers(0, 20))
def test_paste_back_keeps_every_byte_where_the_feather_is_zero(seed, blur, x, y):
    original, edited = noise((32, 32, 3), seed), noise((32, 32, 3), seed + 1)
    mask = np.zeros((32, 32), np.float32)
    mask[y : y + 10, x : x + 10] = 1.0
    feather = feather_mask(mask, blur)
    out = paste_back(original, edited, feather)
    assert np.array_equal(out[feather == 0], original[feather == 0])
    assert np.array_equal(out[feather == 255], edited[feather == 255])
    between = (feather > 0) & (feather < 255)
    low = np.minimum(original, edited)[between]
    high = np.maximum(original, edited)[between]
    assert ((out[between] >= low) & (out[between] <= high)).all()


def test_copied_strokes_give_way_to_the_original_and_repainted_ones_stay():
    original = np.full((8, 8, 3), 90, np.uint8)
    annotation = np.zeros((8, 8, 4), np.uint8)
    annotation[2, :] = (255, 0, 0, 255)
    shown = composite_annotation(original, annotation)
    result = shown.copy()  # the model reproduced the red line...
    result[2, 4:] = (10, 200, 10)  # ...except where it repainted it green
    result[5, :] = (1, 2, 3)  # and it edited something elsewhere

    cleaned = restore_copied_strokes(result, original, shown, annotation[..., 3])
    assert np.array_equal(cleaned[2, :4], original[2, :4])
    assert np.array_equal(cleaned[2, 4:], result[2, 4:])
    assert np.array_equal(cleaned[5], result[5])
    assert np.array_equal(restore_copied_strokes(result, original, shown, np.zeros((8, 8), np.uint8)), result)


def test_latent_preview_projects_known_channel_counts_and_falls_back_to_grey():
    for family, factors in (("flux-kontext", FLUX_PREVIEW.rgb), ("qwen-edit", QWEN_IMAGE_PREVIEW.rgb)):
        assert len(factors) == 16 and all(len(row) == 3 for row in factors)
        latents = np.zeros((16, 5, 7), np.float32)
        latents[0] = 4.0
        rgb = latents_to_rgb(latents, family)
        assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
        assert (rgb == rgb[0, 0]).all() and tuple(rgb[0, 0]) != (128, 128, 128)
    ip2p = latents_to_rgb(np.ones((4, 2, 2), np.float32), "ip2p")
    assert tuple(ip2p[0, 0]) == (151, 209, 142)  # SPEC §5 SD1.5 factors summed per colour
    grey = latents_to_rgb(np.zeros((3, 2, 2), np.float32), "flux-kontext")
    assert tuple(grey[0, 0]) == (128, 128, 128)
