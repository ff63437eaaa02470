"""Saves that must not destroy, and opens that must not hang: devices, FIFOs, symlinks, hard links,
ownership and permission bits, glob characters in names, strict values in project settings."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest

from canvas.io.errors import ProjectError
from canvas.io.ora import load_ora, save_ora
from canvas.io.png_info import read_png_parameters, write_png
from canvas.io.regular_file import open_regular_file, output_target, read_regular_file
from canvas.model.document import Document, GenerationSettings
from canvas.model.layers import ImageLayer

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs and symlinks")
root_only = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")


def document(prompt: str = "a fox") -> Document:
    doc = Document(8, 8, settings=GenerationSettings(prompt=prompt))
    doc.add_layer_untracked(ImageLayer(id="l1", pixels=np.full((8, 8, 4), 200, np.uint8)))
    return doc


def save_project(path) -> None:
    save_ora(document(), path)


def save_image(path) -> None:
    write_png(path, np.zeros((4, 4, 3), np.uint8), {"prompt": "p"})


SAVERS = [pytest.param(save_project, id="save_ora"), pytest.param(save_image, id="write_png")]


@posix_only
@pytest.mark.parametrize("save", SAVERS)
def test_a_fifo_is_refused_and_stays_a_fifo(tmp_path, save):
    target = tmp_path / "out"
    os.mkfifo(target)
    with pytest.raises(ProjectError, match="FIFO.*left as it is"):
        save(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp file left either


@root_only
@pytest.mark.parametrize("save", SAVERS)
def test_a_device_node_is_refused_and_stays_a_device(tmp_path, save):
    # A private copy of /dev/null's node (char 1:3): as root, `--out /dev/null` used to replace the real one.
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    link = tmp_path / "link-to-null"
    link.symlink_to(node)
    for target in (node, link):
        with pytest.raises(ProjectError, match="is a device"):
            save(target)
    assert stat.S_ISCHR(os.lstat(node).st_mode) and os.path.islink(link)


@posix_only
@pytest.mark.parametrize("save", SAVERS)
def test_saving_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, save):
    real = tmp_path / "real" / "file"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    save(link)
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert real.read_bytes() != b"old" and real.stat().st_size > 0
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "real" / "new")
    save(dangling)  # a link to a name not yet there: the file is created where it points
    assert os.path.islink(dangling) and (tmp_path / "real" / "new").stat().st_size > 0


@pytest.mark.parametrize("save", SAVERS)
def test_permission_bits_are_kept(tmp_path, save):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o640)
    save(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@root_only
@pytest.mark.parametrize("save", SAVERS)
def test_root_gives_the_file_back_to_its_owner(tmp_path, save):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    os.chown(target, 12345, 23456)
    save(target)
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (12345, 23456) and target.read_bytes() != b"old"


@pytest.mark.parametrize("save", SAVERS)
def test_every_hard_link_sees_the_new_content(tmp_path, save):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    other = tmp_path / "g"
    os.link(target, other)
    inode = target.stat().st_ino
    save(target)
    assert target.stat().st_ino == inode and other.read_bytes() == target.read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "g"]


@pytest.mark.parametrize("name", ["a**b.ora", "[1] x?.ora", "**", "*.ora"])
def test_glob_characters_in_a_name_are_saved_literally(tmp_path, name):
    neighbour = tmp_path / "neighbour.ora"
    save_project(neighbour)
    target = tmp_path / name
    save_project(target)
    save_project(target)  # a second save sweeps this name's temp files, literally
    assert load_ora(target).settings.prompt == "a fox" and neighbour.exists()


def test_output_target_says_why_before_any_work(tmp_path):
    with pytest.raises(ProjectError, match="folder .*missing does not exist"):
        output_target(tmp_path / "missing" / "o.png")
    with pytest.raises(ProjectError, match="is a folder"):
        output_target(tmp_path)
    assert output_target(tmp_path / "new.png") == (tmp_path / "new.png").resolve()


@posix_only
def test_open_regular_file_refuses_fifos_devices_folders_and_large_files(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    for path, reason in ((pipe, "FIFO"), (zero, "a device"), (tmp_path, "a folder"), (tmp_path / "no", "does not")):
        with pytest.raises(ProjectError, match=reason):
            open_regular_file(path, 1 << 20)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(ProjectError, match="101 bytes, more than the 100"):
        read_regular_file(big, 100)
    assert read_regular_file(big, 101) == b"x" * 101
    with pytest.raises(ProjectError, match="FIFO"):
        read_png_parameters(pipe)


# ---- values ---------------------------------------------------------------------------------


def test_a_string_false_in_a_project_does_not_turn_lcm_on(tmp_path):
    path = tmp_path / "p.ora"
    save_project(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    project = json.loads(members["data/collagen/project.json"])
    project["settings"].update(lcm="false", color_match="true", steps="30", cfg=True, prompt=5)
    members["data/collagen/project.json"] = json.dumps(project).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    settings = load_ora(path).settings
    assert (settings.lcm, settings.color_match, settings.steps, settings.cfg, settings.prompt) == \
        (False, False, 20, 7.0, "")


# ---- strokes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [0.5, 3.0, 40.0, 400.0])
def test_the_outline_tiles_give_exactly_what_the_direct_method_gives(monkeypatch, width):
    from canvas.model import raster

    rng = np.random.default_rng(int(width * 10))
    points = np.cumsum(rng.normal(0, 4, (300, 2)), axis=0) + 100
    points[::7] = points[::7].round()  # pixel-aligned points as well
    monkeypatch.setattr(raster, "DIRECT_WORK", float("inf"))
    direct = raster.stroke_coverage(points, width, 200, 160)
    monkeypatch.setattr(raster, "DIRECT_WORK", -1.0)
    tiles = raster.stroke_coverage(points, width, 200, 160)
    assert direct[0] == tiles[0] and np.array_equal(direct[1], tiles[1])


def test_a_wide_stroke_going_back_and_forth_renders_quickly_and_a_crafted_one_is_refused():
    import time

    from canvas.model.document import DocumentError
    from canvas.model.layers import ScribbleLayer, Stroke
    from canvas.model.raster import render_strokes

    back_and_forth = Stroke(tuple((float(i % 50), float(i % 37)) for i in range(20_000)), "#ff0000", 400.0)
    started = time.process_time()
    image, _ = render_strokes([back_and_forth], 512, 512)
    assert time.process_time() - started < 5 and image[..., 3].max() == 255
    doc = Document(512, 512)
    crafted = Stroke(((0.0, 0.0), (1.0, 1.0)) * 100_000, "#ff0000", 10_000.0)
    with pytest.raises(DocumentError, match="too costly to draw"):
        doc.add_layer_untracked(ScribbleLayer(strokes=(crafted,)))
