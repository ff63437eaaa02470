"""OpenRaster projects: round trip, what other apps see, hostile and broken files, atomic saves."""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from canvas.io import ora
from canvas.io.errors import ProjectError
from canvas.io.limits import ReadLimits
from canvas.io.ora import PROJECT_MEMBER, load_ora, save_ora
from canvas.model.compose import compose
from canvas.model.document import Document
from canvas.model.layers import GroupLayer, ImageLayer, MaskLayer, RegionLayer, ScribbleLayer, Stroke
from tests.canvas.documents import every_kind_document, rgba

REPO = Path(__file__).resolve().parents[2]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def forged_png(width: int, height: int) -> bytes:
    """A structurally valid PNG whose header claims any size (its data is tiny)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def stack_xml(layers: str, w: int = 4, h: int = 4) -> bytes:
    return f'<?xml version="1.0"?><image version="0.0.5" w="{w}" h="{h}"><stack>{layers}</stack></image>'.encode()


def make_zip(path: Path, members: list[tuple[str, bytes]], *, mimetype: bytes | None = b"image/openraster",
             compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        if mimetype is not None:
            zf.writestr(zipfile.ZipInfo("mimetype"), mimetype)
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compress
            zf.writestr(info, data)
    return path


def plain_ora(path: Path, layers_xml: str | None = None, pngs: dict[str, bytes] | None = None, **kw) -> Path:
    pngs = pngs if pngs is not None else {"data/a.png": png_bytes(rgba(2, 2, (1, 2, 3)))}
    xml = stack_xml(layers_xml if layers_xml is not None else '<layer src="data/a.png" name="a"/>', **kw)
    return make_zip(path, [("stack.xml", xml), *pngs.items()])


def saved_project(tmp_path: Path, edit=None) -> Path:
    """A project saved by Collagen, then rewritten with `edit(members dict)` applied."""
    source = tmp_path / "source.ora"
    doc = Document(8, 6)
    doc.add_layer_untracked(ImageLayer(name="bg", pixels=rgba(6, 8, (9, 9, 9))))
    doc.add_layer_untracked(MaskLayer(pixels=np.zeros((6, 8), np.uint8)))
    save_ora(doc, source)
    if edit is None:
        return source
    with zipfile.ZipFile(source) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    edit(members)
    target = tmp_path / "edited.ora"
    mimetype = members.pop("mimetype", None)
    return make_zip(target, list(members.items()), mimetype=mimetype, compress=zipfile.ZIP_DEFLATED)


def edit_json(change):
    def edit(members):
        project = json.loads(members[PROJECT_MEMBER])
        change(project)
        members[PROJECT_MEMBER] = json.dumps(project).encode()
    return edit


# ---- round trip -------------------------------------------------------------------------------


def test_every_layer_kind_round_trips_exactly(tmp_path):
    doc = every_kind_document()
    path = tmp_path / "プロジェクト.ora"
    save_ora(doc, path)
    loaded = load_ora(path)
    assert loaded.same_as(doc)
    for original, again in zip(doc.layers, loaded.layers):
        assert type(again) is type(original) and again.id == original.id
        for key, value in original.state().items():
            if isinstance(value, np.ndarray):
                assert getattr(again, key).tobytes() == value.tobytes()
    assert loaded.history.is_clean and not loaded.history.can_undo
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_archive_layout_is_what_openraster_readers_expect(tmp_path):
    doc = every_kind_document()
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    raw = path.read_bytes()
    assert raw[30:38] == b"mimetype" and raw[38:54] == b"image/openraster"  # file(1) magic
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED and first.extra == b""
        names = zf.namelist()
        assert {"stack.xml", PROJECT_MEMBER, "mergedimage.png", "Thumbnails/thumbnail.png"} <= set(names)
        for name in names:
            if name.endswith(".png"):
                with Image.open(io.BytesIO(zf.read(name))) as image:
                    image.load()
        root = ElementTree.fromstring(zf.read("stack.xml"))
        with Image.open(io.BytesIO(zf.read("Thumbnails/thumbnail.png"))) as thumb:
            assert max(thumb.size) <= 256
        merged = np.asarray(Image.open(io.BytesIO(zf.read("mergedimage.png"))))
        project = json.loads(zf.read(PROJECT_MEMBER))
    assert np.array_equal(merged, compose(doc).init_image)
    assert project["format_version"] == 2 and (project["width"], project["height"]) == (96, 64)
    assert (root.get("w"), root.get("h")) == ("96", "64")
    layers = root.find("stack").findall("layer")
    assert [la.get("name") for la in layers] == [la.name for la in reversed(doc.layers)]  # top first
    shown = {la.get("name"): la.get("visibility") for la in layers}
    assert shown["背景"] == "visible" and shown["moved"] == "visible"
    for hidden in ("マスク", "猫の領域", "sketch", "注釈 ✏️", "reference 参照", "hidden"):
        assert shown[hidden] == "hidden"
    moved = next(la for la in layers if la.get("name") == "piece 🍣")  # rendered: where its pixels land
    piece = doc.layers[1]
    x0, y0, _, _ = piece.bounds()
    assert (moved.get("x"), moved.get("y"), moved.get("opacity")) == (str(max(0, math.floor(x0))), "0", "0.8")
    assert project["layers"][1]["source"] in names
    rect_region = next(la for la in layers if la.get("name") == "猫の領域")
    assert (rect_region.get("x"), rect_region.get("y")) == ("4", "8")


def test_saving_again_replaces_the_file_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "p.ora"
    doc = Document(4, 4)
    save_ora(doc, path)
    os.chmod(path, 0o640)
    doc.add_layer_untracked(ImageLayer(pixels=rgba(4, 4, (5, 5, 5))))
    save_ora(doc, path)
    assert load_ora(path).same_as(doc)
    assert (path.stat().st_mode & 0o777) == 0o640


def test_plain_openraster_from_another_app_opens_as_image_layers(tmp_path):
    layers_xml = (
        '<text x="1" y="1">ignored</text>'
        '<layer name="top" src="data/top.png" x="1" y="2" opacity="0.5"/>'
        '<stack name="group" x="10" y="20" opacity="0.5" visibility="hidden">'
        '  <layer name="inner" src="data/inner.png" x="1" y="1" opacity="0.5" edit-locked="true"/>'
        '</stack>'
        '<layer src="data/bottom.png" visibility="visible"/>'
    )
    pngs = {"data/top.png": png_bytes(rgba(2, 3, (255, 0, 0))),
            "data/inner.png": png_bytes(np.zeros((1, 1, 3), np.uint8)),  # RGB: becomes opaque RGBA
            "data/bottom.png": png_bytes(rgba(4, 4, (0, 0, 255), alpha=7))}
    doc = load_ora(plain_ora(tmp_path / "krita.ora", layers_xml, pngs, w=40, h=30))
    assert doc.size == (40, 30)
    bottom, inner, group, top = doc.layers  # a group comes right after its members
    assert isinstance(group, GroupLayer) and (group.name, group.opacity, group.visible) == ("group", 0.5, False)
    assert all(isinstance(la, ImageLayer) for la in (bottom, inner, top))
    assert (bottom.name, bottom.visible, bottom.opacity, bottom.x) == ("Layer 1", True, 1.0, 0.0)
    assert (inner.name, inner.x, inner.y, inner.opacity, inner.visible, inner.locked, inner.group) == \
        ("inner", 11.0, 21.0, 0.5, True, True, group.id)
    assert not doc.shown(inner)
    assert inner.pixels.tolist() == [[[0, 0, 0, 255]]]
    assert (top.x, top.y, top.opacity) == (1.0, 2.0, 0.5) and top.pixels.shape == (2, 3, 4)
    assert bottom.pixels[0, 0].tolist() == [0, 0, 255, 7]


# ---- broken and hostile input -----------------------------------------------------------------


def zip_bomb(path: Path) -> Path:
    return make_zip(path, [("stack.xml", stack_xml("")), ("data/zeros.png", b"\0" * (4 << 20))],
                    compress=zipfile.ZIP_DEFLATED)


def truncated(path: Path, tmp_path: Path) -> Path:
    data = saved_project(tmp_path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def broken_png_chunk(path: Path) -> Path:
    data = bytearray(png_bytes(rgba(8, 8, (1, 2, 3))))
    data[data.index(b"IDAT") + 6] ^= 0xFF
    return plain_ora(path, pngs={"data/a.png": bytes(data)})


def crc_broken_member(path: Path) -> Path:
    plain_ora(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"IHDR") + 4  # inside the stored PNG member's bytes
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                  b'<image w="4" h="4"><stack><layer name="&lol2;" src="data/a.png"/></stack></image>')

BROKEN = {
    "empty file": (lambda p, t: (p.write_bytes(b""), p)[1], "is empty"),
    "not a zip": (lambda p, t: (p.write_bytes(png_bytes(rgba(2, 2, (0, 0, 0)))), p)[1], "not a zip archive"),
    "truncated zip": (truncated, "damaged or truncated"),
    "zip without mimetype": (lambda p, t: make_zip(p, [("a.txt", b"x")], mimetype=None), "no mimetype"),
    "zip of another type": (lambda p, t: make_zip(p, [("stack.xml", stack_xml(""))], mimetype=b"application/epub+zip"),
                            "its mimetype is 'application/epub+zip'"),
    "missing stack.xml": (lambda p, t: make_zip(p, [("data/a.png", png_bytes(rgba(1, 1, (0, 0, 0))))]),
                          "missing its layer list (stack.xml)"),
    "stack.xml not xml": (lambda p, t: make_zip(p, [("stack.xml", b"<image w='4' h='4'><stack>")]), "not valid XML"),
    "entity expansion": (lambda p, t: make_zip(p, [("stack.xml", BILLION_LAUGHS)]), "forbidden XML"),
    "no size": (lambda p, t: make_zip(p, [("stack.xml", b"<image><stack/></image>")]), "invalid 'w' size"),
    "huge declared canvas": (lambda p, t: plain_ora(p, w=100000, h=100000), "declares a 100000x100000 px canvas"),
    "src with ..": (lambda p, t: plain_ora(p, '<layer src="../../etc/passwd"/>'), "points outside the project"),
    "absolute src": (lambda p, t: plain_ora(p, '<layer src="/etc/passwd"/>'), "points outside the project"),
    "backslash src": (lambda p, t: plain_ora(p, '<layer src="data\\..\\a.png"/>'), "points outside the project"),
    "drive src": (lambda p, t: plain_ora(p, '<layer src="C:/a.png"/>'), "points outside the project"),
    "missing layer png": (lambda p, t: plain_ora(p, '<layer src="data/nope.png"/>'), "is missing the image of layer"),
    "huge declared png": (lambda p, t: plain_ora(p, pngs={"data/a.png": forged_png(100000, 100000)}),
                          "larger than the 16384 px per side allowed"),
    "forged png size": (lambda p, t: plain_ora(p, pngs={"data/a.png": forged_png(16000, 16000)}),
                        "far smaller than its declared size"),
    "png broken chunk": (lambda p, t: broken_png_chunk(p), "IDAT chunk is damaged (checksum mismatch)"),
    "png truncated": (lambda p, t: plain_ora(p, pngs={"data/a.png": png_bytes(rgba(8, 8, (1, 2, 3)))[:60]}),
                      "truncated"),
    "not a png": (lambda p, t: plain_ora(p, pngs={"data/a.png": b"GIF89a...."}), "not a PNG image"),
    "zip bomb": (lambda p, t: zip_bomb(p), "zip bomb"),
    "member crc": (lambda p, t: crc_broken_member(p), "cannot be unpacked"),
    "bad json": (lambda p, t: saved_project(t, lambda m: m.__setitem__(PROJECT_MEMBER, b"{not json")),
                 "not valid JSON"),
    "deep json": (lambda p, t: saved_project(t, lambda m: m.__setitem__(PROJECT_MEMBER, b"[" * 100000)),
                  "project.json"),
    "newer format": (lambda p, t: saved_project(t, edit_json(lambda j: j.update(format_version=3))),
                     "newer Collagen (project format 3)"),
    "no format": (lambda p, t: saved_project(t, edit_json(lambda j: j.pop("format_version"))), "format_version"),
    "bad opacity": (lambda p, t: saved_project(t, edit_json(lambda j: j["layers"][0].update(opacity=3))),
                    "has an out-of-range opacity (3.0) in layer 1 of project.json"),
    "nan transform": (lambda p, t: saved_project(t, edit_json(lambda j: j["layers"][0].update(x=float("nan")))),
                      "out-of-range x (nan)"),
    "string visible": (lambda p, t: saved_project(t, edit_json(lambda j: j["layers"][1].update(visible="yes"))),
                       "invalid visible (true or false expected) in layer 2"),
    "unknown kind": (lambda p, t: saved_project(t, edit_json(lambda j: j["layers"][1].update(kind="3d"))),
                     "unknown layer kind '3d'"),
    "duplicate ids": (lambda p, t: saved_project(t, edit_json(lambda j: j["layers"][1].update(id=j["layers"][0]["id"]))),
                      "a second time"),
    "escaping json src": (lambda p, t: saved_project(t, edit_json(lambda j: j["layers"][0].update(src="../x.png"))),
                          "points outside the project"),
    "json huge size": (lambda p, t: saved_project(t, edit_json(lambda j: j.update(width=100000, height=100000))),
                       "declares a 100000x100000 px canvas"),
    "duplicate member": (lambda p, t: make_zip(p, [("stack.xml", stack_xml("")), ("stack.xml", stack_xml(""))]),
                         "contains 'stack.xml' twice"),
    "deep stacks": (lambda p, t: plain_ora(p, "<stack>" * 100 + "</stack>" * 100), "nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_is_one_clear_project_error(case, tmp_path):
    build, expected = BROKEN[case]
    path = build(tmp_path / "broken.ora", tmp_path)
    with pytest.raises(ProjectError) as caught:
        load_ora(path)
    error = caught.value
    message = str(error)
    assert message.startswith(f"{path.name}: ") and error.path == str(path)
    assert expected in message, message
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("case", ["missing", "folder"])
def test_missing_file_or_folder(case, tmp_path):
    path = tmp_path / "x.ora"
    if case == "folder":
        path.mkdir()
    with pytest.raises(ProjectError, match="does not exist" if case == "missing" else "is a folder"):
        load_ora(path)


def test_limits_on_layer_count_total_size_and_decoded_pixels(tmp_path):
    path = tmp_path / "many.ora"
    pngs = {f"data/{i}.png": png_bytes(rgba(10, 10, (i, i, i))) for i in range(4)}
    plain_ora(path, "".join(f'<layer src="data/{i}.png"/>' for i in range(4)), pngs)
    assert len(load_ora(path)) == 4
    with pytest.raises(ProjectError, match="more than 3 layers"):
        load_ora(path, ReadLimits(max_layers=3))
    with pytest.raises(ProjectError, match="more than 1500 bytes of pixels|exceed the"):
        load_ora(path, ReadLimits(max_decoded_bytes=1500))
    with pytest.raises(ProjectError, match="unpacks to more than"):
        load_ora(path, ReadLimits(max_total_unpacked=100))
    with pytest.raises(ProjectError, match="entries, more than"):
        load_ora(path, ReadLimits(max_members=3))


def test_project_layer_count_limit(tmp_path):
    path = saved_project(tmp_path)
    with pytest.raises(ProjectError, match="more than 1 layers"):
        load_ora(path, ReadLimits(max_layers=1))


def test_error_is_picklable_and_one_sentence():
    error = ProjectError("/some/dir/p.ora", "is broken\n  badly")
    assert str(error) == "p.ora: is broken badly."
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.path == error.path


# ---- saving failures and atomicity ------------------------------------------------------------


def test_unsaveable_layers_and_folders_are_project_errors(tmp_path):
    doc = Document(4, 4)
    doc.add_layer_untracked(ImageLayer(pixels=np.zeros((2, 2, 3), np.uint8)))
    with pytest.raises(ProjectError, match="cannot be saved"):
        save_ora(doc, tmp_path / "a.ora")
    with pytest.raises(ProjectError, match="cannot be written"):
        save_ora(Document(4, 4), tmp_path / "no such folder" / "a.ora")
    bad_colour = Document(4, 4)
    bad_colour.add_layer_untracked(RegionLayer(color="blue"))
    with pytest.raises(ProjectError, match="invalid colour"):
        save_ora(bad_colour, tmp_path / "b.ora")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_save_leaves_the_previous_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "p.ora"
    old = Document(4, 4)
    save_ora(old, path)
    before = path.read_bytes()
    calls = []

    def failing_encode(array):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return png_bytes(np.ascontiguousarray(array))

    monkeypatch.setattr(ora, "_encode_png", failing_encode)
    new = every_kind_document()
    with pytest.raises(ProjectError, match="No space left on device"):
        save_ora(new, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.ora"]


CHILD = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from canvas.io.ora import save_ora
from canvas.model.document import Document
from canvas.model.layers import ImageLayer
{body}
doc = large_document(int(sys.argv[2]))
print("saving", flush=True)
save_ora(doc, sys.argv[1])
print("saved", flush=True)
"""


