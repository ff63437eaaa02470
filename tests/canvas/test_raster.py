"""Rasterisation helpers: colours, dabs, pen strokes, affine warps."""

from __future__ import annotations

import numpy as np
import pytest

from canvas.model.layers import Rect, Stroke
from canvas.model.raster import (
    StrokeCanvas,
    dab_rect,
    exact_matrix,
    footprint,
    integer_offset,
    paint_dab,
    parse_color,
    render_strokes,
    stroke_coverage,
    to_uint8,
    warp_rgba,
)


def test_parse_color_forms_and_errors():
    assert parse_color("#FF8000") == (255, 128, 0) and parse_color("#0f8") == (0, 255, 136)
    for bad in ("red", "#12345", "#gg0000", "", None, "ff0000"):
        with pytest.raises(ValueError, match="not a colour"):
            parse_color(bad)


def test_to_uint8_rounds_half_up_and_clips():
    assert to_uint8(np.array([-3, 0.49, 0.5, 127.5, 254.5, 300], np.float32)).tolist() == [0, 0, 1, 128, 255, 255]


def test_dab_rect_covers_every_pixel_the_dab_can_touch():
    pixels = np.zeros((40, 40), np.uint8)
    touched = paint_dab(pixels, 17.3, 20.8, 6.2)
    rows, cols = np.nonzero(pixels)
    r = dab_rect(17.3, 20.8, 6.2)
    assert r.x <= cols.min() and cols.max() < r.x + r.w and r.y <= rows.min() and rows.max() < r.y + r.h
    assert touched == r


def test_dab_at_the_edge_is_clipped_and_off_canvas_does_nothing():
    pixels = np.zeros((10, 10), np.uint8)
    assert paint_dab(pixels, 0.0, 0.0, 3.0) == Rect(0, 0, 4, 4)
    assert paint_dab(pixels, -50.0, 5.0, 3.0).empty
    assert pixels[0, 0] == 255 and pixels[9, 9] == 0


def test_repeated_dabs_do_not_build_up_beyond_the_value():
    pixels = np.zeros((10, 10), np.uint8)
    for _ in range(5):
        paint_dab(pixels, 5.0, 5.0, 3.0, value=100)
    assert pixels.max() == 100


def test_a_point_stroke_is_a_round_dot():
    rect, cov = stroke_coverage([(5.0, 5.0)], 4.0, 10, 10)
    assert cov[5 - rect.y, 5 - rect.x] == 1.0 and cov[4 - rect.y, 4 - rect.x] == 1.0  # centres 0.71 px away
    assert np.allclose(cov, cov.T) and np.allclose(cov, cov[::-1, ::-1])  # symmetric around (5, 5)


def test_stroke_overlaps_do_not_accumulate():
    _, once = stroke_coverage([(2.0, 5.0), (8.0, 5.0)], 3.0, 10, 10)
    _, back_and_forth = stroke_coverage([(2.0, 5.0), (8.0, 5.0), (2.0, 5.0), (8.0, 5.0)], 3.0, 10, 10)
    assert np.array_equal(once, back_and_forth) and once.max() == 1.0


def test_long_strokes_batch_segments_identically():
    points = [(float(x), 20 + 10 * np.sin(x / 5)) for x in range(0, 200, 2)]
    rect, cov = stroke_coverage(points, 5.0, 200, 40)
    for i in range(len(points) - 1):  # every segment drawn alone is contained in the batched result
        r, c = stroke_coverage(points[i:i + 2], 5.0, 200, 40)
        view = cov[r.y - rect.y:r.y - rect.y + r.h, r.x - rect.x:r.x - rect.x + r.w]
        assert (view >= c).all()


def test_render_strokes_later_strokes_cover_earlier_ones():
    strokes = [Stroke(((0.0, 1.5), (10.0, 1.5)), "#ff0000", 3.0), Stroke(((5.5, -5.0), (5.5, 10.0)), "#0000ff", 1.0)]
    image, area = render_strokes(strokes, 8, 4)
    assert image[1, 2].tolist() == [255, 0, 0, 255] and image[1, 5].tolist() == [0, 0, 255, 255]
    assert image[3, 5].tolist() == [0, 0, 255, 255] and image[3, 2, 3] == 0
    assert area.max() == 1.0 and area[3, 2] == 0


def test_stroke_canvas_covers_only_its_rect():
    canvas = StrokeCanvas(Rect(10, 10, 5, 5))
    canvas.draw([(12.5, 12.5)], "#ffffff", 1.0)
    canvas.draw([(0.0, 0.0)], "#ffffff", 1.0)  # outside: nothing
    assert canvas.rgba().shape == (5, 5, 4) and canvas.rgba()[2, 2, 3] == 255 and canvas.rgba()[..., 3].sum() == 255


