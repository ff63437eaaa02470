"""Start-up that nothing on disk can stop: a full disk under the autosave folder, damaged session locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from canvas.io.ora import save_ora
from canvas.model.document import Document, GenerationSettings
from canvas.model.layers import MaskLayer
from desktop.autosave import LOCK_NAME, Autosave

full_disk = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def failing_autosave(root) -> Autosave:
    """An autosave session whose lock write hits a real ENOSPC: its temp lock is a link to /dev/full."""
    autosave = Autosave(root)
    autosave.folder.mkdir(parents=True)
    (autosave.folder / (LOCK_NAME + ".tmp")).symlink_to("/dev/full")
    return autosave


@full_disk
def test_a_full_disk_at_start_turns_autosave_off_with_a_sentence(tmp_path):
    autosave = failing_autosave(tmp_path / "autosave")
    problem = autosave.start()
    assert problem and problem.startswith("Autosave is off for now") and "No space left" in problem


@full_disk
def test_the_project_named_on_the_command_line_opens_although_the_lock_cannot_be_written(
        make_editor, tmp_path, monkeypatch):
    from desktop import app as desktop_app

    project = tmp_path / "wanted.ora"
    save_ora(Document(24, 24, settings=GenerationSettings(prompt="the wanted one")), project)
    editor = make_editor(show=False)
    editor.autosave = editor.window.autosave = failing_autosave(tmp_path / "autosave")
    monkeypatch.setattr(desktop_app.dialogs, "ask_restore", lambda parent, orphan: "later")
    desktop_app.start_editor(editor, str(project))
    assert editor.window.path == project.resolve()
    assert editor.window.document.settings.prompt == "the wanted one"
    assert "Autosave is off" in editor.window.statusBar().currentMessage()


DAMAGED_LOCKS = [b'{"pid": "abc"}', b'{"pid": null}', b'{"pid": 1e30}', b'{"pid": true}', b'{"pid": [1]}',
                 b'{"pid": 1e400}', b'{"pid": 100000000000000000000000}', b'{"pid": -5}', b"null", b"[1, 2]",
                 b'{"pid": 0, "host": 7, "source_path": 9}', b"\xff\xfe not utf-8", b"[" * 100_000, b""]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_damaged_session_locks_never_stop_a_start_and_their_work_is_offered(tmp_path):
    root = tmp_path / "autosave"
    for number, lock in enumerate(DAMAGED_LOCKS):
        crashed = Autosave(root, pid=dead_pid())
        crashed.folder = root / f"session-{number}-0"
        document = Document(16, 16)
        document.add_layer_untracked(MaskLayer(pixels=np.full((16, 16), number, np.uint8)))
        crashed.save(document)
        (crashed.folder / LOCK_NAME).write_bytes(lock)
    current = Autosave(root)
    assert current.start() is None
    orphans = current.find_orphans()
    assert len(orphans) == len(DAMAGED_LOCKS)
    assert all(isinstance(o.source_path, str) and isinstance(o.pid, int) for o in orphans)
    restored = sorted(int(Autosave.restore(o).layers[0].pixels[0, 0]) for o in orphans)
    assert restored == list(range(len(DAMAGED_LOCKS)))


def test_a_living_session_with_a_sound_lock_is_still_left_alone(tmp_path):
    root = tmp_path / "autosave"
    living = Autosave(root)  # this very process
    living.save(Document(8, 8))
    other = Autosave(root, pid=dead_pid())
    assert other.find_orphans() == []
    json.loads((living.folder / LOCK_NAME).read_text())  # still a sound lock
