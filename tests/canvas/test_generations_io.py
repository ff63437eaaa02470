"""The project's kept generations: the store and its budget, the ORA round trip, hostile indexes."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canvas.io import ora
from canvas.io.ora import GENERATIONS_FOLDER, GENERATIONS_MEMBER, PROJECT_MEMBER, load_ora, save_ora
from canvas.model.document import Document
from canvas.model.generations import GenerationError, Generations, ImageData, dropped_notice
from canvas.model.layers import ImageLayer
from canvas.model.snapshot import Snapshots

W, H = 32, 24


def image(seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, channels), dtype=np.uint8)


def record(seed: int) -> dict:
    return {"prompt": f"a fox number {seed}", "negative_prompt": "blurry", "seed": seed, "steps": 7,
            "sampler": "Euler a", "cfg_scale": 6.5, "model": "builtin:tiny-sd15", "loras": [{"name": "x", "weight": 0.5}]}


def project_with_generations(count: int = 6) -> tuple[Document, list[np.ndarray]]:
    doc = Document(W, H)
    images = [image(i, 4 if i == 2 else 3) for i in range(count)]
    for i, picture in enumerate(images):
        doc.generations.add(picture, record(i), area=(2, 3, 10, 8) if i % 2 else None, accepted=i in (1, 4))
    layer = ImageLayer(name="Generated", pixels=doc.generations.entries[1].layer_rgba(), x=2.0, y=3.0,
                       generation=record(1))
    doc.add_layer_untracked(layer)
    return doc, images


# ---- the store -----------------------------------------------------------------------------------


def test_entries_keep_the_image_losslessly_and_place_its_area():
    store = Generations()
    picture = image(1)
    entry, dropped = store.add(picture, record(1), area=(4, 2, 8, 6))
    assert dropped == [] and len(store) == 1 and store.get(entry.id) is entry
    assert np.array_equal(entry.pixels(), picture) and entry.pixels() is not entry.pixels()
    rgba = entry.layer_rgba()
    assert rgba.shape == (6, 8, 4) and np.array_equal(rgba[..., :3], picture[2:8, 4:12]) and (rgba[..., 3] == 255).all()
    assert entry.placement == (4, 2, 8, 6) and entry.title == "a fox number 1"
    outside, _ = store.add(picture, {}, area=(500, 500, 4, 4))  # an area off the image: the whole image
    assert outside.placement == (0, 0, W, H) and outside.title == "(generate)"
    with pytest.raises(GenerationError):
        store.add(np.zeros((4, 4), np.uint8), {})


def test_the_image_is_encoded_once_when_first_needed_and_then_only_its_bytes_are_kept():
    store = Generations()
    picture = image(3)
    entry, _ = store.add(picture, record(3))
    picture[:] = 0  # the store keeps its own copy
    assert store.unencoded() == [entry] and not entry.image.encoded and entry.nbytes == W * H * 4
    before = entry.pixels()
    store.set_accepted(entry.id, True)
    marked = store.get(entry.id)
    png = marked.png  # encodes, for both: accepting shares the image
    assert entry.image.encoded and entry.png is png and entry.image.array() is None and store.unencoded() == []
    assert np.array_equal(marked.pixels(), before) and np.array_equal(before, image(3))
    assert Image.open(io.BytesIO(png)).format == "PNG"
    with pytest.raises(GenerationError):
        ImageData()


def test_the_budget_drops_the_oldest_unaccepted_first_and_says_so():
    store = Generations()
    entries = [store.add(image(i), record(i), accepted=i in (0, 2))[0] for i in range(5)]
    size = entries[0].nbytes
    seen = []
    store.changed.connect(lambda: seen.append(len(store)))
    dropped = store.set_budget(size * 3 + size // 2)  # room for three
    assert [e.id for e in dropped] == [entries[1].id, entries[3].id]  # never accepted, oldest first
    assert [e.id for e in store] == [entries[0].id, entries[2].id, entries[4].id] and seen == [3]
    notice = dropped_notice(dropped, store.budget_bytes)
    assert notice.startswith("2 older generations left the project's history") and "Generations kept" in notice
    dropped = store.set_budget(1)  # nothing fits: accepted ones go too, oldest first, but the newest stays
    assert [e.id for e in dropped] == [entries[0].id, entries[2].id] and [e.id for e in store] == [entries[4].id]
    assert "(2 of them accepted)" in dropped_notice(dropped, 1)
    entry, dropped = store.add(image(9), record(9))
    assert [e.id for e in dropped] == [entries[4].id] and list(store) == [entry]
    assert dropped_notice([], 1) == ""


def test_accepting_replaces_the_entry_and_counts_as_a_change():
    store = Generations()
    entry, _ = store.add(image(1), record(1))
    revision = store.revision
    store.set_accepted(entry.id, True)
    marked = store.get(entry.id)
    assert marked.accepted and not entry.accepted and marked.png is entry.png and store.revision == revision + 1
    store.set_accepted(entry.id, True)  # no change, no event
    assert store.revision == revision + 1


def test_a_snapshot_shares_the_immutable_entries_and_not_the_list():
    doc, _ = project_with_generations(3)
    snapshot = Snapshots().take(doc)
    assert [e.png for e in snapshot.generations] == [e.png for e in doc.generations]
    assert all(a is b for a, b in zip(snapshot.generations, doc.generations))
    doc.generations.add(image(7), record(7))
    assert len(snapshot.generations) == 3 and len(doc.generations) == 4
    assert snapshot.layers[0].generation == record(1)


# ---- the project file ----------------------------------------------------------------------------


def test_save_and_reopen_keeps_every_generation_byte_for_byte_with_its_record(tmp_path):
    doc, images = project_with_generations(6)
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert GENERATIONS_MEMBER in names
        for entry in doc.generations:
            info = archive.getinfo(f"{GENERATIONS_FOLDER}{entry.id}.png")
            assert info.compress_type == zipfile.ZIP_STORED and archive.read(info) == entry.png
    back = load_ora(path)
    assert back.load_report == ""
    assert len(back.generations) == 6
    for before, after, picture in zip(doc.generations, back.generations, images):
        assert after.png == before.png and after.id == before.id and after.record == before.record
        assert (after.accepted, after.created, after.area) == (before.accepted, before.created, before.area)
        assert np.array_equal(after.pixels(), picture)
    assert back.layers[0].generation == record(1)
    assert back.same_as(doc)
    save_ora(back, tmp_path / "again.ora")  # saved again: the same bytes once more
    again = load_ora(tmp_path / "again.ora")
    assert [e.png for e in again.generations] == [e.png for e in doc.generations]


def test_a_project_without_generations_has_no_index_and_plain_readers_ignore_it(tmp_path):
    path = tmp_path / "p.ora"
    save_ora(Document(W, H), path)
    with zipfile.ZipFile(path) as archive:
        assert GENERATIONS_MEMBER not in archive.namelist()
    doc, _ = project_with_generations(2)
    save_ora(doc, path)
    with zipfile.ZipFile(path) as archive:  # what another OpenRaster reader looks at is unchanged
        stack = archive.read("stack.xml").decode()
        assert "generations" not in stack and archive.namelist()[0] == "mimetype"


def test_opening_reads_the_kept_images_without_decoding_them(tmp_path, monkeypatch):
    doc, _ = project_with_generations(5)
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    decoded = []
    real = ora.decode_png
    monkeypatch.setattr(ora, "decode_png", lambda data, limits, **kw: decoded.append(len(data)) or real(data, limits, **kw))
    back = load_ora(path)
    assert len(decoded) == len(back.layers) == 1 and len(back.generations) == 5
    assert len(load_ora(path, pixels=False).generations) == 0  # `collagen info` reads no images at all


def rewrite(path: Path, change) -> None:
    """Rewrite the archive with `change(members)` applied to a dict name -> bytes."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data, zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED)


