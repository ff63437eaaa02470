"""Screenshots of the real editor window for docs/screenshots/ (run under a display, e.g. Xvfb).

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

It starts the editor as a first-time user would (private settings and data folders), then drives
it like a user: opens the collage sample, paints a mask, draws a region box and types its prompt,
scribbles a sketch, generates with the built-in demo model (whose output is noise, as the UI says),
and saves a picture of each stage:

    first-run.png        no models yet: where they go, "Add models folder…", the demo model (then picked)
    composition.png      mask, region box with its prompt, collage pieces, sketch scribbles
    composition-light.png  the same in the light palette
    generating.png       a generation in progress: its step preview on the canvas, progress, time left
    staging.png          the finished results in the staging strip, ready to accept
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOW_SIZE = (1480, 920)


def isolate_user_folders() -> Path:
    """A first-time user: settings, autosaves and models under a temporary home."""
    home = Path(tempfile.mkdtemp(prefix="collagen-shots-"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        folder = home / name.lower()
        folder.mkdir()
        os.environ[name] = str(folder)
    os.environ["COLLAGEN_MODELS"] = ""
    return home


async def pause(seconds: float = 0.15) -> None:
    await asyncio.sleep(seconds)


def drag(view, points) -> None:
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    def send(kind, point, button, buttons):
        local = view.map_from_document(QPointF(*point))
        event = QMouseEvent(kind, local, view.viewport().mapToGlobal(local), button, buttons,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(view.viewport(), event)

    left = Qt.MouseButton.LeftButton
    send(QEvent.Type.MouseButtonPress, points[0], left, left)
    for point in points[1:]:
        send(QEvent.Type.MouseMove, point, Qt.MouseButton.NoButton, left)
    send(QEvent.Type.MouseButtonRelease, points[-1], left, Qt.MouseButton.NoButton)


def path(points, per_segment: int = 10):
    out = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        out += [(x0 + (x1 - x0) * i / per_segment, y0 + (y1 - y0) * i / per_segment) for i in range(per_segment)]
    return out + [points[-1]]


class Shooter:
    def __init__(self, editor, out: Path):
        self.editor = editor
        self.window = editor.window
        self.out = out

    def snap(self, name: str) -> Path:
        from PySide6.QtWidgets import QApplication

        QApplication.processEvents()
        target = self.out / name
        if not self.window.grab().save(str(target)):
            raise RuntimeError(f"could not write {target}")
        print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}", flush=True)
        return target

    async def wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await pause(0.05)

    async def run(self) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        window = self.window
        task = window.refresh_models()
        await self.wait(lambda: task.done(), 60, "model discovery")
        window.view.fit()
        await pause(0.4)
        self.snap("first-run.png")
        window.first_run.demo_button.click()  # the user picked the demo model: the card makes room

        # the collage sample: a background and two rough cut-out pieces
        window.open_path(ROOT / "resources" / "samples" / "refine.ora", ask=False)
        await pause(0.3)
        view, doc = window.view, window.document
        window.select_tool("brush")
        view.tool.set_size(46)
        drag(view, path([(70, 430), (150, 405), (230, 440), (300, 415)]))
        window.select_tool("region")
        drag(view, path([(300, 40), (480, 200)]))
        editor = view.tool.prompt_editor
        QTest.keyClicks(editor, "a flock of seagulls in a clear sky")
        QTest.keyClick(editor, Qt.Key.Key_Return)
        region = doc.active_layer
        window.region_panel.negative.setPlainText("blurry, low quality")
        window.select_tool("scribble")
        window.view.tools["scribble"].set_color("#3a7bd5")
        window.view.tools["scribble"].set_width(10)
        drag(view, path([(40, 300), (90, 280), (140, 300), (190, 285)]))
        drag(view, path([(60, 330), (120, 318), (180, 332)]))
        doc.active_layer = region
        window.generation_panel.prompt.setPlainText("a cat sitting on a hill under the sun, seagulls, "
                                                     "warm evening light, photo")
        window.generation_panel.negative.setPlainText("lowres, watermark")
        window.region_dock.raise_()
        window.select_tool("region")
        await pause(0.4)
        self.snap("composition.png")
        self.editor.theme.set_preference("light")
        await pause(0.4)
        self.snap("composition-light.png")
        self.editor.theme.set_preference("dark")
        await pause(0.3)

        # a generation in progress with the demo model, then its results in the staging strip
        from canvas.model.commands import SetSetting

        for name, value in (("model", "builtin:tiny-sd15"), ("mode", "refine"), ("steps", 12), ("batch_count", 3)):
            doc.execute(SetSetting(name, value))
        job = window.generate()
        if job is None:
            raise RuntimeError("the generation did not start")
        await self.wait(lambda: job.step >= 3 or job.state.done, 900, "a few steps of the generation")
        await pause(0.3)
        self.snap("generating.png")
        await self.wait(lambda: job.state.done, 900, "the end of the generation")
        if job.message:
            raise RuntimeError(f"the generation failed: {job.message}")
        window.history_dock.raise_()
        await pause(0.5)
        self.snap("staging.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    isolate_user_folders()

    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.app import build_editor, prepare_environment, start_editor

    prepare_environment()
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Collagen")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    editor = build_editor(app)
    editor.window.setGeometry(40, 30, *WINDOW_SIZE)
    outcome: dict[str, BaseException | None] = {"error": None}

    async def scenario() -> None:
        try:
            await Shooter(editor, args.out).run()
        except BaseException as exc:  # noqa: BLE001 - reported after the loop ends
            outcome["error"] = exc
        finally:
            editor.window._closing = True
            editor.window.close()

    def begin() -> None:
        start_editor(editor, None)
        asyncio.ensure_future(scenario())

    QTimer.singleShot(0, begin)
    with loop:
        loop.run_forever()
    if outcome["error"] is not None:
        print(f"screenshots failed: {outcome['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
