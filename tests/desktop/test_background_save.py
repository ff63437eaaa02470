"""Autosave off the GUI thread (issue 16): a snapshot copies only changed layers, the PNG cache encodes
only changed layers, and painting during a save does not reach the file being written."""

from __future__ import annotations

import numpy as np

from canvas.io.ora import PngCache, load_ora, save_ora
from canvas.model.document import Document
from canvas.model.layers import ImageLayer, Rect
from canvas.model.snapshot import Snapshots


def layered(count: int = 5, side: int = 64) -> Document:
    document = Document(side, side)
    rng = np.random.default_rng(3)
    for i in range(count):
        document.add_layer_untracked(ImageLayer(id=f"l{i}", name=f"layer {i}",
                                                pixels=rng.integers(0, 256, (side, side, 4), np.uint8)))
    return document


def paint(layer: ImageLayer, value: int) -> None:
    layer.pixels[:8, :8] = value
    layer.pixels_touched(Rect(0, 0, 8, 8))


def test_a_snapshot_after_one_stroke_copies_one_layer_and_shares_nothing_live():
    document, snapshots = layered(), Snapshots()
    first = snapshots.take(document)
    paint(document.layers[2], 7)
    second = snapshots.take(document)
    same = [a.pixels is b.pixels for a, b in zip(first.layers, second.layers)]
    assert same == [True, True, False, True, True]
    assert all(s.pixels is not d.pixels and not s.pixels.flags.writeable
               for s, d in zip(second.layers, document.layers))
    kept = second.layers[0].pixels.copy()
    paint(document.layers[0], 9)  # painting after the snapshot does not reach it
    assert np.array_equal(second.layers[0].pixels, kept) and not np.array_equal(document.layers[0].pixels, kept)


def test_the_png_cache_encodes_only_changed_layers_and_the_file_is_exact(tmp_path):
    document, snapshots, cache = layered(), Snapshots(), PngCache()
    save_ora(snapshots.take(document), tmp_path / "a.ora", cache=cache)
    assert cache.encoded == 5
    paint(document.layers[4], 1)
    document.layers[1].x = 3.0  # moved by whole pixels: stored as it is, its PNG is unchanged
    save_ora(snapshots.take(document), tmp_path / "b.ora", cache=cache)
    assert cache.encoded == 1
    assert load_ora(tmp_path / "b.ora").same_as(document)


def test_the_timer_autosave_runs_on_a_worker_thread_from_a_snapshot(qtbot, make_editor):
    editor = make_editor()
    window = editor.window
    window._replace_document(layered(), None)
    layer = window.document.layers[3]
    before = layer.pixels.copy()
    window._changes_since_autosave = 1
    assert window.autosave_in_background()
    assert not window.autosave_in_background()  # one at a time
    paint(layer, 200)  # the user keeps painting while it saves
    qtbot.waitUntil(lambda: window._background_save is None, timeout=20_000)
    saved = load_ora(editor.autosave.files()[-1])
    assert np.array_equal(saved.layers[3].pixels, before)
