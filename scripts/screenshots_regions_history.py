"""Screenshots of Regions mode under an image layer and of the History dock (docs/screenshots/).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_regions_history.py [OUT]

A first-time user (private settings and data folders) opens the regions sample (two region boxes, each
with its prompt), puts a landscape under them and pastes a collage piece ABOVE them in the layer stack,
then selects the right-hand region with the region tool: its box and handles are still drawn over the
piece (masks, regions and annotations are overlays, drawn above image layers whatever the order).

    regions-over-image.png  Regions mode; the layer list shows the piece above the regions
    history.png             the History dock after four generations with the built-in demo model (2 steps,
                            its output is noise, as the UI says): one accepted onto the canvas, the newest
                            selected in the list, its three results in the staging strip
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.screenshots_small_window import SAMPLES, close_editor, pick, run_screenshots  # noqa: E402

WINDOW_SIZE = (1480, 920)


def landscape(width: int, height: int):
    """A sky over green hills (drawn, not a photo)."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([110 + 80 * y / height, 160 + 60 * y / height, np.full_like(y, 235)], -1)
    hills = height * (0.62 + 0.06 * np.sin(x / width * 7.0) + 0.03 * np.sin(x / width * 19.0))
    ground = np.stack([70 + 40 * (y - hills) / height, 140 - 30 * (y - hills) / height, 60 + 0 * y], -1)
    rgb = np.where((y > hills)[..., None], ground, sky)
    pixels = np.empty((height, width, 4), np.uint8)
    pixels[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    pixels[..., 3] = 255
    return pixels


def piece(side: int):
    """A rough round cut-out (a sun-coloured ball with a soft edge), as a user pastes for a collage."""
    import numpy as np

    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    radius = np.hypot(x, y)
    pixels = np.empty((side, side, 4), np.uint8)
    pixels[..., 0] = np.clip(250 - 120 * radius, 0, 255)
    pixels[..., 1] = np.clip(170 - 200 * radius + 60 * y, 0, 255)
    pixels[..., 2] = np.clip(60 + 80 * x, 0, 255)
    pixels[..., 3] = (255 * np.clip((0.48 - radius) * 25, 0, 1)).astype(np.uint8)
    return pixels


async def wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def snap(window, out: Path, name: str) -> None:
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    target = out / name
    if not window.grab().save(str(target)):
        raise RuntimeError(f"could not write {target}")
    print(f"wrote {target}", flush=True)


async def shoot(editor, out: Path) -> None:
    from canvas.model.commands import AddLayer, SetSetting
    from canvas.model.layers import ImageLayer, RegionLayer

    window = editor.window
    window.setGeometry(40, 30, *WINDOW_SIZE)
    window.show()
    await asyncio.sleep(0.5)
    task = window.refresh_models()
    await wait(task.done, 60, "model discovery")
    window.first_run.close_button.click()

    # 1. Regions mode with an image layer above the regions.
    window.open_path(str(SAMPLES / "regions.ora"), ask=False)
    await asyncio.sleep(0.3)
    doc = window.document
    doc.execute(AddLayer(ImageLayer(name="Landscape", pixels=landscape(doc.width, doc.height)), 0))
    ball = ImageLayer(name="Collage piece", pixels=piece(200))
    # over the border of the two regions and the right one's left handle, above both in the stack
    ball.x, ball.y = 156.0, 150.0
    doc.execute(AddLayer(ball))
    right = next(layer for layer in doc.layers if isinstance(layer, RegionLayer) and layer.name == "Right")
    doc.active_layer = right
    pick(window.generation_panel.mode, "regions")
    window.region_dock.raise_()
    window.select_tool("region")
    window.view.fit()
    await asyncio.sleep(0.6)
    if doc.layers.index(ball) < doc.layers.index(right):
        raise RuntimeError("the collage piece is not above the region")
    snap(window, out, "regions-over-image.png")

    # 2. The History dock after a few generations with the demo model.
    window.open_path(str(SAMPLES / "prompt.ora"), ask=False)
    await asyncio.sleep(0.3)
    doc = window.document
    prompts = ["a lighthouse on a cliff at dusk", "a red fox in fresh snow", "a tea house in a bamboo forest",
               "a sailing boat on a calm lake, morning mist"]
    for index, prompt in enumerate(prompts):
        for name, value in (("model", "builtin:tiny-sd15"), ("mode", "generate"), ("steps", 2),
                            ("seed", 1000 + 17 * index), ("batch_count", 3 if index == len(prompts) - 1 else 1)):
            doc.execute(SetSetting(name, value))
        window.generation_panel.prompt.setPlainText(prompt)
        job = window.generate()
        if job is None:
            raise RuntimeError(f"the generation did not start: {window.statusBar().currentMessage()}")
        await wait(lambda job=job: job.state.done, 900, "the generation")
        if job.message:
            raise RuntimeError(f"the generation failed: {job.message}")
        await asyncio.sleep(0.2)
        if index == 0:
            window.actions["accept"].trigger()  # the first result becomes a layer on the canvas
            await asyncio.sleep(0.2)
        elif index < len(prompts) - 1:
            window.actions["discard"].trigger()
            await asyncio.sleep(0.2)
    window.history_dock.raise_()
    history = window.history_panel.list
    history.setCurrentRow(0)  # the newest job selected (its results in the strip): Restore settings is on
    await asyncio.sleep(0.6)
    snap(window, out, "history.png")
    close_editor(editor, timeout=10)


def main() -> None:
    run_screenshots(shoot)


if __name__ == "__main__":
    main()
