"""No lost work: saves killed mid-write, autosave rotation, recovery after SIGKILL, and Save refusing
to overwrite a file changed on disk without asking.

The dedicated run is `python -m fuzz.kill_save --trials 100`; here a few kills per mode.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from canvas.io.errors import ProjectError
from canvas.io.ora import load_ora, save_ora
from canvas.model.document import Document, GenerationSettings
from canvas.model.layers import ImageLayer
from desktop.autosave import Autosave, FileStamp
from fuzz import kill_save

REPO = Path(__file__).resolve().parents[2]
needs_sigkill = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def small_document(prompt: str, value: int = 0) -> Document:
    document = Document(16, 16, settings=GenerationSettings(prompt=prompt))
    pixels = np.full((16, 16, 4), value, np.uint8)
    pixels[..., 3] = 255
    document.add_layer_untracked(ImageLayer(id=f"layer-{value}", name=prompt, pixels=pixels))
    return document


@needs_sigkill
def test_saves_killed_at_random_points_leave_the_old_or_the_new_project(tmp_path):
    report = kill_save.run_trials(3, "ora", seed=11, workdir=tmp_path, side=160)
    assert report.failures == [] and report.trials == 3
    assert report.loaded_first + report.loaded_second == 3


@needs_sigkill
def test_autosaves_killed_at_random_points_leave_a_restorable_session(tmp_path):
    report = kill_save.run_trials(2, "autosave", seed=11, workdir=tmp_path, side=160)
    assert report.failures == [] and report.trials == 2
    assert report.max_autosaves_left <= 3 + 1


def test_autosave_rotation_keeps_the_last_n_in_order(tmp_path):
    session = Autosave(tmp_path / "autosave", keep=3)
    session.start()
    written = [session.save(small_document(f"edit {i}", i)) for i in range(1, 8)]
    kept = session.files()
    assert kept == written[-3:]  # the newest three, oldest first
    assert [load_ora(path).settings.prompt for path in kept] == ["edit 5", "edit 6", "edit 7"]
    assert not any(path.exists() for path in written[:-3])
    assert [p.name for p in session.folder.iterdir() if p.name.endswith(".tmp")] == []
    session.finish()
    assert not session.folder.exists()  # a clean exit leaves nothing to restore


CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.reliability.test_lost_work import small_document
from desktop.autosave import Autosave
session = Autosave({root!r}, keep=5)
session.start()
session.set_source("/projects/holiday.ora")
for i, prompt in enumerate(("one", "two", "three"), 1):
    session.save(small_document(prompt, i))
print("saved", flush=True)
time.sleep(120)
"""


@needs_sigkill
def test_a_session_killed_with_sigkill_is_found_and_restored_at_the_next_start(tmp_path):
    root = tmp_path / "autosave"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), root=str(root))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "saved"
        next_start = Autosave(root)
        assert next_start.find_orphans() == []  # a running editor's session is not an orphan
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
        child.stdout.close()
    orphans = next_start.find_orphans()
    assert len(orphans) == 1
    orphan = orphans[0]
    assert orphan.pid == child.pid and orphan.title == "holiday.ora"
    restored = Autosave.restore(orphan)
    assert restored.same_as(small_document("three", 3))  # the newest state, nothing lost
    Autosave.discard(orphan)
    assert next_start.find_orphans() == [] and not orphan.folder.exists()


def test_a_session_that_died_before_its_first_autosave_leaves_no_orphan(tmp_path):
    dead = Autosave(tmp_path / "autosave", pid=2**22 + 12345)  # no such process
    dead.start()
    assert Autosave(tmp_path / "autosave").find_orphans() == []
    assert not dead.folder.exists()


# ---- Save and files changed on disk ------------------------------------------------------------------


def test_the_stamp_notices_every_outside_change(tmp_path):
    path = tmp_path / "p.ora"
    save_ora(small_document("mine"), path)
    stamp = FileStamp.of(path)
    assert not stamp.changed_on_disk()
    os.utime(path, ns=(stamp.mtime_ns, stamp.mtime_ns + 1_000_000))  # touched: same bytes, new time
    assert stamp.changed_on_disk()
    stamp = FileStamp.of(path)
    save_ora(small_document("theirs", 9), path)  # another program saved over it
    assert stamp.changed_on_disk()
    stamp = FileStamp.of(path)
    path.unlink()
    assert stamp.changed_on_disk()