def test_exact_matrix_quarter_turns_and_offsets():
    assert np.array_equal(exact_matrix(3, 4, 1, 90)[:2, :2], [[0, -1], [1, 0]])
    assert np.array_equal(exact_matrix(0, 0, 2, -270)[:2, :2], [[0, -2], [2, 0]])
    assert integer_offset(exact_matrix(3, -4, 1, 720)) == (3, -4)
    assert integer_offset(exact_matrix(3.5, 4, 1, 0)) is None and integer_offset(exact_matrix(3, 4, 1, 90)) is None
    assert footprint(exact_matrix(1.5, 0, 1, 0), 2, 2) == Rect(1, 0, 3, 2)


def test_warp_of_a_zero_scale_layer_is_empty():
    rgb, alpha = warp_rgba(np.full((4, 4, 4), 255, np.uint8), exact_matrix(1, 1, 0.0, 0), Rect(0, 0, 4, 4))
    assert not alpha.any() and not rgb.any()


def test_warp_keeps_colours_under_partial_alpha_exact():
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[..., :3] = (200, 100, 50)
    pixels[..., 3] = 128
    rgb, alpha = warp_rgba(pixels, exact_matrix(0, 0, 1.5, 30), Rect(0, 0, 3, 3))
    inside = alpha > 0.4
    assert inside.any()
    straight = rgb[inside] / alpha[inside][:, None]
    assert np.allclose(straight, (200, 100, 50), atol=1e-3)  # no dark fringe from premultiplication


def _reference_warp(pixels, matrix, region, opacity):
    """The warp as it was before issue 17: every pixel of the region evaluated exactly in numpy."""
    from canvas.model.raster import _sample_exact

    inverse = np.linalg.inv(matrix)
    ys, xs = np.divmod(np.arange(region.w * region.h), region.w)
    grad_u = float(np.hypot(inverse[0, 0], inverse[0, 1])) or 1.0
    grad_v = float(np.hypot(inverse[1, 0], inverse[1, 1])) or 1.0
    sample, factor = _sample_exact(np.ascontiguousarray(pixels), inverse, region.x + xs + 0.5, region.y + ys + 0.5,
                                   opacity, grad_u, grad_v)
    rgb = (sample[:, :3] * factor[:, None]).reshape(region.h, region.w, 3)
    return rgb, (sample[:, 3] * factor).reshape(region.h, region.w)


def test_the_fast_warp_equals_the_exact_evaluation_of_every_pixel():
    """Issue 17: the interior is resampled by Pillow on float planes, the outline's fringe exactly: the same
    result as evaluating every pixel (to float rounding), over scales, angles, opacities and edges."""
    rng = np.random.default_rng(7)
    cases = 0
    for trial in range(150):
        ph, pw = (1, int(rng.integers(1, 40))) if trial % 9 == 0 else tuple(int(n) for n in rng.integers(1, 70, 2))
        pixels = rng.integers(0, 256, (ph, pw, 4), dtype=np.uint8)
        if trial % 3 == 0:
            pixels[..., 3] = 255
        scale = float(rng.choice([0.05, 0.4, 1.0, 1.5, 3.0, 8.0]))
        rotation = float(rng.choice([0.0, 90.0, 33.0, -12.5, 180.0, rng.uniform(-360, 360)]))
        matrix = exact_matrix(*rng.uniform(-40, 120, 2), scale, rotation)
        reach = footprint(matrix, pw, ph)
        region = Rect(reach.x - int(rng.integers(-4, 4)), reach.y - int(rng.integers(-4, 4)),
                      reach.w + int(rng.integers(-4, 9)), reach.h + int(rng.integers(-4, 9)))
        if region.empty or integer_offset(matrix) is not None:
            continue
        opacity = float(rng.choice([1.0, 0.5]))
        rgb, alpha = warp_rgba(pixels, matrix, region, opacity)
        want_rgb, want_alpha = _reference_warp(pixels, matrix, region, opacity)
        assert np.abs(rgb - want_rgb).max() < 1e-3 and np.abs(alpha - want_alpha).max() < 1e-5, trial
        cases += 1
    assert cases > 100


def test_a_large_rotated_warp_is_chunked_and_equal_to_the_exact_one():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (300, 260, 4), dtype=np.uint8)
    matrix = exact_matrix(10.25, -30.5, 2.7, 33.0)
    region = footprint(matrix, 260, 300).clip(700, 900)
    assert region.w * region.h > 2 * (1 << 18)  # several chunks
    rgb, alpha = warp_rgba(pixels, matrix, region, 1.0)
    want_rgb, want_alpha = _reference_warp(pixels, matrix, region, 1.0)
    assert np.abs(rgb - want_rgb).max() < 1e-3 and np.abs(alpha - want_alpha).max() < 1e-5
