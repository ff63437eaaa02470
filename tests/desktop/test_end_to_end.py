"""The editor end to end with the real built-in tiny model (issue 6 acceptance 1) and its promises:
responsiveness during a generation, cancel within one step, closing during a generation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog, QFileDialog

from canvas.io.ora import load_ora
from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer, ScribbleLayer
from desktop import dialogs
from desktop.generation import JobState
from tests.desktop.gui_helpers import drag, line, wait_for, write_image

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64


@pytest.fixture(scope="module")
def tiny_engine():
    """One real engine for the module: torch and the tiny model load once, on the first worker thread.

    One intra-op thread: on a small shared CPU, torch's spinning worker threads make a 64 px step
    ten times slower, which would measure the machine rather than the editor.
    """
    import torch

    from inference.engine import Engine
    from inference.models import ModelManager

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Engine(ModelManager([], device="cpu"))
    torch.set_num_threads(threads)


@pytest.fixture
def editor(make_editor, tiny_engine):
    """An editor on the real tiny engine, showing a 64 px document (each step then costs milliseconds)."""
    from desktop.main_window import new_document

    made = make_editor(lambda: tiny_engine)
    made.window._replace_document(new_document(SIZE, SIZE), None)
    return made


def new_small_document(window, monkeypatch):
    def accept_small(dialog):
        dialog.width_box.setValue(SIZE)
        dialog.height_box.setValue(SIZE)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(dialogs.NewDocumentDialog, "exec", accept_small)
    window.actions["new"].trigger()
    window.view.fit()
    assert window.document.size == (SIZE, SIZE)


def test_compose_generate_accept_undo_save_and_reopen(qtbot, editor, monkeypatch, tmp_path):
    window = editor.window
    new_small_document(window, monkeypatch)
    doc, view = window.document, window.view

    # a mask stroke
    window.select_tool("brush")
    view.tool.set_size(10)
    drag(view, line((36, 36), (56, 52)))
    mask = next(la for la in doc.layers if isinstance(la, MaskLayer))
    assert mask.pixels[44, 46] > 0

    # a region box and its prompt
    window.select_tool("region")
    drag(view, line((4, 4), (30, 28)))
    region = doc.layers[-1]
    assert isinstance(region, RegionLayer) and region.rect == (4, 4, 26, 24)
    QTest.keyClicks(view.tool.prompt_editor, "a red kite")
    QTest.keyClick(view.tool.prompt_editor, Qt.Key.Key_Return)
    assert region.prompt == "a red kite"

    # a collage piece, imported and moved
    piece_file = write_image(tmp_path / "piece.png", (16, 16), (240, 200, 30, 255))
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: ([str(piece_file)], "")))
    window.actions["import_collage"].trigger()
    piece = doc.layers[-1]
    assert isinstance(piece, ImageLayer) and piece.collage and (piece.x, piece.y) == (24.0, 24.0)
    window.select_tool("move")
    drag(view, line((30, 30), (20, 38)))
    assert (piece.x, piece.y) == (14.0, 32.0)

    # scribbles
    window.select_tool("scribble")
    drag(view, line((8, 50), (28, 58)))
    sketch = next(la for la in doc.layers if isinstance(la, ScribbleLayer))
    assert len(sketch.strokes) == 1

    # settings through the panel
    panel = window.generation_panel
    panel.prompt.setFocus()
    QTest.keyClicks(panel.prompt, "a harbour at noon")
    panel.steps.setValue(2)
    panel.mode.activated.emit(panel.mode.findData("inpaint"))
    assert (doc.settings.prompt, doc.settings.steps, doc.settings.mode) == ("a harbour at noon", 2, "inpaint")
    assert doc.settings.model == "builtin:tiny-sd15"

    # generate: previews arrive, progress reaches the end
    previews, progress = [], []
    window.controller.preview_ready.connect(lambda rect, rgb: previews.append(rgb.shape))
    window.controller.progress_changed.connect(lambda job, step, total, left: progress.append((step, total)))
    window.actions["generate"].trigger()
    job = window.controller.jobs[-1]
    wait_for(lambda: job.state.done, 300)
    assert job.state is JobState.FINISHED, job.message
    assert previews and progress and progress[-1][0] == progress[-1][1]
    assert job.request.mode == "inpaint" and len(job.request.regions) == 1 and job.request.sketch_mask is not None
    assert window.staging_strip.isVisible() and window.view.staging.candidates

    # accept as a layer, then undo it
    before = len(doc.layers)
    window.actions["accept"].trigger()
    accepted = doc.layers[-1]
    assert len(doc.layers) == before + 1 and isinstance(accepted, ImageLayer)
    assert accepted.name.startswith("Generated")
    window.actions["undo"].trigger()
    assert accepted not in doc.layers and len(doc.layers) == before

    # save, reopen: the reopened document equals the saved one
    target = tmp_path / "harbour.ora"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    window.actions["save"].trigger()  # written on the save thread
    wait_for(lambda: target.exists() and not window.isWindowModified(), 30)
    saved = window.document
    assert window.open_path(target)
    assert window.document is not saved and window.document.same_as(saved)
    assert load_ora(target).same_as(saved)


def test_the_window_stays_responsive_during_a_generation(qtbot, editor, capsys):
    window = editor.window
    window.document.settings.steps = 6
    window.document.settings.batch_count = 2
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    previews = []
    window.controller.preview_ready.connect(lambda rect, rgb: previews.append(rgb.shape))
    job = window.generate()
    timer.start()
    wait_for(lambda: job.state.done, 300)
    timer.stop()
    assert job.state is JobState.FINISHED, job.message
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    longest = max(gaps)
    with capsys.disabled():
        print(f"\n[responsiveness] {len(ticks)} ticks of a 10 ms timer during a {job.total}-step tiny generation "
              f"with {len(previews)} previews: longest gap {longest * 1000:.0f} ms, median "
              f"{sorted(gaps)[len(gaps) // 2] * 1000:.0f} ms")
    assert len(previews) >= 2
    assert longest < 1.5  # generous: the machine is shared; a blocked GUI would show the whole generation


def test_cancel_takes_effect_within_one_step(qtbot, editor, capsys):
    window = editor.window
    window.document.settings.steps = 60
    steps: list[float] = []
    window.controller.progress_changed.connect(lambda job, step, total, left: steps.append(time.perf_counter()))
    job = window.generate()
    wait_for(lambda: len(steps) >= 3, 300)
    step_time = (steps[-1] - steps[0]) / (len(steps) - 1)
    asked = time.perf_counter()
    window.actions["cancel"].trigger()
    wait_for(lambda: job.state.done, 60)
    took = time.perf_counter() - asked
    with capsys.disabled():
        print(f"\n[cancel] one step takes {step_time * 1000:.0f} ms; cancel took effect after {took * 1000:.0f} ms "
              f"at step {job.step} of {job.total}")
    assert job.state is JobState.CANCELLED
    assert job.step < job.total
    assert took < 2 * step_time + 0.5  # the step in flight finishes, the next one does not start


def test_closing_during_a_generation_stops_it_without_a_hang(qtbot, editor):
    window, worker = editor.window, editor.worker
    window.document.settings.steps = 200
    job = window.generate()
    wait_for(lambda: job.step >= 1, 300)
    started = time.perf_counter()
    assert window.close()
    took = time.perf_counter() - started
    assert took < 5.0  # the window never waits longer than the worker's join timeout
    wait_for(lambda: not worker.alive, 10)  # the step in flight ends, then the thread
    assert not editor.autosave.folder.exists()  # a clean exit leaves nothing to restore
    wait_for(lambda: job.state.done, 5)
    assert job.state is JobState.CANCELLED and job.step < job.total


CLOSE_WHILE_GENERATING = """
import sys, time
from PySide6.QtCore import Qt, QTimer
from desktop import app

