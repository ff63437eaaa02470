"""History: undo/redo, merging, macros, the byte budget, the clean state, stroke recording."""

from __future__ import annotations

import time

import numpy as np
import pytest

from canvas.model.commands import AddLayer, ReplacePixels, SetProperty, SetSetting, SetTransform
from canvas.model.document import Document
from canvas.model.history import TILE, Macro, StrokeRecorder
from canvas.model.layers import ImageLayer, MaskLayer, Rect
from canvas.model.raster import dab_rect, paint_dab


def test_undo_redo_walk_the_stack_and_report_labels():
    doc = Document(8, 8)
    layer = MaskLayer(name="m", pixels=np.zeros((8, 8), np.uint8))
    doc.execute(AddLayer(layer))
    doc.execute(SetProperty(layer, "name", "renamed"))
    h = doc.history
    assert len(h) == 2 and h.can_undo and not h.can_redo
    assert h.undo_label == "Change name"
    assert doc.undo() and layer.name == "m" and h.redo_label == "Change name"
    assert doc.undo() and doc.layers == [] and not h.can_undo and not doc.undo()
    assert doc.redo() and doc.layers == [layer]
    assert doc.redo() and layer.name == "renamed" and not doc.redo()


def test_a_new_command_discards_the_redo_branch():
    doc = Document(4, 4)
    layer = ImageLayer()
    doc.execute(AddLayer(layer))
    doc.execute(SetProperty(layer, "opacity", 0.5))
    doc.undo()
    doc.execute(SetProperty(layer, "opacity", 0.25))
    assert not doc.history.can_redo
    assert doc.undo() and layer.opacity == 1.0


def test_changed_signal_fires_on_every_stack_change():
    doc = Document(4, 4)
    seen = []
    doc.history.changed.connect(lambda: seen.append(1))
    doc.execute(AddLayer(ImageLayer()))
    doc.undo()
    doc.redo()
    doc.history.mark_clean()
    assert len(seen) == 4


def test_same_merge_key_merges_into_one_step():
    doc = Document(4, 4)
    layer = ImageLayer(opacity=1.0)
    doc.add_layer_untracked(layer)
    for value in (0.9, 0.8, 0.7):
        doc.execute(SetProperty(layer, "opacity", value, merge_key="slider-1"))
    doc.execute(SetProperty(layer, "opacity", 0.6, merge_key="slider-2"))
    assert len(doc.history) == 2
    doc.undo()
    assert layer.opacity == 0.7
    doc.undo()
    assert layer.opacity == 1.0
    doc.redo()
    assert layer.opacity == 0.7


def test_no_merge_key_never_merges_and_different_layers_never_merge():
    doc = Document(4, 4)
    a, b = ImageLayer(), ImageLayer()
    doc.execute(SetProperty(a, "opacity", 0.5))
    doc.execute(SetProperty(a, "opacity", 0.4))
    doc.execute(SetProperty(a, "opacity", 0.3, merge_key="k"))
    doc.execute(SetProperty(b, "opacity", 0.3, merge_key="k"))
    assert len(doc.history) == 4


def test_transform_drag_merges_and_undoes_to_the_start():
    doc = Document(4, 4)
    layer = ImageLayer(x=1.0, y=2.0)
    for step in range(1, 6):
        doc.execute(SetTransform(layer, merge_key="drag", x=1.0 + step, y=2.0 - step))
    doc.execute(SetTransform(layer, merge_key="drag", rotation=45))
    assert len(doc.history) == 1 and (layer.x, layer.y, layer.rotation) == (6.0, -3.0, 45.0)
    doc.undo()
    assert (layer.x, layer.y, layer.rotation) == (1.0, 2.0, 0.0)
    doc.redo()
    assert (layer.x, layer.y, layer.rotation) == (6.0, -3.0, 45.0)


