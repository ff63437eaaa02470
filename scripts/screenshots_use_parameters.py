"""Screenshot of File ▸ Use Parameters from Image… (docs/screenshots/use-parameters.png).

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshots_use_parameters.py [OUT]

A first-time user (private settings and data folders) with a few discovered models and LoRAs (listed
to the panel as discovery would; no weights are needed to show the dialog) opens a ComfyUI PNG: the
dialog shows what the file says, what the panel gets, and the LoRA that is not installed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.screenshots_small_window import close_editor, run_screenshots  # noqa: E402

COMFY = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 1066543210, "steps": 24, "cfg": 7.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
        "denoise": 1.0, "model": ["11", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SD15/realisticVision_v51.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a misty pine forest at dawn, volumetric light",
                                                     "clip": ["12", 0]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark, blurry", "clip": ["12", 0]}},
    "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "styles/moody_light.safetensors",
                                                  "strength_model": 0.7, "strength_clip": 0.7,
                                                  "model": ["4", 0], "clip": ["4", 1]}},
    "11": {"class_type": "LoraLoader", "inputs": {"lora_name": "film_grain_xl.safetensors", "strength_model": 0.35,
                                                  "strength_clip": 1.0, "model": ["10", 0], "clip": ["10", 1]}},
    "12": {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["11", 1]}},
}


async def shoot(editor, out: Path) -> None:
    from inference.api import ModelInfo

    window = editor.window
    window.resize(1280, 780)
    window.show()
    await asyncio.sleep(0.5)
    window.first_run.hide()
    models = [ModelInfo("builtin:tiny-sd15", "builtin:tiny-sd15", "sd15", "builtin"),
              ModelInfo("SD15/realisticVision_v51", "/models/SD15/realisticVision_v51.safetensors", "sd15",
                        "checkpoint"),
              ModelInfo("dreamshaper_8", "/models/dreamshaper_8.safetensors", "sd15", "checkpoint")]
    window.generation_panel.set_models(models, [], ["styles/moody_light", "paperCut"])
    from PIL import Image, PngImagePlugin

    path = Path(tempfile.mkdtemp()) / "ComfyUI_00042_.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(COMFY))
    Image.new("RGB", (64, 64), (80, 110, 90)).save(path, "PNG", pnginfo=info)
    task = window.use_parameters(path)
    while not task.done():
        await asyncio.sleep(0.05)
    dialog = task.result()
    await asyncio.sleep(0.6)
    dialog.grab().save(str(out / "use-parameters.png"))
    dialog.use_button.click()
    await asyncio.sleep(0.6)
    panel = window.generation_panel
    panel.advanced_toggle.setChecked(True)
    await asyncio.sleep(0.4)
    panel.scroll.ensureWidgetVisible(panel.loras)
    await asyncio.sleep(0.2)
    window.generation_dock.grab().save(str(out / "use-parameters-panel.png"))
    close_editor(editor)


def main() -> None:
    run_screenshots(shoot)


if __name__ == "__main__":
    main()
