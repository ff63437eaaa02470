"""`collagen --self-test`: a tiny offline generation end to end, one line per check.

Used by the frozen build's smoke test, so it exercises what a bundle can miss: the tokenizer and
config files in resources/, the diffusers/transformers stack, Qt offscreen, ORA and PNG IO.
Exits non-zero when any check fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

SIZE = 64


def _checks(workdir: Path, models_dir: str | None) -> list[tuple[str, Callable[[], str]]]:
    from canvas.io.ora import load_ora, save_ora
    from canvas.io.png_info import read_png_parameters, write_png
    from canvas.model.compose import compose
    from canvas.model.document import Document, GenerationSettings
    from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer
    from desktop.request_builder import build_request
    from inference.api import Failed, Finished, Preview
    from inference.engine import Engine
    from inference.models import ModelManager, find_model_folders

    engine = Engine(ModelManager(find_model_folders([models_dir] if models_dir else ())))
    state: dict = {}

    def generate(doc: Document) -> tuple[np.ndarray, dict, int]:
        request = build_request(compose(doc), doc.settings)
        events: list = []
        engine.run(request, events.append, threading.Event())
        failed = [e for e in events if isinstance(e, Failed)]
        if failed:
            raise RuntimeError(failed[0].message)
        done = [e for e in events if isinstance(e, Finished)]
        if not done:
            raise RuntimeError("no result")
        image = done[0].images[0]
        if image.shape != (SIZE, SIZE, 3) or image.dtype != np.uint8:
            raise RuntimeError(f"unexpected result {image.shape} {image.dtype}")
        return image, done[0].parameters[0], sum(isinstance(e, Preview) for e in events)

    def document(mode: str) -> Document:
        return Document(SIZE, SIZE, settings=GenerationSettings(
            mode=mode, model="builtin:tiny-sd15", prompt="a red apple on a table", steps=2, seed=7,
            strength=1.0 if mode != "inpaint" else 0.9))

    def check_generate() -> str:
        image, params, previews = generate(document("generate"))
        state["image"], state["params"] = image, params
        return f"{SIZE}x{SIZE}, {previews} previews, seed {params.get('seed')}"

    def check_inpaint() -> str:
        doc = document("inpaint")
        rng = np.random.default_rng(0)
        pixels = np.dstack([rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8), np.full((SIZE, SIZE), 255, np.uint8)])
        doc.add_layer_untracked(ImageLayer(name="Photo", pixels=pixels))
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[16:40, 16:40] = 255
        doc.add_layer_untracked(MaskLayer(pixels=mask))
        doc.settings.mask_blur = 2
        image, _, _ = generate(doc)
        outside = np.ones((SIZE, SIZE), bool)
        outside[8:48, 8:48] = False  # mask + blur + latent-grid dilation stay inside this
        if not np.array_equal(image[outside], pixels[..., :3][outside]):
            raise RuntimeError("pixels outside the mask changed")
        state["doc"] = doc
        return "outside the mask unchanged"

    def check_regions() -> str:
        doc = document("regions")
        doc.add_layer_untracked(RegionLayer(name="Left", rect=(0, 0, 32, 64), prompt="a forest"))
        doc.add_layer_untracked(RegionLayer(name="Right", rect=(32, 0, 32, 64), prompt="the sea"))
        generate(doc)
        return "2 regions, attention"

    def check_ora() -> str:
        path = workdir / "selftest.ora"
        save_ora(state["doc"], path)
        loaded = load_ora(path)
        if not loaded.same_as(state["doc"]):
            raise RuntimeError("the reloaded project differs from the saved one")
        return f"{path.stat().st_size} bytes, reloaded equal"

    def check_png() -> str:
        path = workdir / "selftest.png"
        write_png(path, state["image"], state["params"], {"mode": "generate"})
        back = read_png_parameters(path)
        if back.get("prompt") != "a red apple on a table" or int(back.get("seed", -1)) != 7:
            raise RuntimeError(f"parameters did not survive: {back}")
        return "parameters read back"

    def check_window() -> str:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtWidgets import QApplication

        from desktop.app import build_editor

        app = QApplication.instance() or QApplication([])
        editor = build_editor(app, models_dir=models_dir)  # autosave is not started: nothing is written
        window = editor.window
        window.show()
        app.processEvents()
        title, visible = window.windowTitle(), window.isVisible()
        window.shutdown()
        window.close()
        app.processEvents()
        if not visible:
            raise RuntimeError("the main window did not show")
        return f"main window opened ({title})"

    return [("generate", check_generate), ("inpaint", check_inpaint), ("regions", check_regions),
            ("project save/load", check_ora), ("png metadata", check_png), ("editor window", check_window)]


def run_self_test(models_dir: str | None = None) -> int:
    failures = 0
    with tempfile.TemporaryDirectory(prefix="collagen-selftest-") as tmp:
        try:
            checks = _checks(Path(tmp), models_dir)
        except Exception as exc:  # noqa: BLE001 - report, don't crash: this is the diagnostic tool
            print(f"FAIL import: {type(exc).__name__}: {exc}", flush=True)
            return 1
        for name, check in checks:
            started = time.monotonic()
            try:
                detail = check()
                print(f"ok   {name}: {detail} ({time.monotonic() - started:.1f}s)", flush=True)
            except Exception as exc:  # noqa: BLE001
                failures += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
                if os.environ.get("COLLAGEN_DEBUG"):
                    traceback.print_exc(file=sys.stderr)
    print(f"self-test: {len(checks) - failures} passed, {failures} failed", flush=True)
    return 1 if failures else 0
