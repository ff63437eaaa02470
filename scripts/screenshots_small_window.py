"""Screenshots of the generation panel by model family and of the window at 1024x700 (docs/screenshots/).

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshots_small_window.py [OUT]

A first-time user (private settings and data folders): the first-run card at 1024x700, then the
prompt sample with FLUX.1 dev (Guidance, no sampler) and schnell (neither), the edit sample with its
built-in edit model (the scheduler it runs), and an SD model in Edit mode (the sentence that refuses it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "resources" / "samples"


def isolate_user_folders() -> None:
    home = Path(tempfile.mkdtemp(prefix="collagen-shots-"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        (home / name.lower()).mkdir()
        os.environ[name] = str(home / name.lower())
    os.environ["COLLAGEN_MODELS"] = ""


def pick(combo, value) -> None:
    """Choose an entry as a click in the combo's list does."""
    index = combo.findData(value)
    if index < 0:
        raise SystemExit(f"{value} is not offered in the picker")
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


async def shoot(editor, out: Path) -> None:
    window = editor.window
    panel = window.generation_panel
    window.resize(1024, 700)
    window.show()
    await asyncio.sleep(0.5)
    task = window.refresh_models()
    while not task.done():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)
    window.grab().save(str(out / "window-1024x700-first-run.png"))
    window.first_run.close_button.click()
    window.open_path(str(SAMPLES / "prompt.ora"), ask=False)
    await asyncio.sleep(0.4)
    pick(panel.mode, "generate")
    pick(panel.model, "builtin:tiny-flux-dev")
    await asyncio.sleep(0.4)
    window.grab().save(str(out / "window-1024x700.png"))
    window.generation_dock.grab().save(str(out / "panel-flux-dev.png"))
    pick(panel.model, "builtin:tiny-flux-schnell")
    await asyncio.sleep(0.3)
    window.generation_dock.grab().save(str(out / "panel-flux-schnell.png"))
    window.open_path(str(SAMPLES / "edit.ora"), ask=False)
    await asyncio.sleep(0.4)
    window.generation_dock.grab().save(str(out / "panel-edit.png"))
    pick(panel.mode, "generate")  # choose the SD model, then go back to Edit mode with it
    pick(panel.model, "builtin:tiny-sd15")
    pick(panel.mode, "edit")
    await asyncio.sleep(0.3)
    window.generation_dock.grab().save(str(out / "panel-edit-wrong-model.png"))
    close_editor(editor)


def run_screenshots(shoot) -> None:
    """`await shoot(editor, out)` in a first-time user's editor (private settings and data folders) on
    a qasync loop, as the app starts it; OUT is the first argument (docs/screenshots by default)."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    isolate_user_folders()
    sys.path.insert(0, str(ROOT))
    import qasync
    from PySide6.QtWidgets import QApplication

    from desktop.app import build_editor

    app = QApplication([])
    app.setApplicationName("Collagen")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    editor = build_editor(app)
    with loop:
        loop.run_until_complete(shoot(editor, out))


def close_editor(editor, timeout: float = 5) -> None:
    window = editor.window
    window._closing = True  # no "save changes?" question
    window.close()
    editor.worker.shutdown(timeout=timeout)


def main() -> None:
    run_screenshots(shoot)


if __name__ == "__main__":
    main()