@pytest.fixture
def window(qapp, tmp_path, monkeypatch):
    """An editor window with no engine behind it: Save and the on-disk guard are all this needs."""
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    from desktop.main_window import MainWindow
    from desktop.settings import AppSettings, SettingsStore
    from desktop.worker import InferenceWorker

    worker = InferenceWorker(lambda: None)
    made = MainWindow(worker=worker, settings_store=SettingsStore(tmp_path / "settings.json"),
                      settings=AppSettings())
    yield made
    made._closing = True
    made.close()
    worker.shutdown(5)


def test_save_asks_before_overwriting_a_file_changed_on_disk(window, tmp_path, monkeypatch):
    from desktop import dialogs

    path = tmp_path / "shared.ora"
    save_ora(small_document("mine", 1), path)
    assert window.open_path(path, ask=False)
    time.sleep(0.01)
    save_ora(small_document("theirs", 2), path)  # another program changed it while it was open here
    asked = []

    def answer(choice):
        def ask(parent, changed_path):
            asked.append(Path(changed_path).name)
            return choice
        return ask

    monkeypatch.setattr(dialogs, "ask_overwrite_changed_file", answer(False))
    assert window.save() is False
    assert asked == ["shared.ora"]
    assert load_ora(path).settings.prompt == "theirs"  # refused: their file is untouched

    monkeypatch.setattr(dialogs, "ask_overwrite_changed_file", answer(True))
    assert window.save() is True
    assert load_ora(path).settings.prompt == "mine"  # asked, agreed, overwritten
    asked.clear()
    assert window.save() is True and asked == []  # our own save is not an outside change


# ---- restoring what a crash left ---------------------------------------------------------------------


def crashed_session(root: Path, prompts: list[str]) -> Autosave:
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid that is certainly dead now
    child.wait()
    crashed = Autosave(root, keep=5, pid=child.pid)
    crashed.start()
    for index, prompt in enumerate(prompts, 1):
        crashed.save(small_document(prompt, index))
    return crashed


def test_restore_falls_back_to_the_newest_autosave_that_still_loads(tmp_path):
    root = tmp_path / "autosave"
    crashed = crashed_session(root, ["first", "second", "third"])
    newest = crashed.files()[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # the newest is damaged (a full disk, a bad sector)
    orphan = Autosave(root).find_orphans()[0]
    assert orphan.newest == newest
    assert Autosave.restore(orphan).settings.prompt == "second"  # one autosave lost, not the session
    for path in crashed.files():
        path.write_bytes(b"PK\x03\x04 nothing")
    with pytest.raises(ProjectError, match=newest.name):
        Autosave.restore(orphan)


@pytest.fixture
def editor(qapp, tmp_path, monkeypatch):
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("COLLAGEN_MODELS", "")
    from desktop.app import build_editor
    from tests.desktop.fakes import FakeEngine

    made = build_editor(qapp, engine_factory=FakeEngine)
    yield made
    made.window._closing = True
    made.window.close()
    made.worker.shutdown(5)
    made.autosave.finish()


def test_restored_work_is_autosaved_by_the_new_session_before_the_old_copy_goes(editor, monkeypatch):
    from desktop import app as desktop_app

    crashed_session(editor.autosave.root, ["before the crash"])
    monkeypatch.setattr(desktop_app.dialogs, "ask_restore", lambda parent, orphan: "restore")
    monkeypatch.setattr(editor.window, "autosave_now", lambda force=False: None)  # this session cannot save yet
    assert desktop_app.offer_restore(editor) is True
    assert len(editor.autosave.find_orphans()) == 1  # so the crashed copy stays, to be offered again
    monkeypatch.undo()
    monkeypatch.setattr(desktop_app.dialogs, "ask_restore", lambda parent, orphan: "restore")
    assert desktop_app.offer_restore(editor) is True
    assert editor.autosave.find_orphans() == []  # gone only now that...
    saved = editor.autosave.files()
    assert saved and load_ora(saved[-1]).settings.prompt == "before the crash"  # ...this session has it on disk
