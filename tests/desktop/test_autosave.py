"""Autosave rotation, crash detection (including a real SIGKILL), restore, and the on-disk change guard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from canvas.model.commands import AddLayer
from canvas.model.document import Document
from canvas.model.layers import MaskLayer, RegionLayer
from desktop.autosave import Autosave, FileStamp, pid_alive

ROOT = Path(__file__).resolve().parents[2]


def small_document(prompt: str = "a boat") -> Document:
    doc = Document(32, 32)
    doc.execute(AddLayer(RegionLayer(name="Boat", rect=(2, 2, 10, 10), prompt=prompt)))
    return doc


def test_saves_rotate_keeping_the_newest(tmp_path):
    autosave = Autosave(tmp_path, keep=2)
    autosave.start()
    paths = [autosave.save(small_document(f"v{i}")) for i in range(4)]
    assert autosave.files() == paths[2:]
    assert (autosave.folder / "session.json").exists()


def test_a_clean_finish_leaves_nothing_to_restore(tmp_path):
    autosave = Autosave(tmp_path)
    autosave.start()
    autosave.save(small_document())
    autosave.finish()
    assert not autosave.folder.exists()
    assert Autosave(tmp_path).find_orphans() == []


def test_a_dead_session_is_an_orphan_and_a_living_one_is_not(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = Autosave(tmp_path, pid=child.pid)
    dead.start()
    dead.set_source(tmp_path / "holiday.ora")
    dead.save(small_document("the sea"))
    living = Autosave(tmp_path, pid=os.getpid())
    living.start()
    living.save(small_document())
    empty = Autosave(tmp_path, pid=child.pid)
    empty.folder = tmp_path / "session-empty"
    empty.start()
    me = Autosave(tmp_path)
    orphans = me.find_orphans()
    assert [o.folder for o in orphans] == [dead.folder]
    assert orphans[0].title == "holiday.ora" and orphans[0].pid == child.pid
    assert not empty.folder.exists()  # died before its first autosave: cleaned up
    restored = me.restore(orphans[0])
    assert restored.layers[0].prompt == "the sea"
    me.discard(orphans[0])
    assert me.find_orphans() == []


def test_pid_alive_treats_an_unreaped_killed_child_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
        child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(-1)


def test_file_stamp_notices_outside_changes(tmp_path):
    path = tmp_path / "p.ora"
    path.write_bytes(b"one")
    stamp = FileStamp.of(path)
    assert not stamp.changed_on_disk()
    path.write_bytes(b"other")
    assert stamp.changed_on_disk()
    path.unlink()
    assert stamp.changed_on_disk()
    assert FileStamp.of(path) is None


CRASHING_EDITOR = """
import sys
from PySide6.QtWidgets import QApplication
from desktop.app import build_editor
from tests.desktop.fakes import FakeEngine
app = QApplication(sys.argv[:1])
editor = build_editor(app, engine_factory=FakeEngine)
editor.autosave.start()
window = editor.window
window.show()
from canvas.model.commands import SetProperty
window.document.execute(SetProperty(window.add_layer("region"), "prompt", "a lighthouse at dusk"))
window.add_layer("mask")
path = window.autosave_now()
print("AUTOSAVED", path, flush=True)
app.exec()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_while_editing_offers_the_autosave_at_the_next_start(qtbot, make_editor, user_dirs, monkeypatch):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_EDITOR], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "AUTOSAVED" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "AUTOSAVED" in line and "None" not in line, proc.stderr.read() if proc.poll() is not None else line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    from desktop import app as desktop_app

    offered = []
    monkeypatch.setattr(desktop_app.dialogs, "ask_restore", lambda parent, orphan: offered.append(orphan) or "restore")
    editor = make_editor()
    assert desktop_app.offer_restore(editor) is True
    assert len(offered) == 1 and offered[0].title == "an unsaved document"
    doc = editor.window.document
    assert [type(la) for la in doc.layers] == [RegionLayer, MaskLayer]
    assert doc.layers[0].prompt == "a lighthouse at dusk"
    assert editor.window.isWindowModified() and editor.window.path is None
    assert editor.window.has_unsaved_changes  # closing would ask to save the restored work
    # restored and discarded: the next start has nothing more to offer
    assert desktop_app.offer_restore(editor) is False and len(offered) == 1


def test_restore_answer_discard_and_later(qtbot, make_editor, user_dirs, monkeypatch):
    from desktop import app as desktop_app
    from desktop.settings import data_dir

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    crashed = Autosave(data_dir() / "autosave", pid=child.pid)
    crashed.start()
    doc = small_document()
    doc.execute(AddLayer(MaskLayer(pixels=np.zeros((32, 32), np.uint8))))
    crashed.save(doc)
    editor = make_editor()
    monkeypatch.setattr(desktop_app.dialogs, "ask_restore", lambda parent, orphan: "later")
    assert desktop_app.offer_restore(editor) is False and crashed.folder.exists()
    monkeypatch.setattr(desktop_app.dialogs, "ask_restore", lambda parent, orphan: "discard")
    assert desktop_app.offer_restore(editor) is False and not crashed.folder.exists()
    assert editor.window.document.layers == []


def test_session_lock_records_pid_and_source(tmp_path):
    autosave = Autosave(tmp_path)
    autosave.start()
    autosave.set_source("/projects/x.ora")
    lock = json.loads((autosave.folder / "session.json").read_text())
    assert lock["pid"] == os.getpid() and lock["source_path"] == "/projects/x.ora"
