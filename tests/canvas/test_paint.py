"""Brush dabs, strokes and whole-mask commands (canvas.model.paint; no Qt)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canvas.model.commands import AddLayer
from canvas.model.document import Document
from canvas.model.history import StrokeRecorder
from canvas.model.layers import ImageLayer, MaskLayer, Rect, RegionLayer, ScribbleLayer
from canvas.model.paint import (
    Brush,
    DabStroke,
    PaintError,
    clear_mask,
    dab_alpha,
    dab_rect,
    fill_mask,
    invert_mask,
    sample_color,
    stroke_positions,
)


def test_brush_values_are_clamped():
    b = Brush(size=0, hardness=3, opacity=-1, spacing=0)
    assert (b.size, b.hardness, b.opacity) == (1.0, 1.0, 0.0)
    assert b.spacing == 0.01 and b.step == 0.5


def test_hard_dab_covers_the_circle_area_with_an_antialiased_edge():
    brush = Brush(size=20, hardness=1.0)
    rect = dab_rect(50.0, 50.0, brush.extent)
    alpha = dab_alpha(50.0, 50.0, brush, rect)
    assert alpha.sum() == pytest.approx(math.pi * 10 ** 2, rel=0.01)
    assert alpha.max() == 1.0 and alpha.min() == 0.0
    partial = (alpha > 0) & (alpha < 1)
    assert 0 < partial.sum() < 2 * math.pi * 10 * 1.5  # a thin ring, not a blur


def test_soft_dab_falls_off_from_the_centre():
    brush = Brush(size=40, hardness=0.0)
    rect = dab_rect(20.0, 20.0, brush.extent)
    alpha = dab_alpha(20.0, 20.0, brush, rect)
    row = alpha[20 - rect.y, 20 - rect.x:]
    assert row[0] > 0.99
    assert np.all(np.diff(row) <= 1e-6)  # never rises going outwards
    assert row[20:].max() == 0.0  # pixel centres 20.5 px out and beyond: past the radius


def test_single_pixel_brush_paints_one_pixel():
    mask = np.zeros((8, 8), np.uint8)
    DabStroke(mask, Brush(size=1, hardness=1.0)).begin(3.5, 4.5)
    assert np.argwhere(mask).tolist() == [[4, 3]] and mask[4, 3] == 255


def test_dab_positions_are_evenly_spaced_across_segments():
    points = [(0.0, 0.0), (3.0, 0.0), (10.0, 0.0), (10.0, 4.0)]
    carried, placed = 0.0, []
    for a, b in zip(points, points[1:]):
        got, carried = stroke_positions(a, b, 2.0, carried)
        placed += got
    # walking 14 px along the polyline, one dab every 2 px
    distances = []
    for x, y in placed:
        distances.append(x if y == 0.0 else 10.0 + y)
    assert distances == pytest.approx([2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0])


def test_stroke_paints_along_the_path_and_reports_the_dirty_rect():
    mask = np.zeros((64, 96), np.uint8)
    stroke = DabStroke(mask, Brush(size=8, hardness=1.0))
    first = stroke.begin(10.0, 20.0)
    second = stroke.extend(60.0, 20.0)
    assert mask[20, 10] == 255 and mask[20, 35] == 255 and mask[20, 60] == 255
    assert mask[40, 35] == 0 and mask[20, 80] == 0
    changed = np.argwhere(mask)
    box = first.union(second)
    assert changed[:, 0].min() >= box.y and changed[:, 0].max() < box.y + box.h
    assert changed[:, 1].min() >= box.x and changed[:, 1].max() < box.x + box.w
    assert stroke.bounds == box


def test_opacity_caps_a_stroke_and_builds_up_across_strokes():
    mask = np.zeros((32, 32), np.uint8)
    brush = Brush(size=10, hardness=1.0, opacity=0.5)
    s = DabStroke(mask, brush)
    s.begin(16, 16)
    for _ in range(5):  # scrubbing over the same spot within one stroke does not build up
        s.extend(20, 16)
        s.extend(16, 16)
    assert mask[16, 16] == 128
    DabStroke(mask, brush).begin(16, 16)
    assert mask[16, 16] == 192  # 128 + (255 - 128) * 0.5, rounded


def test_eraser_lowers_values_with_its_opacity():
    mask = np.full((32, 32), 200, np.uint8)
    DabStroke(mask, Brush(size=6, hardness=1.0, opacity=0.25), "erase").begin(10, 10)
    assert mask[10, 10] == 150 and mask[30, 30] == 200


def test_stroke_touches_before_painting_so_undo_restores_exactly():
    doc = Document(128, 128)
    layer = MaskLayer(pixels=np.random.default_rng(1).integers(0, 255, (128, 128), dtype=np.uint8))
    doc.execute(AddLayer(layer))
    start = layer.pixels.copy()
    recorder = StrokeRecorder(layer)
    stroke = DabStroke(layer.pixels, Brush(size=30, hardness=0.3), touch=recorder.touch)
    stroke.begin(5, 5)
    stroke.extend(120, 90)
    patch = recorder.finish()
    doc.history.record(patch)
    assert not np.array_equal(layer.pixels, start)
    doc.undo()
    assert np.array_equal(layer.pixels, start)


def test_a_dab_on_a_huge_mask_only_works_on_its_own_area():
    mask = np.zeros((4096, 4096), np.uint8)
    touched = []
    stroke = DabStroke(mask, Brush(size=16), touch=touched.append)
    dirty = stroke.begin(2000.0, 3000.0)
    assert touched == [dirty] and dirty.w <= 18 and dirty.h <= 18
    assert np.count_nonzero(mask) == np.count_nonzero(mask[dirty.slices])


def test_stroke_clips_at_the_edges():
    mask = np.zeros((16, 16), np.uint8)
    s = DabStroke(mask, Brush(size=10, hardness=1.0))
    assert s.begin(-20, -20).empty
    rect = s.extend(0.0, 0.0)
    assert rect.x == 0 and rect.y == 0 and mask[0, 0] == 255


def test_dab_stroke_rejects_arrays_it_cannot_paint():
    with pytest.raises(PaintError, match="8-bit masks"):
        DabStroke(np.zeros((4, 4, 4), np.uint8), Brush())
    with pytest.raises(PaintError, match="8-bit masks"):
        DabStroke(np.zeros((4, 4), np.float32), Brush())
    with pytest.raises(PaintError, match="brush mode"):
        DabStroke(np.zeros((4, 4), np.uint8), Brush(), "smudge")


@settings(max_examples=30, deadline=None)
@given(
    before=st.integers(0, 255),
    opacity=st.floats(0.0, 1.0),
    hardness=st.floats(0.0, 1.0),
    size=st.floats(2.0, 30.0),
    path=st.lists(st.tuples(st.floats(-10, 50), st.floats(-10, 50)), min_size=1, max_size=5),
    erase=st.booleans(),
)
def test_stroke_values_stay_between_before_and_the_opacity_cap(before, opacity, hardness, size, path, erase):
    mask = np.full((40, 40), before, np.uint8)
    s = DabStroke(mask, Brush(size, hardness, opacity), "erase" if erase else "paint")
    dirty = s.begin(*path[0])
    for p in path[1:]:
        dirty = dirty.union(s.extend(*p))
    values = mask.astype(int)
    if erase:
        floor = before - before * opacity
        assert values.max() <= before and values.min() >= math.floor(floor) - 1
    else:
        cap = before + (255 - before) * opacity
        assert values.min() >= before and values.max() <= math.ceil(cap) + 1
    outside = np.ones_like(mask, bool)
    if not dirty.empty:
        outside[dirty.slices] = False
    assert np.all(mask[outside] == before)


# -- whole-mask commands -------------------------------------------------------------------------

def test_fill_clear_invert_are_undoable_replace_commands():
    doc = Document(8, 6)
    layer = MaskLayer(pixels=np.zeros((6, 8), np.uint8))
    doc.execute(AddLayer(layer))
    layer.pixels[0, 0] = 10
    events = []
    layer.events.pixels_changed.connect(events.append)
    doc.execute(fill_mask(layer, 8, 6))
    assert np.all(layer.pixels == 255) and events[-1] == Rect(0, 0, 8, 6)
    doc.execute(invert_mask(layer, 8, 6))
    assert np.all(layer.pixels == 0)
    doc.undo()
    doc.undo()
    assert layer.pixels[0, 0] == 10 and layer.pixels.sum() == 10
    doc.execute(clear_mask(layer, 8, 6))
    assert layer.pixels.sum() == 0


def test_inverting_a_rectangle_region_makes_a_painted_one():
    doc = Document(10, 10)
    region = RegionLayer(rect=(2, 2, 3, 4))
    doc.execute(AddLayer(region))
    doc.execute(invert_mask(region, 10, 10))
    assert region.mask is not None and region.mask.shape == (10, 10)
    assert region.mask[3, 3] == 0 and region.mask[0, 0] == 255
    assert region.mask[5, 4] == 0 and region.mask[6, 4] == 255
    doc.undo()
    assert region.mask is None


def test_mask_commands_refuse_other_layer_kinds():
    with pytest.raises(PaintError, match="mask and region layers"):
        fill_mask(ScribbleLayer(name="ink"), 4, 4)


# -- sampling ------------------------------------------------------------------------------------

def test_sample_color_flattens_visible_layers_over_white():
    red = np.zeros((4, 4, 4), np.uint8)
    red[..., 0] = 255
    red[..., 3] = 255
    blue = np.zeros((2, 2, 4), np.uint8)
    blue[..., 2] = 255
    blue[..., 3] = 255
    layers = [
        ImageLayer(pixels=red, x=10, y=10),
        ImageLayer(pixels=blue, x=11, y=11, opacity=0.5),
        ImageLayer(pixels=blue.copy(), x=10, y=10, visible=False),
        ImageLayer(pixels=blue.copy(), x=10, y=10, reference=True),
    ]
    assert sample_color(layers, 0.5, 0.5) == (255, 255, 255)
    assert sample_color(layers, 10.5, 10.5) == (255, 0, 0)
    assert sample_color(layers, 11.5, 12.5) == (128, 0, 128)
    rotated = ImageLayer(pixels=red.copy(), x=10, y=0, rotation=90)  # lands on x 6..10, y 0..4
    assert sample_color([rotated], 7.5, 1.5) == (255, 0, 0)
    assert sample_color([rotated], 11.5, 1.5) == (255, 255, 255)