start = app.start_editor

def start_and_close(editor, path):
    start(editor, path)
    window = editor.window
    window.document.settings.steps = 500
    window.document.settings.model = "builtin:tiny-sd15"
    job = window.generate()

    def close_when_running():
        if job.step >= 1:
            print("STEP", job.step, flush=True)
            window.close()
        else:
            QTimer.singleShot(20, close_when_running)

    QTimer.singleShot(20, close_when_running)

app.start_editor = start_and_close
status = app.run_editor(None, None)
print("EXITED", status, flush=True)
sys.exit(status)
"""


@pytest.mark.slow
def test_the_real_editor_process_exits_cleanly_when_closed_mid_generation(user_dirs):
    proc, line, out, err, took = run_editor_process(CLOSE_WHILE_GENERATING, (), "STEP", wait=400, exit_wait=30)
    assert line.startswith("STEP"), err[-2000:]
    assert proc.returncode == 0 and "EXITED 0" in out, err[-2000:]
    assert took < 30


def run_editor_process(script: str, args, marker: str, *, wait: float, exit_wait: float):
    """Run `script` (an editor that prints `marker` when it closes its window) in its own process;
    (process, the marker line, stdout after it, stderr, seconds from the marker to the exit)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + wait
        while not line.startswith(marker) and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        closed_at = time.monotonic()
        out, err = proc.communicate(timeout=exit_wait)
        took = time.monotonic() - closed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, line, out, err, took


