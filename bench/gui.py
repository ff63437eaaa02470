"""Case 7: how the editor feels while it works, offscreen, through the real widgets and threads.

- Event-loop gap: a 10 ms QTimer ticks on the GUI thread while the real GenerationController sends
  a generation through the real InferenceWorker thread and Engine (middle-size SD1.5, linear previews
  drawn on a CanvasView's staging overlay). The longest time between two ticks while the job runs is
  how long the window could not react; 10 ms means it never missed a beat. The same timer on an
  idle loop gives the floor the machine itself sets (other processes, the OS scheduler).
- Stroke cost: a brush stroke of 99 mouse moves on a mask over a 4096x4096 document shown in a
  640x480 view; per mouse event, the handling alone and with the repaint of the dirty rectangle.
- Saving while painting: the real MainWindow (offscreen, private user folders) holds a 4096x4096
  project of 20 image layers (gradients with grain, so PNG encoding costs what a photo's does) and a
  mask; brush strokes go through the canvas's mouse-event path at 60 events a second while the Save
  action and the timer's autosave write it. The same 10 ms timer gives the longest gap and p99 over
  the whole time; "stroke to autosave" is from a stroke's release (the autosave starts then, as if
  its timer fired) to the autosave file being complete, with the user still painting.

Runs in its own process (it needs a QApplication): python -m bench.gui [--size 256 --steps 4 --runs 3]
prints its results as JSON lines; bench/__main__.py starts it and folds them into the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

from bench.harness import BenchError, CaseResult, spread

TICK_MS = 10
STROKE_DOCUMENT = 4096
STROKE_MOVES = 99


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class TickRecorder:
    """Timestamps of a precise repeating QTimer: the gaps between them are the event loop's latency."""

    def __init__(self, interval_ms: int = TICK_MS):
        from PySide6.QtCore import Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._on_timeout)

    def _on_timeout(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks.clear()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return [(b - a) * 1e3 for a, b in zip(self.ticks, self.ticks[1:])]


async def measure_generation_gaps(size: int, steps: int, runs: int, model_size: str = "mid") -> dict:
    from PySide6.QtWidgets import QApplication

    from bench.cases import NEGATIVE, PROMPT
    from bench.models import BenchModels, build_bench_model
    from canvas.model.commands import SetSetting
    from canvas.model.document import Document
    from canvas.view.canvas_view import CanvasView
    from desktop.generation import GenerationController, JobState
    from desktop.worker import InferenceWorker

    model = build_bench_model("sd15", model_size)
    models = BenchModels({model.name: model})

    def engine_factory():
        from inference.engine import Engine

        return Engine(models)

    document = Document(size, size)
    settings = dict(model=model.name, prompt=PROMPT, negative=NEGATIVE, steps=steps, sampler="Euler", seed=1234)
    for name, value in settings.items():
        document.execute(SetSetting(name, value))
    document.history.clear()
    view = CanvasView(document)
    view.resize(640, 480)
    view.show()
    QApplication.processEvents()
    worker = InferenceWorker(engine_factory)
    controller = GenerationController(worker, document, preview_method="linear")
    previews = []

    def on_preview(rect, rgb) -> None:
        previews.append(rgb.shape)
        view.staging.show_preview(rect, rgb)

    controller.preview_ready.connect(on_preview)
    controller.staging_changed.connect(
        lambda: view.staging.set_candidates(controller.staging.candidates, controller.staging.area)
        if controller.staging else view.staging.clear()
    )
    recorder = TickRecorder()
    try:
        # The first job loads nothing (the model is built) but warms torch's kernels: not measured.
        await run_job(controller, JobState)
        recorder.start()
        await asyncio.sleep(1.0)
        idle_gaps = recorder.stop()
        busy_max, busy_p99, busy_median, seconds = [], [], [], []
        for _ in range(runs):
            previews.clear()
            recorder.start()
            started = time.perf_counter()
            await run_job(controller, JobState)
            seconds.append(time.perf_counter() - started)
            gaps = recorder.stop()
            if not previews:
                raise BenchError("The GUI generation showed no previews.")
            busy_max.append(max(gaps))
            busy_p99.append(percentile(gaps, 0.99))
            busy_median.append(statistics.median(gaps))
    finally:
        controller.shutdown()
        worker.shutdown(timeout=10)
        view.close()
    return {"busy_max_ms": busy_max, "busy_p99_ms": busy_p99, "busy_median_ms": busy_median,
            "idle_max_ms": max(idle_gaps), "idle_p99_ms": percentile(idle_gaps, 0.99),
            "job_seconds": seconds, "previews_last_job": len(previews)}


async def run_job(controller, job_states) -> None:
    job = controller.generate()
    if job is None:
        raise BenchError("The controller refused the benchmark's generation.")
    while not job.state.done:
        await asyncio.sleep(0.005)
    if job.state is not job_states.FINISHED:
        raise BenchError(f"The GUI generation ended {job.state.value}: {job.message}")


def measure_stroke() -> dict:
    import numpy as np
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from canvas.model.document import Document
    from canvas.model.layers import ImageLayer, MaskLayer
    from canvas.view.canvas_view import CanvasView

    side = STROKE_DOCUMENT
    document = Document(side, side)
    mask = MaskLayer(pixels=np.zeros((side, side), np.uint8))
    document.add_layer_untracked(ImageLayer(pixels=np.full((side, side, 4), 180, np.uint8)))
    document.add_layer_untracked(mask)
    document.active_layer = mask
    view = CanvasView(document)
    view.resize(640, 480)
    view.show()
    QApplication.processEvents()
    view.fit()
    view.set_tool("brush")
    view.tools["brush"].set_size(64)
    QApplication.processEvents()

    def send(kind, x: float, y: float, button, buttons) -> None:
        position = view.map_from_document(QPointF(x, y))
        global_position = QPointF(view.viewport().mapToGlobal(position.toPoint()))
        event = QMouseEvent(kind, position, global_position, button, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(view.viewport(), event)

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    points = [(400.0 + 30.0 * i, 2000.0 + 400.0 * np.sin(i / 8.0)) for i in range(STROKE_MOVES + 1)]
    handling, with_repaint = [], []
    send(QEvent.Type.MouseButtonPress, *points[0], left, left)
    QApplication.processEvents()
    for x, y in points[1:]:
        t0 = time.perf_counter()
        send(QEvent.Type.MouseMove, x, y, none, left)
        t1 = time.perf_counter()
        QApplication.processEvents()
        t2 = time.perf_counter()
        handling.append((t1 - t0) * 1e3)
        with_repaint.append((t2 - t0) * 1e3)
    send(QEvent.Type.MouseButtonRelease, *points[-1], left, none)
    QApplication.processEvents()
    if len(document.history) != 1 or mask.pixels[2000, 400] != 255:
        raise BenchError("The benchmark stroke did not paint the mask as one undo step.")
    view.close()
    return {"handling_ms": handling, "with_repaint_ms": with_repaint, "zoom": view.zoom}


SAVE_SIDE = 4096
SAVE_LAYERS = 20
MOVE_SECONDS = 1 / 60  # mouse events of a stroke, as a pointer sends them


def project_layers(side: int, count: int):
    """`count` different image layers of smooth colour with grain: the bottom one opaque, the others
    pieces with soft alpha (what a collage is made of)."""
    import numpy as np

    from canvas.model.layers import ImageLayer

    rng = np.random.default_rng(16)
    axis = np.linspace(0.0, 1.0, side, dtype=np.float32)
    base = np.empty((side, side, 3), np.uint8)
    base[..., 0] = (127 + 120 * np.sin(9.0 * axis))[None, :]
    base[..., 1] = (127 + 120 * np.cos(7.0 * axis))[:, None]
    base[..., 2] = (255 * np.outer(axis, axis[::-1])).astype(np.uint8)
    grain = rng.integers(0, 14, (side, side, 3), dtype=np.uint8)
    disc = np.hypot(*np.meshgrid(axis - 0.5, axis - 0.5))
    soft = np.clip((0.45 - disc) * 12.0, 0.0, 1.0)
    layers = []
    for index in range(count):
        pixels = np.empty((side, side, 4), np.uint8)
        shift = (index * side // 7, index * side // 11)
        pixels[..., :3] = np.roll(base, shift, axis=(0, 1))
        pixels[..., :3] += np.roll(grain, (index * 37, index * 91), axis=(0, 1))
        pixels[..., 3] = 255 if index == 0 else (255 * np.roll(soft, shift, axis=(0, 1))).astype(np.uint8)
        layers.append(ImageLayer(name=f"piece {index}", pixels=pixels))
    return layers


async def measure_save_gaps(side: int, count: int, runs: int) -> dict:
    """The real window saving a big project while the brush paints; see the module's docstring."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    home = Path(tempfile.mkdtemp(prefix="collagen-bench-save-"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        (home / name).mkdir()
        os.environ[name] = str(home / name)
    os.environ["COLLAGEN_MODELS"] = ""
    from canvas.model.document import Document
    from canvas.model.layers import MaskLayer
    from desktop.app import build_editor
    from desktop.idle_gc import IdleCollector

    editor = build_editor(QApplication.instance())
    editor.idle_collector = IdleCollector(QApplication.instance())  # as start_editor installs it
    window = editor.window
    window.resize(1440, 900)
    window.show()
    editor.autosave.start()
    window._autosave_timer.stop()  # started by hand below, at the moments measured
    built = time.perf_counter()
    document = Document(side, side)
    for layer in project_layers(side, count):
        document.add_layer_untracked(layer)
    mask = MaskLayer(name="mask", pixels=np.zeros((side, side), np.uint8))
    document.add_layer_untracked(mask)
    document.active_layer = mask
    build_seconds = time.perf_counter() - built
    window._replace_document(document, None)
    window.path = home / "project.ora"
    await asyncio.sleep(0.5)
    window.select_tool("brush")
    view = window.view
    view.tool.set_size(max(8, side // 64))

    def send(kind, x: float, y: float, button, buttons) -> None:
        position = view.map_from_document(QPointF(x, y))
        event = QMouseEvent(kind, position, QPointF(view.viewport().mapToGlobal(position.toPoint())), button,
                            buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(view.viewport(), event)

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    strokes = [0]

    async def stroke(moves: int = 30) -> None:
        row = side * (0.15 + 0.7 * ((strokes[0] * 0.137) % 1.0))
        strokes[0] += 1
        points = [(side * (0.1 + 0.8 * i / moves), row + side * 0.05 * np.sin(i / 4.0)) for i in range(moves + 1)]
        send(QEvent.Type.MouseButtonPress, *points[0], left, left)
        for x, y in points[1:]:
            await asyncio.sleep(MOVE_SECONDS)
            send(QEvent.Type.MouseMove, x, y, none, left)
        send(QEvent.Type.MouseButtonRelease, *points[-1], left, none)

    async def paint_until(done) -> None:
        while not done():
            await stroke()
            await asyncio.sleep(0.05)

    def idle() -> bool:
        return not window._save_jobs and not window._snapshot_waiters and not window._project_save_pending

    recorder = TickRecorder()
    recorder.start()
    await asyncio.sleep(1.0)
    idle_gaps = recorder.stop()
    # 1. The first Save and autosave of the project (every layer copied and encoded) while painting.
    recorder.start()
    started = time.perf_counter()
    await stroke()
    window.actions["save"].trigger()
    window._changes_since_autosave += 1
    window.autosave_in_background()
    await paint_until(idle)
    first_seconds = time.perf_counter() - started
    first_gaps = recorder.stop()
    if not window.path.exists() or not editor.autosave.files() or window.document.history.is_clean:
        raise BenchError("The first save while painting did not write the project and its autosave.")
    # 2. One stroke, then the timer's autosave, the user painting on; then the same for Save.
    after_stroke, save_after_stroke, busy_gaps = [], [], []
    for _ in range(runs):
        for kind in ("autosave", "save"):
            recorder.start()
            await stroke()
            released = time.perf_counter()
            if kind == "save":
                window.actions["save"].trigger()
            else:
                window._changes_since_autosave += 1
                window.autosave_in_background()
            job = next((j for j in window._save_jobs), None)
            while job is None and not idle():
                await asyncio.sleep(0.005)
                job = next((j for j in window._save_jobs), None)
            if job is None:
                raise BenchError(f"The {kind} after a stroke did not start.")
            await paint_until(lambda job=job: job.finished_at > 0 and idle())
            (after_stroke if kind == "autosave" else save_after_stroke).append(job.finished_at - released)
            busy_gaps += recorder.stop()
    saved = len(editor.autosave.files())
    editor.idle_collector.remove()
    window._closing = True
    window.close()
    editor.worker.shutdown(timeout=10)
    return {"side": side, "layers": count + 1, "build_seconds": build_seconds, "strokes": strokes[0],
            "idle_max_ms": max(idle_gaps), "first_seconds": first_seconds,
            "first_max_ms": max(first_gaps), "first_p99_ms": percentile(first_gaps, 0.99),
            "max_ms": max(first_gaps + busy_gaps), "p99_ms": percentile(first_gaps + busy_gaps, 0.99),
            "after_stroke_max_ms": max(busy_gaps), "after_stroke_p99_ms": percentile(busy_gaps, 0.99),
            "autosave_after_stroke_s": after_stroke, "save_after_stroke_s": save_after_stroke,
            "autosaves_kept": saved, "project_mb": window.path.stat().st_size / 1e6}


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gui")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-size", choices=("mid", "tiny"), default="mid")
    parser.add_argument("--save-side", type=int, default=SAVE_SIDE, help="px of the saved project; 0: no save part")
    parser.add_argument("--save-layers", type=int, default=SAVE_LAYERS)
    parser.add_argument("--save-runs", type=int, default=2)
    parser.add_argument("--only", choices=("all", "save"), default="all", help="save: only the saving part")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from bench.runtime import prepare_process

    prepare_process(args.threads)
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    stroke = measure_stroke() if args.only == "all" else None
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        gaps = None
        if args.only == "all":
            gaps = loop.run_until_complete(measure_generation_gaps(args.size, args.steps, args.runs, args.model_size))
        saving = None
        if args.save_side > 0:
            saving = loop.run_until_complete(measure_save_gaps(args.save_side, args.save_layers, args.save_runs))
    print(json.dumps({"stroke": stroke, "gaps": gaps, "saving": saving}))
    return 0


def case_gui(config) -> list[CaseResult]:
    from bench.memory import REPO_ROOT, child_environment

    runs = 3 if config.quick else 5
    command = [sys.executable, "-m", "bench.gui", "--size", str(config.size), "--steps", str(config.steps),
               "--runs", str(runs), "--threads", str(config.threads), "--model-size", config.model_size]
    env = child_environment()
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"The GUI benchmark failed: {last}")
    data = json.loads(completed.stdout.strip().splitlines()[-1])
    gaps, stroke, saving = data["gaps"], data["stroke"], data["saving"]
    results = []
    median, low, high = spread(gaps["busy_max_ms"])
    results.append(CaseResult(
        case="7", name="event_loop_gap", family="sd15", subject=f"longest gap of a {TICK_MS} ms QTimer during a "
        "generation with previews", baseline=None, unit="ms", median=median, low=low, high=high,
        samples=gaps["busy_max_ms"], details=gaps,
        note=f"p99 {spread(gaps['busy_p99_ms'])[0]:.1f} ms; idle loop max {gaps['idle_max_ms']:.1f} ms",
    ))
    for key, label in (("with_repaint_ms", "with repaint"), ("handling_ms", "handling only")):
        values = stroke[key]
        median, low, high = spread(values)
        results.append(CaseResult(
            case="7", name=f"stroke_{key[:-3]}", family=None,
            subject=f"brush stroke per mouse event on {STROKE_DOCUMENT}^2, {label}", baseline=None, unit="ms",
            median=median, low=low, high=high, samples=values, details={"zoom": stroke["zoom"]},
            note=f"p95 {percentile(values, 0.95):.1f} ms over {len(values)} events",
        ))
    if saving:
        results += saving_results(saving)
    return results


def saving_results(saving: dict) -> list[CaseResult]:
    project = f"{saving['side']}^2 project of {saving['layers']} layers"
    results = [CaseResult(
        case="7", name="save_gap", family=None, subject=f"longest gap of a {TICK_MS} ms QTimer while painting "
        f"during Save and autosave of a {project}", baseline=None, unit="ms", median=saving["max_ms"],
        low=saving["max_ms"], high=saving["max_ms"], samples=[saving["max_ms"]], details=saving, target=50.0,
        note=f"p99 {saving['p99_ms']:.1f} ms; first save {saving['first_seconds']:.0f} s; "
             f"idle loop max {saving['idle_max_ms']:.1f} ms",
    )]
    for key, label in (("autosave_after_stroke_s", "autosave"), ("save_after_stroke_s", "Save")):
        values = saving[key]
        median, low, high = spread(values)
        results.append(CaseResult(
            case="7", name=key[:-2], family=None, subject=f"one stroke's release to its {label} file complete, "
            f"{project}, painting on", baseline=None, unit="s", median=median, low=low, high=high, samples=values,
        ))
    return results


if __name__ == "__main__":
    sys.exit(child_main())