def test_macro_is_one_step_undone_in_reverse_order():
    doc = Document(4, 4)
    layer = ImageLayer(name="a")
    with doc.history.macro("Paste") as macro:
        doc.execute(AddLayer(layer))
        doc.execute(SetProperty(layer, "name", "b"))
        doc.execute(SetProperty(layer, "name", "c"))
        with doc.history.macro("inner"):
            doc.execute(SetSetting("prompt", "x"))
    assert isinstance(macro, Macro) and len(macro.commands) == 4
    assert len(doc.history) == 1 and doc.history.undo_label == "Paste"
    doc.undo()
    assert doc.layers == [] and layer.name == "a" and doc.settings.prompt == ""
    doc.redo()
    assert doc.layers == [layer] and layer.name == "c" and doc.settings.prompt == "x"


def test_empty_macro_records_nothing():
    doc = Document(4, 4)
    with doc.history.macro("nothing"):
        pass
    assert len(doc.history) == 0


def test_budget_drops_the_oldest_steps_but_keeps_the_newest():
    doc = Document(4, 4, history_budget=3000)
    layer = ImageLayer()
    doc.add_layer_untracked(layer)
    for i in range(5):
        # each step keeps the old and the new 16x16x4 array: 2048 bytes
        doc.execute(ReplacePixels(layer, "pixels", np.full((16, 16, 4), i, np.uint8)))
    assert len(doc.history) == 1 and doc.history.nbytes == 2048
    doc.undo()
    assert layer.pixels.max() == 3  # only the newest step survived
    assert not doc.undo()
    big = Document(4, 4, history_budget=10)
    big.add_layer_untracked(layer)
    big.execute(ReplacePixels(layer, "pixels", np.zeros((64, 64, 4), np.uint8)))
    assert len(big.history) == 1  # a single step over budget stays undoable


def test_clean_state_follows_save_undo_redo_and_branches():
    doc = Document(4, 4)
    layer = ImageLayer()
    h = doc.history
    assert h.is_clean
    doc.execute(AddLayer(layer))
    assert not h.is_clean
    h.mark_clean()
    doc.execute(SetProperty(layer, "opacity", 0.5))
    assert not h.is_clean
    doc.undo()
    assert h.is_clean
    doc.redo()
    doc.undo()
    doc.undo()
    assert not h.is_clean
    doc.redo()
    assert h.is_clean
    doc.undo()
    doc.execute(SetProperty(layer, "name", "other branch"))  # the saved state is gone for good
    assert not h.is_clean
    doc.undo()
    assert not h.is_clean


def test_merging_into_the_saved_step_leaves_the_clean_state():
    doc = Document(4, 4)
    layer = ImageLayer()
    doc.execute(SetProperty(layer, "opacity", 0.5, merge_key="s"))
    doc.history.mark_clean()
    doc.execute(SetProperty(layer, "opacity", 0.4, merge_key="s"))
    assert len(doc.history) == 1 and not doc.history.is_clean


def test_budget_dropping_the_saved_state_makes_it_unreachable():
    doc = Document(4, 4, history_budget=2100)
    layer = ImageLayer()
    doc.history.mark_clean()  # clean = before any step
    doc.execute(ReplacePixels(layer, "pixels", np.zeros((16, 16, 4), np.uint8)))
    doc.execute(ReplacePixels(layer, "pixels", np.ones((16, 16, 4), np.uint8)))
    assert len(doc.history) == 1
    doc.undo()
    assert not doc.history.is_clean


def test_clear_forgets_everything_and_is_clean():
    doc = Document(4, 4)
    doc.execute(AddLayer(ImageLayer()))
    doc.history.clear()
    assert not doc.history.can_undo and doc.history.is_clean and doc.history.nbytes == 0


# ---- strokes ----------------------------------------------------------------------------------


def paint_stroke(layer: MaskLayer, points, radius: float, recorder: StrokeRecorder, erase: bool = False) -> None:
    for cx, cy in points:
        recorder.touch(dab_rect(cx, cy, radius))
        paint_dab(layer.pixels, cx, cy, radius, 255, erase=erase)


