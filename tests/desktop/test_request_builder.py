"""request_builder: Composition + settings -> GenerationRequest, without Qt."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from canvas.model.document import GenerationSettings
from canvas.model.layers import LoraRef
from desktop.request_builder import build_request, paint_sketch, with_seed
from inference.api import CompositePiece, GenerationRequest, LoraSpec, RegionSpec, RequestError

H, W = 48, 64


@dataclass
class Region:
    mask: np.ndarray
    prompt: str
    negative: str = ""
    strength: float = 1.0
    loras: tuple = ()
    layer_id: str = "r1"
    name: str = "Region"


@dataclass
class FakeComposition:
    """The fields compose(document) freezes (canvas.model.compose.Composition)."""

    init_image: np.ndarray = field(default_factory=lambda: np.full((H, W, 3), 128, np.uint8))
    init_alpha: np.ndarray = field(default_factory=lambda: np.ones((H, W), np.float32))
    has_content: bool = True
    inpaint_mask: np.ndarray | None = None
    regions: tuple = ()
    sketch_image: np.ndarray = field(default_factory=lambda: np.zeros((H, W, 4), np.uint8))
    sketch_mask: np.ndarray = field(default_factory=lambda: np.zeros((H, W), np.float32))
    annotation_image: np.ndarray = field(default_factory=lambda: np.zeros((H, W, 4), np.uint8))
    collage_alpha: np.ndarray = field(default_factory=lambda: np.zeros((0, H, W), np.float32))
    references: tuple = ()
    settings: dict = field(default_factory=lambda: GenerationSettings().to_dict())


def box_mask(x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((H, W), np.float32)
    m[y0:y1, x0:x1] = 1.0
    return m


def settings(**kw) -> GenerationSettings:
    s = GenerationSettings(prompt="a red fox", steps=2)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_generate_over_empty_canvas_is_txt2img_with_every_knob_carried():
    comp = FakeComposition(has_content=False)
    s = settings(sampler="DPM++ 2M Karras", cfg=5.5, seed=42, batch_count=3, clip_skip=2, vae="my.vae",
                 lcm=True, loras=[["detail", 0.6]], negative="blurry")
    req = build_request(comp, s, preview="taesd")
    assert isinstance(req, GenerationRequest)
    assert (req.mode, req.width, req.height) == ("generate", W, H)
    assert req.init_image is None
    assert (req.prompt, req.negative, req.sampler, req.steps, req.cfg, req.seed) == (
        "a red fox", "blurry", "DPM++ 2M Karras", 2, 5.5, 42)
    assert (req.batch_count, req.clip_skip, req.vae, req.lcm, req.preview) == (3, 2, "my.vae", True, "taesd")
    assert req.loras == (LoraSpec("detail", 0.6),)


def test_generate_with_content_is_img2img_and_empty_vae_means_checkpoint_own():
    comp = FakeComposition()
    req = build_request(comp, settings(strength=0.4))
    assert req.init_image is not None and req.init_image.shape == (H, W, 3)
    assert req.strength == 0.4 and req.vae is None


def test_settings_default_to_the_compositions_snapshot_and_model_can_be_overridden():
    comp = FakeComposition(settings=settings(prompt="from snapshot").to_dict())
    req = build_request(comp, model="builtin:tiny-sdxl")
    assert req.prompt == "from snapshot" and req.model == "builtin:tiny-sdxl"


def test_inpaint_uses_the_mask_and_requires_one():
    mask = box_mask(10, 10, 30, 20)
    req = build_request(FakeComposition(inpaint_mask=mask), settings(mode="inpaint", mask_mode="not_masked",
                                                                     inpaint_area="only_masked", padding=8))
    assert req.mode == "inpaint" and np.array_equal(req.mask, mask)
    assert (req.mask_mode, req.inpaint_area, req.padding) == ("not_masked", "only_masked", 8)
    with pytest.raises(RequestError, match="needs a mask"):
        build_request(FakeComposition(inpaint_mask=np.zeros((H, W), np.float32)), settings(mode="inpaint"))
    with pytest.raises(RequestError, match="needs a mask"):
        build_request(FakeComposition(inpaint_mask=None), settings(mode="inpaint"))


def test_uint8_masks_become_float_in_unit_range():
    mask = np.zeros((H, W), np.uint8)
    mask[5:9, 5:9] = 255
    req = build_request(FakeComposition(inpaint_mask=mask), settings(mode="inpaint"))
    assert req.mask.dtype == np.float32 and req.mask.max() == 1.0 and req.mask[0, 0] == 0.0


def test_sketch_is_painted_into_the_init_image_and_its_area_joins_the_inpaint_mask():
    sketch = np.zeros((H, W, 4), np.uint8)
    sketch[30:40, 40:50] = (255, 0, 0, 255)
    sketch_mask = (sketch[..., 3] > 0).astype(np.float32)
    inpaint = box_mask(0, 0, 10, 10)
    comp = FakeComposition(sketch_image=sketch, sketch_mask=sketch_mask, inpaint_mask=inpaint)
    req = build_request(comp, settings(mode="inpaint"))
    assert tuple(req.init_image[35, 45]) == (255, 0, 0)
    assert tuple(req.init_image[0, 0]) == (128, 128, 128)
    assert np.array_equal(req.sketch_mask, sketch_mask)
    assert req.mask[35, 45] == 1.0 and req.mask[5, 5] == 1.0 and req.mask[20, 20] == 0.0
    # a sketch alone is enough for inpaint (A1111 "inpaint sketch")
    req = build_request(FakeComposition(sketch_image=sketch, sketch_mask=sketch_mask), settings(mode="inpaint"))
    assert np.array_equal(req.mask, sketch_mask)


def test_sketch_on_an_empty_canvas_turns_generate_into_img2img():
    sketch = np.zeros((H, W, 4), np.uint8)
    sketch[1:3, 1:3] = (0, 255, 0, 255)
    comp = FakeComposition(has_content=False, sketch_image=sketch, sketch_mask=(sketch[..., 3] > 0).astype(np.float32))
    req = build_request(comp, settings())
    assert req.init_image is not None and tuple(req.init_image[2, 2]) == (0, 255, 0)
    assert req.sketch_mask is not None


def test_paint_sketch_blends_by_alpha():
    base = np.zeros((1, 2, 3), np.uint8)
    sketch = np.array([[[255, 255, 255, 128], [255, 0, 0, 0]]], np.uint8)
    out = paint_sketch(base, sketch)
    assert tuple(out[0, 0]) == (128, 128, 128) and tuple(out[0, 1]) == (0, 0, 0)


def test_regions_map_to_region_specs_skipping_empty_ones():
    regions = (
        Region(box_mask(0, 0, 32, 48), "a castle", "fog", 1.5, (LoraRef("stone", 0.8),), "a", "Castle"),
        Region(box_mask(32, 0, 64, 48), "   ", name="Unused"),  # no prompt: skipped
        Region(np.zeros((H, W), np.float32), "nothing painted", name="Empty"),  # no area: skipped
        (box_mask(40, 10, 50, 20), "a dragon", "", 1.0, (), "b", "Dragon"),  # tuple form
    )
    req = build_request(FakeComposition(regions=regions), settings(mode="regions", region_method="latent"))
    assert req.region_method == "latent"
    assert [r.prompt for r in req.regions] == ["a castle", "a dragon"]
    first = req.regions[0]
    assert isinstance(first, RegionSpec) and first.negative == "fog" and first.strength == 1.5
    assert first.loras == (LoraSpec("stone", 0.8),)
    assert first.mask[0, 0] == 1.0 and first.mask[0, 40] == 0.0


def test_regions_ride_along_in_inpaint_but_regions_mode_needs_one():
    regions = (Region(box_mask(0, 0, 10, 10), "a cat"),)
    req = build_request(FakeComposition(regions=regions, inpaint_mask=box_mask(0, 0, 20, 20)),
                        settings(mode="inpaint"))
    assert len(req.regions) == 1
    with pytest.raises(RequestError, match="at least one region"):
        build_request(FakeComposition(regions=(Region(box_mask(0, 0, 5, 5), ""),)), settings(mode="regions"))


def test_region_strength_out_of_range_is_a_clear_error():
    with pytest.raises(RequestError, match="from 0 to 2"):
        build_request(FakeComposition(regions=(Region(box_mask(0, 0, 5, 5), "x", strength=3.0),)),
                      settings(mode="regions"))


def test_composite_maps_regions_to_pieces():
    regions = (Region(box_mask(0, 0, 10, 10), "a cat", "dog"),)
    req = build_request(FakeComposition(regions=regions), settings(mode="composite", composite_step=0.3))
    assert req.pieces == (req.pieces[0],) and isinstance(req.pieces[0], CompositePiece)
    assert req.pieces[0].prompt == "a cat" and req.pieces[0].negative == "dog" and req.composite_step == 0.3
    assert req.regions == ()


def test_refine_uses_the_collage_alpha_stack():
    alpha = np.stack([box_mask(5, 5, 20, 20), box_mask(30, 10, 60, 40)])
    req = build_request(FakeComposition(collage_alpha=alpha),
                        settings(mode="refine", refine_edge_width=12, refine_edge_strength=0.6))
    assert req.collage_alpha.shape == (2, H, W) and np.array_equal(req.collage_alpha, alpha)
    assert req.init_image is not None and (req.refine_edge_width, req.refine_edge_strength) == (12, 0.6)
    with pytest.raises(RequestError, match="collage pieces"):
        build_request(FakeComposition(), settings(mode="refine"))


def test_edit_passes_references_and_annotation_but_needs_an_instruction():
    ref = np.zeros((16, 16, 4), np.uint8)
    ref[..., 0] = 200
    ref[..., 3] = 255
    ref[0, 0, 3] = 0  # transparent pixel goes over white
    annotation = np.zeros((H, W, 4), np.uint8)
    annotation[3:6, 3:6] = (0, 0, 255, 255)
    comp = FakeComposition(references=(ref,), annotation_image=annotation)
    req = build_request(comp, settings(mode="edit", prompt="make it night", image_guidance_scale=2.0))
    assert len(req.reference_images) == 1 and req.reference_images[0].shape == (16, 16, 3)
    assert tuple(req.reference_images[0][0, 0]) == (255, 255, 255)
    assert tuple(req.reference_images[0][1, 1]) == (200, 0, 0)
    assert req.annotation_image is not None and req.image_guidance_scale == 2.0
    assert req.regions == ()
    with pytest.raises(RequestError, match="instruction"):
        build_request(comp, settings(mode="edit", prompt=" "))
    with pytest.raises(RequestError, match="picture to edit"):
        build_request(FakeComposition(has_content=False), settings(mode="edit", prompt="x"))


def test_edit_without_annotation_strokes_sends_none():
    req = build_request(FakeComposition(), settings(mode="edit", prompt="x"))
    assert req.annotation_image is None and req.mask is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"mode": "teleport"}, "Unknown mode"),
        ({"sampler": "Heun++"}, "Unknown sampler"),
        ({"steps": 0}, "Steps must be"),
        ({"cfg": 99.0}, "CFG scale"),
        ({"batch_count": 0}, "Batch count"),
        ({"clip_skip": 0}, "Clip skip"),
        ({"strength": 1.5}, "strength must be"),
        ({"seed": -5}, "Seed must be"),
        ({"masked_content": "pizza"}, "masked content"),
        ({"model": " "}, "No model"),
        ({"prompt": "x" * 20_001}, "characters long"),
    ],
)
def test_bad_settings_are_one_clear_sentence(overrides, words):
    with pytest.raises(RequestError, match=words) as info:
        build_request(FakeComposition(), settings(**overrides))
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message


def test_bad_preview_method_and_oversized_canvas_are_refused():
    with pytest.raises(RequestError, match="preview"):
        build_request(FakeComposition(), settings(), preview="hologram")
    huge = FakeComposition(init_image=np.zeros((8, 5000, 3), np.uint8), has_content=False)
    with pytest.raises(RequestError, match="larger than the limit of 4096 pixels per side to generate at its own"):
        build_request(huge, settings(generation_size="picture"))
    scaled = build_request(huge, settings())  # Auto: generated within the limit, scaled back (issue 16)
    assert (scaled.width, scaled.height) == (4096, 64)
    with pytest.raises(RequestError, match="larger than the limit of 16384"):
        build_request(FakeComposition(init_image=np.zeros((8, 16392, 3), np.uint8)), settings())


def test_mismatched_mask_shape_is_refused():
    with pytest.raises(RequestError, match="canvas size"):
        build_request(FakeComposition(inpaint_mask=np.ones((4, 4), np.float32)), settings(mode="inpaint"))


def test_with_seed_keeps_everything_else():
    req = build_request(FakeComposition(), settings(seed=1))
    again = with_seed(req, 77)
    assert again.seed == 77 and again.prompt == req.prompt and again.init_image is req.init_image


def test_a_real_composition_of_every_layer_kind_maps_to_one_request():
    from canvas.model.commands import AddLayer
    from canvas.model.compose import compose
    from canvas.model.document import Document
    from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer, ScribbleLayer, Stroke

    doc = Document(W, H)
    background = np.zeros((H, W, 4), np.uint8)
    background[..., 2] = 200
    background[..., 3] = 255
    piece = np.full((8, 8, 4), 255, np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[10:20, 10:20] = 255
    for layer in (ImageLayer(name="bg", pixels=background), ImageLayer(name="piece", pixels=piece, x=30, y=20,
                                                                       collage=True),
                  MaskLayer(pixels=mask),
                  RegionLayer(name="Sky", rect=(0, 0, W, 16), prompt="clouds", loras=(LoraRef("sky", 0.5),)),
                  ScribbleLayer(strokes=(Stroke(((40.0, 40.0), (50.0, 42.0)), "#00ff00", 4.0),), mode="sketch"),
                  ScribbleLayer(strokes=(Stroke(((5.0, 5.0), (9.0, 9.0)), "#ff0000", 3.0),), mode="annotation"),
                  ImageLayer(name="ref", pixels=piece, reference=True)):
        doc.execute(AddLayer(layer))
    composition = compose(doc)
    inpaint = build_request(composition, settings(mode="inpaint"))
    assert inpaint.mask[15, 15] == 1.0 and inpaint.mask[41, 45] > 0  # mask plus the sketch's area
    assert inpaint.regions[0].prompt == "clouds" and inpaint.regions[0].loras == (LoraSpec("sky", 0.5),)
    assert tuple(inpaint.init_image[41, 45]) != (0, 0, 200)  # the sketch is painted in
    refine = build_request(composition, settings(mode="refine"))
    assert refine.collage_alpha.shape == (1, H, W) and refine.collage_alpha[0, 24, 34] == 1.0
    edit = build_request(composition, settings(mode="edit", prompt="make it night"))
    assert len(edit.reference_images) == 1 and edit.annotation_image is not None
    assert edit.annotation_image[7, 7, 3] > 0 and edit.mask is not None
