"""Document, layers and the commands that change them."""

from __future__ import annotations

import numpy as np
import pytest

from canvas.model.commands import (
    AddLayer,
    AddStroke,
    MoveLayer,
    RemoveLayer,
    ReplacePixels,
    SetProperty,
    SetSetting,
    SetTransform,
)
from canvas.model.document import MAX_LAYERS, Document, DocumentError, GenerationSettings
from canvas.model.layers import ImageLayer, LoraRef, MaskLayer, Rect, RegionLayer, ScribbleLayer, Stroke
from tests.canvas.documents import every_kind_document


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-1, 5), (16385, 10), (10, 100000)])
def test_document_size_is_checked(size):
    with pytest.raises(DocumentError, match="px per side"):
        Document(*size)


def test_add_remove_move_emit_events_and_undo():
    doc = Document(10, 10)
    events = []
    doc.events.layer_added.connect(lambda layer, i: events.append(("added", layer.name, i)))
    doc.events.layer_removed.connect(lambda layer, i: events.append(("removed", layer.name, i)))
    doc.events.layer_moved.connect(lambda layer, a, b: events.append(("moved", layer.name, a, b)))
    a, b, c = ImageLayer(name="a"), MaskLayer(name="b"), RegionLayer(name="c")
    for layer in (a, b, c):
        doc.execute(AddLayer(layer))
    doc.execute(MoveLayer(c, 0))
    assert [la.name for la in doc] == ["c", "a", "b"]
    doc.execute(RemoveLayer(a))
    assert [la.name for la in doc] == ["c", "b"]
    doc.undo()
    assert [la.name for la in doc] == ["c", "a", "b"]
    doc.undo()
    assert [la.name for la in doc] == ["a", "b", "c"]
    assert events == [("added", "a", 0), ("added", "b", 1), ("added", "c", 2), ("moved", "c", 2, 0),
                      ("removed", "a", 1), ("added", "a", 1), ("moved", "c", 0, 2)]


def test_add_layer_at_an_index_and_find_by_id():
    doc = Document(4, 4)
    a, b = ImageLayer(name="a"), ImageLayer(name="b")
    doc.execute(AddLayer(a))
    doc.execute(AddLayer(b, 0))
    assert doc.layers == [b, a] and doc.index_of(a) == 1
    assert doc.find(a.id) is a and doc.find("nope") is None
    assert doc.layers_of(ImageLayer) == [b, a] and doc.layers_of(MaskLayer) == []
    with pytest.raises(DocumentError, match="not in this document"):
        doc.index_of(ImageLayer(name="stranger"))


def test_removing_the_active_layer_activates_a_neighbour():
    doc = Document(4, 4)
    a, b = ImageLayer(name="a"), ImageLayer(name="b")
    doc.add_layer_untracked(a)
    doc.add_layer_untracked(b)
    seen = []
    doc.events.active_layer_changed.connect(seen.append)
    doc.active_layer = b
    doc.execute(RemoveLayer(b))
    assert doc.active_layer is a and seen == [b, a]
    doc.execute(RemoveLayer(a))
    assert doc.active_layer is None


def test_layer_count_is_limited():
    doc = Document(4, 4)
    for _ in range(MAX_LAYERS):
        doc.add_layer_untracked(MaskLayer())
    with pytest.raises(DocumentError, match="at most"):
        doc.execute(AddLayer(MaskLayer()))
    assert len(doc) == MAX_LAYERS and len(doc.history) == 0


def test_set_property_emits_and_refuses_identity_fields():
    layer = RegionLayer()
    changed = []
    layer.events.changed.connect(changed.append)
    doc = Document(4, 4)
    doc.execute(SetProperty(layer, "prompt", "海"))
    doc.undo()
    assert changed == ["prompt", "prompt"] and layer.prompt == ""
    for bad in ("id", "events", "no_such_field"):
        with pytest.raises(AttributeError):
            SetProperty(layer, bad, 1)


def test_set_property_strokes_also_signals_strokes_changed():
    layer = ScribbleLayer()
    fired = []
    layer.events.strokes_changed.connect(lambda: fired.append(1))
    Document(4, 4).execute(SetProperty(layer, "strokes", (Stroke(((1.0, 1.0),)),)))
    assert fired == [1]


def test_set_transform_changes_only_given_fields():
    layer = ImageLayer(x=1, y=2, scale=3, rotation=4)
    doc = Document(4, 4)
    doc.execute(SetTransform(layer, scale=2, opacity=0.1))  # opacity is not a transform field
    assert (layer.x, layer.y, layer.scale, layer.rotation, layer.opacity) == (1, 2, 2.0, 4, 1.0)
    doc.undo()
    assert layer.scale == 3


def test_replace_pixels_undo_and_memory_accounting():
    layer = MaskLayer(pixels=np.zeros((4, 4), np.uint8))
    doc = Document(4, 4)
    dirty = []
    layer.events.pixels_changed.connect(dirty.append)
    new = np.full((8, 8), 255, np.uint8)
    cmd = doc.execute(ReplacePixels(layer, "pixels", new, label="Invert"))
    assert layer.pixels is new and cmd.nbytes == 16 + 64 and dirty == [Rect(0, 0, 8, 8)]
    doc.undo()
    assert layer.pixels.shape == (4, 4) and doc.history.redo_label == "Invert"
    region = RegionLayer(mask=np.ones((4, 4), np.uint8))
    doc.execute(ReplacePixels(region, "mask", None))
    assert region.mask is None
    doc.undo()
    assert region.mask is not None