def test_only_masked_inpaint_previews_and_result_are_drawn_over_the_engines_rectangles(qtbot, editor, monkeypatch):
    """Issue 13 acceptance 3: the editor draws each step preview over the crop the engine chose and the
    result over the area the engine's composite may change; the GUI computes no geometry of its own."""
    import numpy as np
    from PySide6.QtCore import QRectF

    import inference.sd.inpaint as inpaint
    from canvas.model.commands import AddLayer
    from desktop.main_window import new_document

    crops, changed = [], []
    choose_crop_box, weight_box = inpaint.InpaintExtension.choose_crop_box, inpaint.weight_box
    monkeypatch.setattr(inpaint.InpaintExtension, "choose_crop_box",
                        lambda self, ctx: crops.append(choose_crop_box(self, ctx)) or crops[-1])
    monkeypatch.setattr(inpaint, "weight_box", lambda weight: changed.append(weight_box(weight)) or changed[-1])

    width, height = 96, 64
    window = editor.window
    doc = new_document(width, height, settings=dict(
        mode="inpaint", inpaint_area="only_masked", padding=4, mask_blur=2, steps=2, seed=7, strength=1.0,
        model="builtin:tiny-sd15", prompt="a red ball", sampler="Euler"))
    background = np.random.default_rng(3).integers(0, 256, (height, width, 4), dtype=np.uint8)
    background[..., 3] = 255
    doc.execute(AddLayer(ImageLayer(name="Background", pixels=background)))
    mask = np.zeros((height, width), np.uint8)
    mask[36:50, 60:78] = 255
    doc.execute(AddLayer(MaskLayer(pixels=mask)))
    window._replace_document(doc, None)
    overlay = window.view.staging
    drawn = []
    window.controller.preview_ready.connect(lambda rect, rgb: drawn.append(QRectF(overlay.area)))

    job = window.controller.generate()
    assert job is not None
    qtbot.waitUntil(lambda: window.controller.staging is not None, timeout=120_000)
    assert job.state is JobState.FINISHED

    def as_qrect(box):
        x0, y0, x1, y1 = box
        return QRectF(x0, y0, x1 - x0, y1 - y0)

    (crop,) = set(crops)
    assert crop != (0, 0, width, height)  # a real crop, or the test would prove nothing
    assert len(drawn) == 2 and all(rect == as_qrect(crop) for rect in drawn)
    (area,) = set(changed)
    assert overlay.area == as_qrect(area)
    result = job.images[0]
    outside = np.ones((height, width), bool)
    x0, y0, x1, y1 = area
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(result[outside], background[..., :3][outside])  # nothing changed beyond it
    layer = window.controller.accept()
    assert (layer.x, layer.y, layer.pixels.shape[:2]) == (x0, y0, (y1 - y0, x1 - x0))


CLOSE_AFTER_A_GENERATION = """
import sys, time
from pathlib import Path
from PySide6.QtCore import QTimer
from desktop import app, cli


class Finalised:
    # Printed only if the interpreter tears its modules down (the slow exit of issue 16).
    def __del__(self):
        print("FINALISED", flush=True)


finalised = Finalised()
start = app.start_editor
project = Path(sys.argv[1])


def start_and_close(editor, path):
    start(editor, path)
    window = editor.window
    window.document.settings.steps = 2
    window.document.settings.model = "builtin:tiny-sd15"
    jobs = []

    def generate_then_close():
        if not jobs:
            job = window.generate()  # None until discovery has listed the built-in model
            if job is not None:
                jobs.append(job)
        elif jobs[0].state.done and window.controller.staging is not None:
            window.controller.accept()
            assert window._save_to(project, background=True)  # under way when the window closes
            window._closing = True  # no "save changes?" question
            print("CLOSING", flush=True)
            window.close()
            return
        QTimer.singleShot(50, generate_then_close)

    QTimer.singleShot(50, generate_then_close)


app.start_editor = start_and_close
sys.argv = sys.argv[:1]
raise SystemExit(cli.main([]))
"""


def test_the_real_editor_process_exits_at_once_after_a_generation_and_finishes_its_saves(user_dirs, tmp_path):
    """Issue 16: the process took ~5.6 s to exit after the window closed (2.8-3.0 s here after one tiny
    generation): the interpreter's final garbage collections over torch's and diffusers' objects. It now
    ends once run_editor has returned (desktop.app.exit_process): about 0.2 s. The bound is loose on
    purpose (a timed test on a shared machine); that the modules are no longer torn down is checked
    exactly. The save under way at the close is still on disk, and the clean exit leaves no autosave."""
    project = tmp_path / "saved.ora"
    proc, line, out, err, took = run_editor_process(CLOSE_AFTER_A_GENERATION, (str(project),), "CLOSING",
                                                    wait=300, exit_wait=60)
    assert line.startswith("CLOSING"), err[-2000:]
    assert proc.returncode == 0, err[-2000:]
    assert "FINALISED" not in out  # the interpreter's teardown is skipped
    assert took < 2.5, f"the process took {took:.1f} s to exit after the window closed"
    document = load_ora(project)  # the save under way finished
    assert any(isinstance(layer, ImageLayer) and layer.generation is not None for layer in document.layers)
    assert not list(user_dirs.rglob("session-*"))  # a clean exit leaves no autosave to restore
