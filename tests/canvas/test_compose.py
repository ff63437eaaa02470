"""compose(): exact expected arrays on small hand-made documents."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from canvas.model import compose as compose_module
from canvas.model.compose import ComposedRegion, Composition, compose
from canvas.model.document import Document, DocumentError
from canvas.model.layers import ImageLayer, LoraRef, MaskLayer, RegionLayer, ScribbleLayer, Stroke
from tests.canvas.documents import every_kind_document, rgba


def doc_with(width: int, height: int, *layers) -> Document:
    doc = Document(width, height)
    for layer in layers:
        doc.add_layer_untracked(layer)
    return doc


def channel(c: Composition, i: int = 0) -> np.ndarray:
    return c.init_image[..., i]


def test_empty_canvas_is_white_with_no_content():
    c = compose(Document(5, 3))
    assert c.width == 5 and c.height == 3
    assert c.init_image.shape == (3, 5, 3) and c.init_image.dtype == np.uint8
    assert (c.init_image == 255).all()
    assert c.init_alpha.dtype == np.float32 and not c.init_alpha.any()
    assert c.has_content is False
    assert c.inpaint_mask is None and c.regions == () and c.references == ()
    assert c.sketch_image is None and c.sketch_mask is None and c.annotation_image is None
    assert c.collage_alpha.shape == (0, 3, 5) and c.collage_ids == ()


def test_integer_translation_is_an_exact_copy_clipped_to_the_canvas():
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 5
    pixels[..., 3] = 255
    c = compose(doc_with(4, 4, ImageLayer(pixels=pixels, x=2, y=-1)))
    expected = np.full((4, 4, 3), 255, np.uint8)
    expected[0, 2:4] = pixels[1, 0:2, :3]
    assert np.array_equal(c.init_image, expected)
    alpha = np.zeros((4, 4), np.float32)
    alpha[0, 2:4] = 1
    assert np.array_equal(c.init_alpha, alpha)
    assert c.has_content


def test_scale_two_samples_bilinearly_with_opaque_edges():
    pixels = rgba(1, 2, (0, 0, 0))
    pixels[0, 1, :3] = 200
    c = compose(doc_with(5, 3, ImageLayer(pixels=pixels, x=1, y=0, scale=2.0)))
    # Centres of the 4 covered columns sample the layer at u-0.5 = -0.25, 0.25, 0.75, 1.25:
    # clamped 0, 0.75*0 + 0.25*200, 0.25*0 + 0.75*200, clamped 200.
    row = [255, 0, 50, 150, 200]
    assert np.array_equal(channel(c), np.array([row, row, [255] * 5], np.uint8))
    assert np.array_equal(c.init_alpha, np.array([[0, 1, 1, 1, 1]] * 2 + [[0] * 5], np.float32))


def test_integer_scale_of_a_flat_colour_is_exact_everywhere():
    c = compose(doc_with(6, 6, ImageLayer(pixels=rgba(1, 1, (10, 20, 30)), x=1, y=2, scale=3.0)))
    expected = np.full((6, 6, 3), 255, np.uint8)
    expected[2:5, 1:4] = (10, 20, 30)
    assert np.array_equal(c.init_image, expected)
    assert c.init_alpha[2:5, 1:4].min() == 1.0 and c.init_alpha.sum() == 9.0


def test_half_pixel_offset_antialiases_the_edges():
    c = compose(doc_with(3, 1, ImageLayer(pixels=rgba(1, 1, (0, 0, 0)), x=0.5)))
    assert np.array_equal(c.init_alpha, np.array([[0.5, 0.5, 0.0]], np.float32))
    assert np.array_equal(channel(c), np.array([[128, 128, 255]], np.uint8))  # 127.5 rounds up


def test_quarter_turn_is_an_exact_pixel_permutation():
    pixels = np.random.default_rng(3).integers(0, 256, (2, 3, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    c = compose(doc_with(4, 4, ImageLayer(pixels=pixels, x=3, y=1, rotation=90.0)))
    expected = np.full((4, 4, 3), 255, np.uint8)
    expected[1:4, 1:3] = np.rot90(pixels, k=-1)[..., :3]  # clockwise
    assert np.array_equal(c.init_image, expected)


def test_opacity_half_rounds_half_up_and_weights_colours():
    layers = [ImageLayer(pixels=rgba(1, 1, (0, 101, 255)), opacity=0.5)]
    c = compose(doc_with(1, 1, *layers))
    # 0 over white at 0.5 = 127.5 -> 128; 101 -> 178 exactly; 255 -> 255.
    assert c.init_image[0, 0].tolist() == [128, 178, 255]
    assert c.init_alpha[0, 0] == np.float32(0.5)


def test_pixel_alpha_and_layer_opacity_multiply():
    c = compose(doc_with(2, 1, ImageLayer(pixels=np.array([[[0, 0, 0, 0], [0, 0, 0, 51]]], np.uint8),
                                          opacity=0.5)))
    assert channel(c).tolist() == [[255, 230]]  # 255 * (1 - 0.2 * 0.5) = 229.5 -> 230
    assert c.init_alpha.tolist() == [[0.0, pytest.approx(0.1)]]


def test_layers_stack_bottom_to_top_and_hidden_ones_are_ignored():
    bottom = ImageLayer(pixels=rgba(2, 2, (10, 10, 10)))
    top = ImageLayer(pixels=rgba(1, 1, (200, 0, 0)), x=1, y=1)
    hidden = ImageLayer(pixels=rgba(2, 2, (0, 255, 0)), visible=False)
    c = compose(doc_with(2, 2, bottom, top, hidden))
    assert c.init_image[..., 0].tolist() == [[10, 10], [10, 200]]
    assert c.init_image[..., 1].tolist() == [[10, 10], [10, 0]]


def test_half_transparent_layer_over_another_layer():
    c = compose(doc_with(1, 1, ImageLayer(pixels=rgba(1, 1, (100, 0, 0))),
                         ImageLayer(pixels=rgba(1, 1, (200, 0, 0)), opacity=0.25)))
    assert c.init_image[0, 0, 0] == 125  # 0.25*200 + 0.75*100
    assert c.init_alpha[0, 0] == 1.0


def test_reference_layers_are_not_flattened_and_keep_their_own_pixels():
    ref_pixels = np.array([[[0, 0, 0, 255], [100, 50, 0, 0]], [[0, 0, 0, 128], [9, 9, 9, 255]]], np.uint8)
    ref = ImageLayer(pixels=ref_pixels, reference=True, x=7, y=3, scale=4.0, rotation=12)
    hidden_ref = ImageLayer(pixels=rgba(2, 2, (1, 1, 1)), reference=True, visible=False)
    c = compose(doc_with(3, 3, ref, hidden_ref))
    assert (c.init_image == 255).all() and not c.has_content
    assert len(c.references) == 1
    assert c.references[0].tolist() == [[[0, 0, 0], [255, 255, 255]], [[127, 127, 127], [9, 9, 9]]]


def test_inpaint_mask_is_the_union_of_visible_mask_layers():
    a = np.array([[255, 0, 0], [0, 100, 0]], np.uint8)
    b = np.array([[0, 0, 51], [0, 200, 0]], np.uint8)
    hidden = np.full((2, 3), 255, np.uint8)
    c = compose(doc_with(3, 2, MaskLayer(pixels=a, opacity=0.1), MaskLayer(pixels=b),
                         MaskLayer(pixels=hidden, visible=False)))
    expected = np.array([[255, 0, 51], [0, 200, 0]], np.float32) / 255
    assert c.inpaint_mask.dtype == np.float32
    assert np.array_equal(c.inpaint_mask, expected)


def test_only_hidden_masks_give_no_mask():
    c = compose(doc_with(2, 2, MaskLayer(pixels=np.full((2, 2), 255, np.uint8), visible=False)))
    assert c.inpaint_mask is None


def test_regions_come_in_layer_order_with_their_prompts():
    painted = np.array([[0, 255, 0], [51, 0, 0]], np.uint8)
    first = RegionLayer(name="first", rect=(1, 0, 5, 1), prompt="空", negative="n1", strength=0.5,
                        loras=(LoraRef("a", 0.25),))
    hidden = RegionLayer(name="hidden", rect=(0, 0, 3, 2), prompt="no", visible=False)
    second = RegionLayer(name="second", mask=painted, prompt="海 🌊", strength=2.0)
    c = compose(doc_with(3, 2, first, hidden, second))
    assert [r.name for r in c.regions] == ["first", "second"]
    r1, r2 = c.regions
    assert isinstance(r1, ComposedRegion)
    assert np.array_equal(r1.mask, np.array([[0, 1, 1], [0, 0, 0]], np.float32))
    assert (r1.prompt, r1.negative, r1.strength, r1.loras, r1.layer_id) == ("空", "n1", 0.5, (("a", 0.25),), first.id)
    assert np.array_equal(r2.mask, painted.astype(np.float32) / 255)
    assert (r2.prompt, r2.strength, r2.loras, r2.layer_id) == ("海 🌊", 2.0, (), second.id)


def test_sketch_and_annotation_strokes_are_kept_apart():
    across = Stroke(((-5.0, 2.0), (20.0, 2.0)), "#ff8000", 2.0)  # covers rows 1 and 2 fully
    sketch = ScribbleLayer(mode="sketch", strokes=(across,), opacity=0.5)
    note = ScribbleLayer(mode="annotation", strokes=(Stroke(((1.5, 0.5),), "#0000ff", 1.0),))
    c = compose(doc_with(4, 4, sketch, note))
    area = np.zeros((4, 4), np.float32)
    area[1:3] = 1
    assert np.array_equal(c.sketch_mask, area)  # the stroke area, not weakened by opacity
    expected = np.zeros((4, 4, 4), np.uint8)
    expected[1:3] = (255, 128, 0, 128)  # alpha 0.5 * 255 = 127.5 -> 128
    assert np.array_equal(c.sketch_image, expected)
    assert (c.init_image == 255).all()  # sketches are painted in by the controller, not here
    assert c.annotation_image[0, 1].tolist() == [0, 0, 255, 255]  # a dot: full coverage at its centre
    assert c.annotation_image[..., 3].sum() < 255 * 4
    assert not c.annotation_image[2:, :, 3].any()


def test_hidden_or_empty_scribbles_give_no_rasters():
    c = compose(doc_with(4, 4, ScribbleLayer(mode="sketch", strokes=()),
                         ScribbleLayer(mode="annotation", strokes=(Stroke(((1.0, 1.0),)),), visible=False)))
    assert c.sketch_image is None and c.sketch_mask is None and c.annotation_image is None


def test_collage_alpha_is_each_piece_where_it_lands_not_occluded():
    plain = ImageLayer(pixels=rgba(3, 3, (0, 0, 0)))
    low = ImageLayer(pixels=rgba(2, 2, (255, 0, 0)), collage=True)
    high = ImageLayer(pixels=rgba(2, 2, (0, 255, 0), alpha=102), x=1, y=1, collage=True, opacity=0.5)
    c = compose(doc_with(3, 3, plain, low, high))
    assert c.collage_ids == (low.id, high.id)
    assert c.collage_alpha.shape == (2, 3, 3)
    assert np.array_equal(c.collage_alpha[0], np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], np.float32))
    expected_high = np.zeros((3, 3), np.float32)
    expected_high[1:, 1:] = np.float32(102) / np.float32(255) * np.float32(0.5)
    assert np.array_equal(c.collage_alpha[1], expected_high)


def test_composition_holds_read_only_copies_and_pickles():
    layer = ImageLayer(pixels=rgba(2, 2, (1, 2, 3)))
    mask = MaskLayer(pixels=np.full((2, 2), 255, np.uint8))
    doc = doc_with(2, 2, layer, mask)
    c = compose(doc)
    layer.pixels[:] = 0
    mask.pixels[:] = 0
    doc.settings.prompt = "changed"
    assert c.init_image[0, 0].tolist() == [1, 2, 3] and c.inpaint_mask.min() == 1.0
    assert c.settings["prompt"] == ""
    with pytest.raises(ValueError):
        c.init_image[0, 0, 0] = 9
    again = pickle.loads(pickle.dumps(c))
    assert np.array_equal(again.init_image, c.init_image) and again.settings == c.settings


def test_settings_are_the_document_settings():
    doc = Document(2, 2)
    doc.settings.prompt = "a"
    doc.settings.loras = [["x", 0.5]]
    c = compose(doc)
    assert c.settings == doc.settings.to_dict()
    c.settings["loras"][0][1] = 9
    assert doc.settings.loras == [["x", 0.5]]


def test_bands_do_not_change_the_result(monkeypatch):
    doc = every_kind_document()
    whole = compose(doc)
    monkeypatch.setattr(compose_module, "BAND_PIXELS", 7 * doc.width + 3)
    banded = compose(doc)
    assert np.array_equal(whole.init_image, banded.init_image)
    assert np.array_equal(whole.init_alpha, banded.init_alpha)
    assert np.array_equal(whole.collage_alpha, banded.collage_alpha)


def test_every_kind_document_composes_consistently():
    doc = every_kind_document()
    c = compose(doc)
    assert c.has_content and c.init_alpha.min() == 1.0  # opaque background
    assert len(c.regions) == 1 and c.regions[0].name == "猫の領域"  # the painted region is hidden
    assert c.collage_alpha.shape == (1, doc.height, doc.width) and 0 < c.collage_alpha.max() <= 0.8
    assert len(c.references) == 1 and c.references[0].shape == (30, 20, 3)
    assert c.sketch_mask.max() == 1.0 and c.annotation_image[..., 3].max() == 153  # 0.6 * 255


def test_bad_layer_data_is_a_document_error():
    with pytest.raises(DocumentError, match="RGBA"):
        compose(doc_with(2, 2, ImageLayer(pixels=np.zeros((2, 2, 3), np.uint8))))
    with pytest.raises(DocumentError, match="finite"):
        compose(doc_with(2, 2, ImageLayer(pixels=rgba(1, 1, (0, 0, 0)), x=float("nan"))))
    with pytest.raises(DocumentError, match="colour"):
        compose(doc_with(2, 2, ScribbleLayer(strokes=(Stroke(((1.0, 1.0),), "red"),))))