def test_stroke_recorder_keeps_only_changed_tiles():
    layer = MaskLayer(pixels=np.zeros((256, 256), np.uint8))
    recorder = StrokeRecorder(layer)
    recorder.touch(Rect(0, 0, 256, 256))  # backs up all 16 tiles
    paint_dab(layer.pixels, 70.0, 70.0, 3.0)
    patch = recorder.finish()
    assert [rect for rect, _, _ in patch.tiles] == [Rect(64, 64, TILE, TILE)]
    assert patch.nbytes == 2 * TILE * TILE and patch.bounds == Rect(64, 64, 64, 64)
    assert StrokeRecorder(layer).finish() is None


def test_stroke_patch_undo_redo_and_dirty_rect_event():
    layer = MaskLayer(pixels=np.zeros((100, 130), np.uint8))  # edge tiles are partial
    doc = Document(130, 100)
    doc.add_layer_untracked(layer)
    dirty = []
    layer.events.pixels_changed.connect(dirty.append)
    recorder = StrokeRecorder(layer)
    paint_stroke(layer, [(120.0, 90.0), (125.0, 95.0)], 6.0, recorder)
    after = layer.pixels.copy()
    doc.history.record(recorder.finish())
    doc.undo()
    assert not layer.pixels.any()
    doc.redo()
    assert np.array_equal(layer.pixels, after)
    assert dirty[-1] == Rect(64, 64, 66, 36)


def test_two_hundred_strokes_on_a_4096_mask_each_undoable():
    rng = np.random.default_rng(2024)
    size = 4096
    layer = MaskLayer(pixels=np.zeros((size, size), np.uint8))
    layer.pixels[1000:1100, 1000:3000] = 90  # a non-trivial start state
    doc = Document(size, size)
    doc.add_layer_untracked(layer)
    start = layer.pixels.copy()
    started = time.perf_counter()
    for i in range(200):
        recorder = StrokeRecorder(layer, label=f"stroke {i}")
        erase = i % 5 == 4
        # erasing strokes start on the grey band, so that every stroke changes something
        x, y = (rng.uniform(1000, 3000), 1050.0) if erase else rng.uniform(0, size, 2)
        angle = rng.uniform(0, 2 * np.pi)
        points = [(x + 6 * k * np.cos(angle), y + 6 * k * np.sin(angle)) for k in range(30)]
        paint_stroke(layer, points, float(rng.uniform(4, 24)), recorder, erase=erase)
        doc.history.record(recorder.finish())
    end = layer.pixels.copy()
    assert len(doc.history) == 200
    assert doc.history.nbytes < 256 * 1024 * 1024
    assert not np.array_equal(start, end)
    while doc.undo():
        pass
    assert np.array_equal(layer.pixels, start)
    while doc.redo():
        pass
    assert np.array_equal(layer.pixels, end)
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize("erase", [False, True])
def test_paint_and_erase_dabs(erase):
    pixels = np.full((9, 9), 255 if erase else 0, np.uint8)
    paint_dab(pixels, 4.5, 4.5, 2.0, erase=erase)
    centre, corner = pixels[4, 4], pixels[0, 0]
    if erase:
        assert centre == 0 and corner == 255
    else:
        assert centre == 255 and corner == 0
    # pixel (6, 4): centre distance 2.0 -> coverage 0.5 -> 127.5 rounds half up, painting or erasing
    assert pixels[4, 6] == 128  # 255 * 0.5 both ways


def test_a_stroke_that_changed_nothing_records_no_step():
    layer = MaskLayer(pixels=np.zeros((64, 64), np.uint8))
    doc = Document(64, 64)
    doc.execute(SetSetting("prompt", "before"))
    recorder = StrokeRecorder(layer)
    paint_stroke(layer, [(10.0, 10.0)], 5.0, recorder, erase=True)  # erasing nothing
    doc.history.record(recorder.finish())
    assert len(doc.history) == 1 and doc.history.undo_label == "Change prompt"