def test_add_stroke_undo_removes_exactly_that_stroke():
    layer = ScribbleLayer()
    same = Stroke(((1.0, 2.0),))
    doc = Document(4, 4)
    doc.execute(AddStroke(layer, same))
    doc.execute(AddStroke(layer, Stroke(((1.0, 2.0),))))  # equal value, a different stroke
    doc.undo()
    assert len(layer.strokes) == 1 and layer.strokes[0] is same
    doc.redo()
    assert len(layer.strokes) == 2


def test_set_setting_undo_merge_and_unknown_names():
    doc = Document(4, 4)
    names = []
    doc.events.settings_changed.connect(names.append)
    for text in ("a", "ab", "abc"):
        doc.execute(SetSetting("prompt", text, merge_key="typing"))
    assert len(doc.history) == 1 and doc.settings.prompt == "abc"
    doc.undo()
    assert doc.settings.prompt == ""
    with pytest.raises(DocumentError, match="Unknown generation setting"):
        doc.execute(SetSetting("no_such_setting", 1))
    assert names == ["prompt"] * 4


def test_generation_settings_from_dict_takes_only_values_of_the_fields_type_and_ignores_unknown_keys():
    # Nothing is coerced: bool("false") is True, so a string "false" used to turn LCM on.
    s = GenerationSettings.from_dict({"steps": "30", "cfg": 5, "lcm": "false", "color_match": 1, "prompt": 12,
                                      "future": True, "seed": "not a number", "batch_count": 2.0,
                                      "clip_skip": True, "mode": ["inpaint"], "loras": (("a", 1.0),)})
    assert (s.steps, s.cfg, s.lcm, s.color_match, s.prompt, s.seed) == (20, 5.0, False, False, "", -1)
    assert (s.batch_count, s.clip_skip, s.mode) == (2, 1, "generate")
    assert s.loras == [("a", 1.0)]
    on = GenerationSettings.from_dict({"lcm": True, "steps": 30, "seed": 2**40, "cfg": 10**400})
    assert (on.lcm, on.steps, on.seed, on.cfg) == (True, 30, 2**40, 7.0)
    assert GenerationSettings.from_dict(GenerationSettings(prompt="x").to_dict()) == GenerationSettings(prompt="x")


def test_same_as_compares_every_field_exactly():
    a, b = every_kind_document(), every_kind_document()
    for la, lb in zip(a.layers, b.layers):
        lb.id = la.id
    assert a.same_as(b)
    b.layers[1].pixels[0, 0, 0] ^= 1
    assert not a.same_as(b)
    b.layers[1].pixels[0, 0, 0] ^= 1
    b.layers[6].loras = (LoraRef("cat-style", 0.7000001), b.layers[6].loras[1])
    assert not a.same_as(b)
    b.layers[6].loras = a.layers[6].loras
    b.settings.cfg = 6.4
    assert not a.same_as(b)
    b.settings.cfg = a.settings.cfg
    b.layers[7].mask = None
    assert not a.same_as(b)


def test_same_as_distinguishes_kinds_and_dtypes():
    assert not ImageLayer().same_as(MaskLayer())
    assert not MaskLayer(pixels=np.zeros((2, 2), np.uint8)).same_as(MaskLayer(pixels=np.zeros((2, 2), np.int16)))
    x = MaskLayer(pixels=np.zeros((2, 2), np.uint8))
    y = MaskLayer(pixels=np.zeros((2, 2), np.uint8), id=x.id)
    assert x.same_as(y)


def test_region_coverage_of_rectangles_and_painted_masks():
    assert RegionLayer(rect=(-2, 1, 4, 10)).coverage(3, 3).tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 0]]
    painted = RegionLayer(mask=np.array([[255, 51]], np.uint8))
    assert np.array_equal(painted.coverage(3, 2), np.array([[1, 0.2, 0], [0, 0, 0]], np.float32))


def test_image_layer_matrix_and_bounds():
    layer = ImageLayer(pixels=np.zeros((10, 20, 4), np.uint8), x=5, y=7, scale=2, rotation=90)
    assert np.allclose(layer.matrix() @ [1, 0, 1], [5, 9, 1])  # +u goes down on screen
    assert np.allclose(layer.bounds(), (-15, 7, 5, 47))


def test_rect_helpers():
    r = Rect(2, 3, 4, 5)
    assert r.union(Rect(0, 0, 0, 0)) == r and Rect(0, 0, 0, 0).union(r) == r
    assert r.union(Rect(10, 0, 1, 1)) == Rect(2, 0, 9, 8)
    assert r.intersect(Rect(4, 4, 10, 10)) == Rect(4, 4, 2, 4)
    assert r.clip(3, 100) == Rect(2, 3, 1, 5) and r.clip(1, 1).empty
    assert np.zeros((10, 10))[r.slices].shape == (5, 4)


def test_generation_settings_from_dict_skips_values_it_cannot_convert():
    s = GenerationSettings.from_dict({"steps": float("inf"), "seed": float("nan"), "cfg": "x", "loras": 5})
    assert (s.steps, s.seed, s.cfg, s.loras) == (20, -1, 7.0, [])
