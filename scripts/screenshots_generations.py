"""Screenshots of the Generations dock and its Compare dialog (docs/screenshots/generations*.png).

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshots_generations.py [OUT]

A first-time user (private settings and data folders) whose project kept eight results, two of
them accepted. The pictures are drawn in code (soft gradients and discs, so the thumbnails can be
told apart; no weights are needed to show the dock) and go through the same store the controller
fills; the second accepted one is placed back with Place as layer.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.screenshots_small_window import close_editor, run_screenshots  # noqa: E402

PROMPTS = ["a lighthouse on a cliff at dusk", "a red barn in a snowy field", "a lighthouse on a cliff at dusk",
           "koi pond seen from above, morning light", "a hot air balloon over lavender fields",
           "a lighthouse on a cliff at dusk, storm", "a paper boat on a puddle", "a red barn in a snowy field"]


def picture(n: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    top, bottom = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
    t = (y / height)[..., None]
    rgb = top * (1 - t) + bottom * t
    for _ in range(3):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(30, 110)
        disc = np.clip(1.2 - np.hypot(x - cx, y - cy) / r, 0, 1)[..., None]
        rgb = rgb * (1 - disc) + rng.uniform(20, 250, 3) * disc
    rgb += rng.normal(0, 4, rgb.shape)  # the grain a real result has
    return np.clip(rgb, 0, 255).astype(np.uint8)


async def shoot(editor, out: Path) -> None:
    from desktop.panels.generations import CompareDialog
    from desktop.window_files import new_document

    window = editor.window
    window.resize(1280, 780)
    window._replace_document(new_document(512, 384, "white"), None)
    window.show()
    task = window.refresh_models()  # the model list as a user sees it once discovery is done
    while not task.done():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    window.first_run.hide()
    store = window.document.generations
    for n, prompt in enumerate(PROMPTS):
        record = {"prompt": prompt, "negative_prompt": "blurry, text", "seed": 1_000_000 + 7919 * n, "steps": 24,
                  "sampler": "DPM++ 2M Karras", "cfg_scale": 6.5, "model": "dreamshaper_8", "mode": "generate",
                  "width": 512, "height": 384}
        store.add(picture(n, 512, 384), record)
    window.place_generation(store.entries[1].id)
    window.place_generation(store.entries[5].id)
    window.generations_dock.show()
    window.generations_dock.raise_()
    panel = window.generations_panel
    while not panel.thumbnails_done():
        await asyncio.sleep(0.05)
    panel.select(store.entries[5].id)
    await asyncio.sleep(0.6)
    window.grab().save(str(out / "generations.png"))
    panel.select(store.entries[2].id)
    panel.compare_button.click()
    await asyncio.sleep(0.6)
    dialog = window.findChildren(CompareDialog)[-1]
    dialog.grab().save(str(out / "generations-compare.png"))
    dialog.reject()
    close_editor(editor)


def main() -> None:
    run_screenshots(shoot)


if __name__ == "__main__":
    main()
