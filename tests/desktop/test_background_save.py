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


def test_copy_some_spreads_the_copy_over_calls_and_a_painted_layer_starts_again(monkeypatch):
    import canvas.model.snapshot as snapshot_module

    monkeypatch.setattr(snapshot_module, "SLICE_BYTES", 64 * 4 * 8)  # 8 rows of a 64-wide layer per slice
    document, snapshots = layered(count=3), Snapshots()
    assert snapshots.pending_bytes(document) == 3 * 64 * 64 * 4
    assert not snapshots.copy_some(document, 0.0)  # one slice, then the clock says stop
    paint(document.layers[0], 5)  # painted mid-copy: its slices are copied again
    calls = 1
    while not snapshots.copy_some(document, 0.0):
        calls += 1
    assert calls > 3 and snapshots.pending_bytes(document) == 0
    copies = [entry[2] for entry in snapshots._copies.values()]
    taken = snapshots.take(document)
    assert all(any(layer.pixels is c for c in copies) for layer in taken.layers)  # take copied nothing
    assert all(np.array_equal(s.pixels, d.pixels) for s, d in zip(taken.layers, document.layers))


def test_history_marks_the_state_a_finished_save_holds_clean_even_after_more_edits():
    from canvas.model.commands import SetSetting

    document = Document(8, 8)
    document.execute(SetSetting("prompt", "a"))
    history = document.history
    history.saving_started()
    document.execute(SetSetting("steps", 9))  # done while the file is written
    history.saving_ended(True)
    assert not history.is_clean
    document.undo()
    assert history.is_clean  # the state the file holds
    history.saving_started()
    history.saving_ended(False)  # a failed save marks nothing
    document.redo()
    assert not history.is_clean


def test_save_writes_on_the_save_thread_while_the_user_keeps_painting(qtbot, make_editor, tmp_path):
    editor = make_editor()
    window = editor.window
    window._replace_document(layered(side=256), None)
    window.path = tmp_path / "p.ora"
    layer = window.document.layers[1]
    before = layer.pixels.copy()
    assert window.save(background=True)
    assert not window.save(background=True)  # one Save at a time
    paint(layer, 99)
    layer_moved = window.document.layers[2]
    from canvas.model.commands import SetProperty

    window.document.execute(SetProperty(layer_moved, "opacity", 0.5))  # an edit after the snapshot
    qtbot.waitUntil(lambda: not window._save_jobs and not window._project_save_pending, timeout=20_000)
    saved = load_ora(tmp_path / "p.ora")
    assert np.array_equal(saved.layers[1].pixels, before) and saved.layers[2].opacity == 1.0
    assert window.has_unsaved_changes  # the edit made during the save is not in the file
    window.document.undo()
    assert not window.has_unsaved_changes  # undoing it returns to what the file holds


def test_a_big_snapshot_is_copied_over_ticks_and_is_the_state_when_copying_ended(qtbot, make_editor, monkeypatch):
    import desktop.window_files as window_files

    monkeypatch.setattr(window_files, "SNAPSHOT_NOW_BYTES", 0)
    editor = make_editor()
    window = editor.window
    window._replace_document(layered(side=256), None)
    window._changes_since_autosave = 1
    assert window.autosave_in_background()
    assert window._snapshot_waiters  # copying, nothing submitted yet
    qtbot.waitUntil(lambda: window._background_save is None, timeout=20_000)
    saved = load_ora(editor.autosave.files()[-1])
    assert saved.same_as(window.document)


def test_a_save_after_a_mask_stroke_flattens_nothing_and_the_merged_picture_is_exact(tmp_path, monkeypatch):
    import zipfile

    import canvas.io.ora as ora
    from canvas.model.layers import MaskLayer

    document, snapshots, cache = layered(count=3), Snapshots(), PngCache()
    mask = MaskLayer(id="m", pixels=np.zeros((64, 64), np.uint8))
    document.add_layer_untracked(mask)
    save_ora(snapshots.take(document), tmp_path / "a.ora", cache=cache)
    assert cache.merged_encoded
    flattened = []
    real = ora.flatten_layers
    monkeypatch.setattr(ora, "flatten_layers", lambda doc, *a, **k: flattened.append(1) or real(doc, *a, **k))
    paint(mask, 255)  # a brush stroke on the mask: other programs see the same picture
    save_ora(snapshots.take(document), tmp_path / "b.ora", cache=cache)
    assert not cache.merged_encoded and flattened == [] and cache.encoded == 1
    document.layers[1].opacity = 0.5  # an image layer changed: flattened again
    save_ora(snapshots.take(document), tmp_path / "c.ora", cache=cache)
    save_ora(document, tmp_path / "fresh.ora")
    assert cache.merged_encoded and flattened == [1, 1]
    for name in ("b", "c"):
        assert load_ora(tmp_path / f"{name}.ora").same_as(document if name == "c" else load_ora(tmp_path / "b.ora"))
    with zipfile.ZipFile(tmp_path / "c.ora") as c, zipfile.ZipFile(tmp_path / "fresh.ora") as fresh, \
            zipfile.ZipFile(tmp_path / "a.ora") as a, zipfile.ZipFile(tmp_path / "b.ora") as b:
        assert c.read("mergedimage.png") == fresh.read("mergedimage.png") != a.read("mergedimage.png")
        assert b.read("mergedimage.png") == a.read("mergedimage.png")


def test_naming_the_project_never_waits_for_an_autosave_under_way(tmp_path):
    import json
    import threading
    import time

    from desktop.autosave import LOCK_NAME, Autosave

    session = Autosave(tmp_path)
    session.start()
    held, release = threading.Event(), threading.Event()

    def saving():  # what the save thread does while it writes a big project
        with session._saving:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=saving)
    thread.start()
    held.wait(5)
    started = time.perf_counter()
    session.set_source(tmp_path / "p.ora")
    assert time.perf_counter() - started < 0.5
    release.set()
    thread.join()
    session.save(Document(8, 8))  # the save writes the lock with the new path
    assert json.loads((session.folder / LOCK_NAME).read_text())["source_path"] == str(tmp_path / "p.ora")


def test_the_save_thread_runs_below_the_window_on_linux(make_editor):
    import os
    import sys
    import threading

    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread nice values are Linux's")
    window = make_editor(show=False).window
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    theirs = window._save_thread.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    assert theirs == min(19, ours + 10)