def png_of(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def huge_png_header(width: int, height: int) -> bytes:
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    ihdr = struct.pack(">I", len(body)) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"\0\0\0\0IEND\xaeB`\x82"


def edit_index(change):
    def apply(members):
        index = json.loads(members[GENERATIONS_MEMBER])
        change(index, members)
        members[GENERATIONS_MEMBER] = json.dumps(index).encode()
    return apply


def first_png(members) -> str:
    return next(n for n in members if n.startswith(GENERATIONS_FOLDER))


ENTRY_DAMAGE = {
    "id out of the folder": lambda e, m: e.update(id="../../evil"),
    "id not text": lambda e, m: e.update(id=7),
    "width not the image's": lambda e, m: e.update(width=e["width"] + 1),
    "width negative": lambda e, m: e.update(width=-3),
    "height true": lambda e, m: e.update(height=True),
    "record not an object": lambda e, m: e.update(record=["prompt"]),
    "accepted not a flag": lambda e, m: e.update(accepted="yes"),
    "created not a number": lambda e, m: e.update(created="today"),
    "created of 400 digits": lambda e, m: e.update(created=10**400),
    "record with NaN": lambda e, m: e.update(record={"cfg_scale": float("nan")}),
    "area of three": lambda e, m: e.update(area=[1, 2, 3]),
    "area of floats": lambda e, m: e.update(area=[1.5, 2, 3, 4]),
    "area far out": lambda e, m: e.update(area=[10**12, 0, 1, 1]),
    "image missing": lambda e, m: m.pop(f"{GENERATIONS_FOLDER}{e['id']}.png"),
    "image not a PNG": lambda e, m: m.__setitem__(f"{GENERATIONS_FOLDER}{e['id']}.png", b"GIF89a" + b"\0" * 64),
    "image of 100000 px": lambda e, m: (e.update(width=100000, height=100000),
                                        m.__setitem__(f"{GENERATIONS_FOLDER}{e['id']}.png", huge_png_header(100000, 100000))),
    "entry not an object": None,  # replaced by a string below
}


@pytest.mark.parametrize("damage", list(ENTRY_DAMAGE))
def test_a_damaged_entry_is_left_out_with_a_note_and_the_rest_opens(tmp_path, damage):
    doc, images = project_with_generations(4)
    path = tmp_path / "p.ora"
    save_ora(doc, path)

    def change(index, members):
        if ENTRY_DAMAGE[damage] is None:
            index["entries"][1] = "not an entry"
        else:
            ENTRY_DAMAGE[damage](index["entries"][1], members)

    rewrite(path, edit_index(change))
    back = load_ora(path)
    assert [e.id for e in back.generations] == [e.id for i, e in enumerate(doc.generations) if i != 1]
    assert back.load_report == "1 of its 4 kept generations was damaged and left out."
    assert np.array_equal(back.generations.entries[0].pixels(), images[0])


def test_a_repeated_id_is_left_out(tmp_path):
    doc, _ = project_with_generations(3)
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    rewrite(path, edit_index(lambda index, m: index["entries"].append(dict(index["entries"][0]))))
    back = load_ora(path)
    assert len(back.generations) == 3 and "1 of its 4 kept generations was damaged" in back.load_report


@pytest.mark.parametrize(("index", "said"), [
    (b"{not json", "are not valid JSON"),
    (b"[1, 2]", "are not an index this version reads"),
    (b'{"format_version": 1, "entries": {}}', "are not an index this version reads"),
    (b'{"format_version": "1", "entries": []}', "are not an index this version reads"),
    (b'{"format_version": 99, "entries": []}', "saved by a newer Collagen"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
])
def test_an_unreadable_index_opens_the_project_without_its_generations(tmp_path, index, said):
    doc, _ = project_with_generations(2)
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    rewrite(path, lambda members: members.__setitem__(GENERATIONS_MEMBER, index))
    back = load_ora(path)
    assert len(back.generations) == 0 and len(back.layers) == 1
    assert said in back.load_report and back.load_report.endswith("the project opened without them.")


def test_more_entries_than_the_limit_keeps_the_newest(tmp_path):
    from canvas.io.limits import ReadLimits

    doc, _ = project_with_generations(5)
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    back = load_ora(path, ReadLimits(max_generations=2))
    assert [e.id for e in back.generations] == [e.id for e in doc.generations][-2:]
    assert "It lists 5 kept generations; the newest 2 were opened." in back.load_report


@pytest.mark.parametrize("damaged", ["seed 5", {"cfg_scale": float("inf")}])
def test_a_damaged_layer_record_is_left_out_with_a_note(tmp_path, damaged):
    doc, _ = project_with_generations(2)
    path = tmp_path / "p.ora"
    save_ora(doc, path)

    def change(members):
        project = json.loads(members[PROJECT_MEMBER])
        project["layers"][0]["generation"] = damaged
        members[PROJECT_MEMBER] = json.dumps(project).encode()

    rewrite(path, change)
    back = load_ora(path)
    assert back.layers[0].generation is None and len(back.layers) == 1
    save_ora(back, path)  # and the project can be saved again
    assert "The generation record of layer 1 is damaged and was left out." in back.load_report


def test_an_entry_whose_bytes_cannot_be_decoded_says_so_when_used(tmp_path):
    doc, _ = project_with_generations(2)
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    good = png_of(W, H)
    broken = good[:40] + b"\xff" * (len(good) - 52) + good[-12:]  # header intact, pixel data damaged

    rewrite(path, lambda members: members.__setitem__(first_png(members), broken))
    back = load_ora(path)
    assert len(back.generations) == 2  # its header is sound: opening does not decode it
    with pytest.raises(GenerationError, match="is damaged"):
        back.generations.entries[0].pixels()


def test_mutated_indexes_and_images_never_raise_and_stay_savable(tmp_path):
    import random

    from canvas.io.errors import ProjectError
    from tests.canvas.test_io_fuzz import mutate_bytes, mutate_json

    doc, _ = project_with_generations(4)
    path = tmp_path / "seed.ora"
    save_ora(doc, path)
    with zipfile.ZipFile(path) as archive:
        seed = {name: archive.read(name) for name in archive.namelist()}
    rng = random.Random(16)
    mutant = tmp_path / "mutant.ora"
    left_out = 0
    for _ in range(120):
        members = dict(seed)
        if rng.random() < 0.7:
            tree = json.loads(members[GENERATIONS_MEMBER])
            for _ in range(rng.randint(1, 3)):
                tree = mutate_json(tree, rng)
            members[GENERATIONS_MEMBER] = json.dumps(tree).encode()
        else:
            name = rng.choice(sorted(n for n in members if n.startswith(GENERATIONS_FOLDER)))
            members[name] = mutate_bytes(members[name], rng)
        with zipfile.ZipFile(mutant, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        try:
            back = load_ora(mutant)
        except ProjectError:  # only a member that is no longer sound zip data may refuse the whole file
            continue
        left_out += len(back.generations) < 4
        assert len(back.layers) == 1
        save_ora(back, tmp_path / "resaved.ora")
        for entry in back.generations:
            try:
                entry.pixels()
            except GenerationError as exc:
                assert str(exc).startswith("The kept generation ") and str(exc).endswith(".")
    assert left_out > 30  # the mutations reached the validators


def test_kept_generations_come_back_from_the_last_copy_when_another_program_dropped_them(tmp_path):
    doc, _ = project_with_generations(3)
    path = tmp_path / "p.ora"
    save_ora(doc, path, keep_copy=True)
    # Another program saves the layers again and drops Collagen's data (as Krita does).
    rewrite(path, lambda members: [members.pop(name) for name in list(members) if name.startswith("data/collagen")])
    back = load_ora(path)
    assert [e.png for e in back.generations] == [e.png for e in doc.generations]
    assert [e.record for e in back.generations] == [e.record for e in doc.generations]
    assert "the generation settings and 3 kept generations from the copy Collagen kept" in back.load_report