def large_document(seed: int) -> Document:
    """Incompressible pixels, so that a save takes long enough to be killed at random points."""
    rng = np.random.default_rng(seed)
    doc = Document(768, 768)
    for _ in range(2):
        doc.add_layer_untracked(ImageLayer(pixels=rng.integers(0, 256, (768, 768, 4), dtype=np.uint8)))
    return doc


def run_child(path: Path, seed: int) -> subprocess.Popen:
    code = CHILD.format(repo=str(REPO), body=inspect.getsource(large_document))
    child = subprocess.Popen([sys.executable, "-c", code, str(path), str(seed)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "saving"
    return child


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_save_killed_mid_write_leaves_the_previous_file_loadable(tmp_path):
    path = tmp_path / "p.ora"
    old = every_kind_document()
    save_ora(old, path)
    timing = large_document(1)
    started = time.perf_counter()
    save_ora(timing, tmp_path / "timing.ora")  # how long a whole save takes here
    duration = time.perf_counter() - started
    rng = random.Random(5)
    outcomes = []
    for trial in range(3):
        child = run_child(path, trial)
        time.sleep(rng.uniform(0.05, 0.95) * duration)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        loaded = load_ora(path)  # never a partial file: the old project or the complete new one
        if loaded.same_as(old):
            outcomes.append("old")
        else:
            assert loaded.size == (768, 768) and len(loaded) == 2
            outcomes.append("new")
            save_ora(old, path)
        leftovers = {p.name for p in tmp_path.iterdir()} - {"p.ora", "timing.ora"}
        assert all(name.startswith(".p.ora.") and name.endswith(".tmp") for name in leftovers)
    assert "old" in outcomes


def test_unusable_settings_values_fall_back_to_defaults(tmp_path):
    path = saved_project(tmp_path, edit_json(lambda j: j["settings"].update(steps=float("inf"), prompt=None)))
    doc = load_ora(path)
    assert doc.settings.steps == 20 and doc.settings.prompt == "" and len(doc) == 2


def test_project_data_that_packs_extremely_well_is_not_a_zip_bomb(tmp_path):
    doc = Document(64, 64)
    doc.add_layer_untracked(RegionLayer(prompt="a" * (3 << 20)))
    path = tmp_path / "long prompt.ora"
    save_ora(doc, path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(PROJECT_MEMBER)
        assert info.file_size > 200 * info.compress_size  # a ratio refused for layer PNGs
    assert load_ora(path).same_as(doc)


def test_long_strokes_round_trip(tmp_path):
    doc = Document(64, 64)
    stroke = Stroke(tuple((float(i % 64), float(i // 64)) for i in range(1000)), "#ff0000", 2.0)
    doc.add_layer_untracked(ScribbleLayer(strokes=(stroke,) * 5, mode="annotation"))
    path = tmp_path / "strokes.ora"
    save_ora(doc, path)
    assert load_ora(path).same_as(doc)


def test_a_later_save_removes_temp_files_that_killed_saves_left(tmp_path):
    import os
    import time

    from canvas.io.atomic import STALE_TEMP_SECONDS, atomic_file

    target = tmp_path / "p.ora"
    old_stray = tmp_path / ".p.ora.abc123.tmp"
    fresh_stray = tmp_path / ".p.ora.def456.tmp"  # could be a save in progress in another process
    other = tmp_path / ".q.ora.xyz.tmp"
    for f in (old_stray, fresh_stray, other):
        f.write_bytes(b"partial")
    long_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old_stray, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    with atomic_file(target) as fh:
        fh.write(b"complete")
    assert target.read_bytes() == b"complete"
    assert not old_stray.exists()
    assert fresh_stray.exists() and other.exists()
