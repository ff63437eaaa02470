"""Blend modes, groups and round trips through other programs, without Krita (issue 18)."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from canvas.io.ora import PROJECT_MEMBER, last_copy_path, load_ora, save_ora
from canvas.model.compose import compose
from canvas.model.document import Document
from canvas.model.layers import BLEND_MODES, GroupLayer, ImageLayer, MaskLayer, RegionLayer
from tests.canvas.documents import every_kind_document, interchange_document, rgba


def two_layers(bottom_rgb, top_rgb, mode: str, top_alpha: int = 255) -> Document:
    doc = Document(2, 2)
    doc.add_layer_untracked(ImageLayer(pixels=rgba(2, 2, bottom_rgb)))
    doc.add_layer_untracked(ImageLayer(pixels=rgba(2, 2, top_rgb, top_alpha), blend=mode))
    return doc


@pytest.mark.parametrize("mode, expected", [
    ("multiply", (100 * 200 / 255, 50 * 100 / 255, 200 * 0 / 255)),
    ("screen", (100 + 200 - 100 * 200 / 255, 50 + 100 - 50 * 100 / 255, 200)),
    ("darken", (100, 50, 0)),
    ("lighten", (200, 100, 200)),
    ("difference", (100, 50, 200)),
    ("plus", (255, 150, 200)),
    ("dst-out", (255, 255, 255)),  # an opaque source removes the backdrop: white shows
    ("src-atop", (200, 100, 0)),
])
def test_separable_and_porter_duff_modes_follow_their_formulas(mode, expected):
    image = compose(two_layers((100, 50, 200), (200, 100, 0), mode)).init_image
    assert np.abs(image[0, 0].astype(float) - np.array(expected)).max() <= 0.5 + 1e-6


def test_non_separable_modes_keep_what_they_promise():
    backdrop, source = (200, 40, 40), (40, 40, 200)
    lum = lambda c: 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]  # noqa: E731
    hue = compose(two_layers(backdrop, source, "hue")).init_image[0, 0].astype(float)
    assert abs(lum(hue) - lum(backdrop)) <= 1 and hue[2] > hue[0]  # source hue, backdrop luminosity
    luminosity = compose(two_layers(backdrop, source, "luminosity")).init_image[0, 0].astype(float)
    assert abs(lum(luminosity) - lum(source)) <= 1 and luminosity[0] > luminosity[2]


def test_a_transparent_source_leaves_every_mode_but_the_clearing_ones_alone():
    for mode in BLEND_MODES:
        image = compose(two_layers((100, 50, 200), (200, 100, 0), mode, top_alpha=0)).init_image
        expected = (255, 255, 255) if mode in ("dst-in", "dst-atop") else (100, 50, 200)
        assert image[0, 0].tolist() == list(expected), mode


def test_group_opacity_isolation_and_visibility():
    doc = Document(1, 1)
    doc.add_layer_untracked(ImageLayer(pixels=rgba(1, 1, (0, 0, 255))))
    group = GroupLayer(opacity=0.5)
    doc.add_layer_untracked(ImageLayer(pixels=rgba(1, 1, (255, 0, 0)), group=group.id))
    doc.add_layer_untracked(ImageLayer(pixels=rgba(1, 1, (0, 255, 0)), group=group.id, blend="multiply"))
    doc.add_layer_untracked(group)
    # isolated: red x green = black inside the group, then half over blue
    assert compose(doc).init_image[0, 0].tolist() == [0, 0, 128]
    group.isolated = False  # pass-through: red (half) over blue, then green multiplied at half
    pass_through = compose(doc).init_image[0, 0].tolist()
    assert pass_through != [0, 0, 128] and pass_through[0] > 0
    group.visible = False
    assert compose(doc).init_image[0, 0].tolist() == [0, 0, 255]
    assert not doc.shown(doc.layers[1])


def test_circular_groups_from_a_damaged_file_composite_each_layer_once():
    doc = Document(1, 1)
    a, b = GroupLayer(name="a"), GroupLayer(name="b")
    a.group, b.group = b.id, a.id
    doc.add_layer_untracked(ImageLayer(pixels=rgba(1, 1, (255, 0, 0)), group=a.id, opacity=0.5))
    doc.add_layer_untracked(a)
    doc.add_layer_untracked(b)
    tree = doc.tree()
    assert sum(len(members) for members in tree.values()) == 3
    assert compose(doc).init_image[0, 0].tolist() == [255, 128, 128]


def test_groups_blend_modes_dpi_and_foreign_attributes_survive_a_save(tmp_path):
    doc = interchange_document()
    doc.resolution = (300.0, 150.0)
    doc.foreign = {"{http://mypaint.org/ns/openraster}frame-active": "true", "mypaint:unbound": "dropped"}
    doc.layers[1].foreign = {"selected": "true"}
    save_ora(doc, tmp_path / "a.ora")
    again = load_ora(tmp_path / "a.ora")
    assert again.same_as(doc) and again.resolution == (300.0, 150.0)
    assert again.foreign == {"{http://mypaint.org/ns/openraster}frame-active": "true"}  # valid XML kept
    assert again.layers[1].foreign == {"selected": "true"}
    with zipfile.ZipFile(tmp_path / "a.ora") as zf:
        stack = zf.read("stack.xml").decode()
    assert 'xres="300"' in stack and 'composite-op="svg:color-dodge"' in stack and "http://mypaint.org/ns/openraster" in stack
    assert stack.count("<stack") == 1 + 4  # the root and four groups


def test_a_transformed_layer_is_written_as_other_programs_must_show_it(tmp_path):
    doc = Document(40, 30)
    cat = ImageLayer(name="cat", pixels=np.random.default_rng(1).integers(0, 256, (12, 16, 4), dtype=np.uint8),
                     x=8.5, y=4, scale=1.1, rotation=-8.0)
    doc.add_layer_untracked(cat)
    save_ora(doc, tmp_path / "t.ora")
    with zipfile.ZipFile(tmp_path / "t.ora") as zf:
        import io
        from xml.etree import ElementTree

        from PIL import Image

        element = ElementTree.fromstring(zf.read("stack.xml")).find("stack/layer")
        shown = np.asarray(Image.open(io.BytesIO(zf.read(element.get("src")))).convert("RGBA"))
        project = json.loads(zf.read(PROJECT_MEMBER))
    x, y = int(element.get("x")), int(element.get("y"))
    plain = Document(40, 30)  # what a program that knows only OpenRaster composes
    plain.add_layer_untracked(ImageLayer(pixels=np.ascontiguousarray(shown), x=x, y=y))
    assert np.abs(compose(plain).init_image.astype(int) - compose(doc).init_image).max() <= 1
    assert project["layers"][0]["source"] != element.get("src")
    assert load_ora(tmp_path / "t.ora").same_as(doc)  # Collagen keeps the source and the transform


def mypaint_file(path, tile: np.ndarray) -> None:
    from fuzz.corpus import _png_of

    stack = ('<?xml version="1.0"?><image w="10" h="7"><stack>'
             '<layer name="background" src="data/bg.png" background_tile="data/bg_tile.png"/></stack></image>')
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", b"image/openraster")
        zf.writestr("stack.xml", stack)
        zf.writestr("data/bg.png", _png_of(tile))
        zf.writestr("data/bg_tile.png", _png_of(tile))


def test_mypaint_background_tile_repeats_over_the_canvas(tmp_path):
    tile = np.random.default_rng(3).integers(0, 256, (4, 3, 4), dtype=np.uint8)
    mypaint_file(tmp_path / "m.ora", tile)
    background = load_ora(tmp_path / "m.ora").layers[0]
    assert background.pixels.shape == (7, 10, 4)
    assert np.array_equal(background.pixels, np.tile(tile, (2, 4, 1))[:7, :10])


def resaved_elsewhere(source, target, keep_project_json: bool) -> None:
    """What another OpenRaster editor does: rewrite stack.xml (here: one layer renamed in place)
    and either drop data/collagen or leave it behind, now stale."""
    with zipfile.ZipFile(source) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    members["stack.xml"] = members["stack.xml"].replace(b'name="moved"', b'name="moved" selected="true"')
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            if keep_project_json or not name.startswith("data/collagen/"):
                zf.writestr(name, data)


@pytest.mark.parametrize("keep_project_json", [False, True], ids=["data dropped", "data stale"])
def test_a_project_saved_by_another_program_restores_what_collagen_knew(tmp_path, keep_project_json):
    original = every_kind_document()
    saved = tmp_path / "first.ora"
    save_ora(original, saved, keep_copy=True)
    path = tmp_path / "p.ora"
    resaved_elsewhere(saved, path, keep_project_json)
    shutil.copyfile(last_copy_path(saved), last_copy_path(path))
    opened = load_ora(path)
    assert opened.load_report.startswith("p.ora was saved by another program after Collagen; restored ")
    assert "mask" in opened.load_report and opened.load_report.endswith(".")
    assert opened.settings.to_dict() == original.settings.to_dict()
    for before, after in zip(original.layers, opened.layers):
        assert type(after) is type(before) and after.name == before.name
    regions = [la for la in opened.layers if isinstance(la, RegionLayer)]
    assert [r.prompt for r in regions] == [r.prompt for r in original.layers_of(RegionLayer)]
    assert np.array_equal(opened.layers_of(MaskLayer)[0].pixels, original.layers_of(MaskLayer)[0].pixels)
    piece = next(la for la in opened.layers if la.name == "piece 🍣")
    assert (piece.scale, piece.rotation, piece.collage) == (1.75, -33.25, True)


def test_an_edited_layer_keeps_the_other_programs_pixels_and_the_report_names_what_is_lost(tmp_path):
    original = every_kind_document()
    saved = tmp_path / "p.ora"
    save_ora(original, saved, keep_copy=True)
    with zipfile.ZipFile(saved) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist() if not info.filename.startswith("data/collagen/")}
    members["stack.xml"] = members["stack.xml"].replace("name=\"マスク\"".encode(), b'name="renamed"')
    with zipfile.ZipFile(saved, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    opened = load_ora(saved)
    assert "could not restore 'マスク'" in opened.load_report
    assert isinstance(next(la for la in opened.layers if la.name == "renamed"), ImageLayer)


def test_a_plain_file_of_another_program_opens_without_a_report(tmp_path):
    mypaint_file(tmp_path / "m.ora", np.zeros((2, 2, 4), np.uint8))
    assert load_ora(tmp_path / "m.ora").load_report == ""
    save_ora(every_kind_document(), tmp_path / "c.ora", keep_copy=True)
    assert load_ora(tmp_path / "c.ora").load_report == ""  # Collagen saved it last: nothing to say
