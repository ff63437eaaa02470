"""File ▸ Use Parameters from Image… and dropping a PNG that carries parameters, in the real window:
the dialog's rows, then the panel's widgets after OK, for a PNG of each of the six apps."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from canvas.io.png_info import write_png
from canvas.io.sampler_names import COLLAGEN_SAMPLERS
from canvas.model.layers import ImageLayer
from inference.api import SAMPLERS, ModelInfo
from tests.canvas.test_png_params import A1111, COMFY_API, FOOOCUS, INVOKE_4, NOVELAI_COMMENT, app_png

MODELS = [
    ModelInfo("builtin:tiny-sd15", "builtin:tiny-sd15", "sd15", "builtin"),
    ModelInfo("anything-v5", "/models/anything-v5.safetensors", "sd15", "checkpoint"),
    ModelInfo("SD15/realisticVision_v51", "/models/SD15/realisticVision_v51.safetensors", "sd15", "checkpoint"),
    ModelInfo("xl/juggernautXL_v9", "/models/xl/juggernautXL_v9.safetensors", "sdxl", "checkpoint"),
    ModelInfo("dreamshaper_8", "/models/dreamshaper_8.safetensors", "sd15", "checkpoint"),
]
LORAS = ["paperCut", "styles/moody_light", "film_grain", "brass_details", "detailTweaker"]


def collagen_png(path):
    parameters = {"prompt": "a red fox in snow", "negative_prompt": "blur", "steps": 12, "sampler": "DPM++ SDE Karras",
                  "cfg_scale": 5.5, "seed": 77, "width": 640, "height": 448, "model": "dreamshaper_8",
                  "model_hash": "879db523c3", "clip_skip": 2, "loras": [{"name": "paperCut", "weight": 0.8}]}
    write_png(path, np.zeros((4, 4, 3), np.uint8), parameters, {"mode": "generate"})
    return path


SOURCES = {  # source -> (PNG maker, what the panel shows afterwards)
    "collagen": (collagen_png, dict(prompt="a red fox in snow", negative="blur", sampler="DPM++ SDE Karras",
                                    steps=12, cfg=5.5, seed="77", clip_skip=2, loras=[("paperCut", 0.8)],
                                    model="dreamshaper_8", size=(640, 448))),
    "a1111": (lambda p: app_png(p, {"parameters": A1111}),
              dict(prompt="masterpiece, a lighthouse at dawn, <lora:detailTweaker:0.6>", negative="lowres, blurry",
                   sampler="DPM++ 2M Karras", steps=28, cfg=6.5, seed="3170145342", clip_skip=2, loras=[],
                   model="anything-v5", size=(512, 768))),
    "comfyui": (lambda p: app_png(p, {"prompt": json.dumps(COMFY_API)}),
                dict(prompt="a misty forest, volumetric light", negative="text, watermark", sampler="DPM++ SDE Karras",
                     steps=24, cfg=7.5, seed=None, clip_skip=2,  # its seed is beyond Collagen's 2**32 - 1
                     loras=[("styles/moody_light", 0.7), ("film_grain", 0.35)], model="SD15/realisticVision_v51",
                     size=(768, 512))),
    "invokeai": (lambda p: app_png(p, {"invokeai_metadata": json.dumps(INVOKE_4)}),
                 dict(prompt="a brass owl, studio lighting", negative="noisy", sampler="DPM++ 2M Karras", steps=35,
                      cfg=6.0, seed="3293022630", clip_skip=2, loras=[("brass_details", 0.65)],
                      model="xl/juggernautXL_v9", size=(832, 1216))),
    "fooocus": (lambda p: app_png(p, {"parameters": json.dumps(FOOOCUS), "fooocus_scheme": "fooocus"}),
                dict(prompt="a smiling goldfish", negative="deformed", sampler="DPM++ 2M Karras", steps=30, cfg=4.0,
                     seed="1234567890", clip_skip=2, loras=[],  # its offset LoRA is not installed here
                     model=None, size=(768, 1280))),  # juggernautXL_v8Rundiffusion is not installed either
    "novelai": (lambda p: app_png(p, {"Title": "AI generated image", "Description": "cat, space, icon",
                                      "Software": "NovelAI", "Source": "Stable Diffusion XL C1E1DE52",
                                      "Comment": json.dumps(NOVELAI_COMMENT)}),
                dict(prompt="cat, space, icon", negative="lowres, bad anatomy, bad hands", sampler="Euler a",
                     steps=28, cfg=5.0, seed="2253955223", clip_skip=None, loras=[], model=None, size=(832, 1216))),
}


def editor_with_models(make_editor):
    window = make_editor().window
    window.generation_panel.set_models(MODELS, [], LORAS)
    return window


def open_dialog(qtbot, window, path, **kwargs):
    task = window.use_parameters(path, **kwargs)
    assert task is not None
    qtbot.waitUntil(task.done, timeout=10_000)
    dialog = task.result()
    assert dialog is window.parameters_dialog and dialog.isVisible()
    return dialog


def rows(dialog) -> dict[str, tuple[str, str]]:
    table = dialog.table
    return {table.item(i, 0).text() + ("" if table.item(i, 0).text() != "LoRA" else f" {i}"):
            (table.item(i, 1).text(), table.item(i, 2).text()) for i in range(table.rowCount())}


def test_collagen_knows_the_same_samplers_as_the_engine():
    assert COLLAGEN_SAMPLERS == SAMPLERS


@pytest.mark.parametrize("source", list(SOURCES))
def test_use_parameters_fills_the_panel_from_each_app(qtbot, make_editor, tmp_path, monkeypatch, source):
    window = editor_with_models(make_editor)
    panel = window.generation_panel
    before = window.document.settings.to_dict()
    make, want = SOURCES[source]
    path = make(tmp_path / f"{source}.png")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), "PNG images (*.png)"))
    window.actions["use_parameters"].trigger()  # the File menu's action, through its file dialog
    qtbot.waitUntil(lambda: window.parameters_dialog is not None, timeout=10_000)
    dialog = window.parameters_dialog
    assert dialog.isVisible() and dialog.new_canvas.isChecked()  # an empty canvas: the picture's size is offered
    assert dialog.import_button is None  # only a drop offers to import the picture instead
    dialog.use_button.click()
    qtbot.waitUntil(lambda: window.parameters_dialog is None)
    doc = window.document
    assert panel.prompt.toPlainText() == want["prompt"]
    assert panel.negative.toPlainText() == want["negative"]
    assert panel.sampler.currentData() == want["sampler"] == doc.settings.sampler
    assert panel.steps.value() == want["steps"] and panel.cfg.value() == pytest.approx(want["cfg"])
    assert panel.seed.text() == (want["seed"] or "")  # a seed out of range leaves the (random) seed as it was
    assert panel.clip_skip.value() == (want["clip_skip"] or before["clip_skip"])
    assert panel.loras.values() == want["loras"]
    assert panel.model.currentData() == (want["model"] or before["model"])
    assert (doc.width, doc.height) == want["size"] and panel.size_label.text().startswith(
        f"{want['size'][0]} × {want['size'][1]} px")


def test_the_dialog_says_what_cannot_be_used(qtbot, make_editor, tmp_path):
    window = editor_with_models(make_editor)
    dialog = open_dialog(qtbot, window, SOURCES["fooocus"][0](tmp_path / "f.png"))
    shown = rows(dialog)
    assert shown["Sampler"] == ("dpmpp_2m (karras)", "DPM++ 2M Karras")
    assert shown["Model"] == ("juggernautXL_v8Rundiffusion [aeb7e9e689]", "— not used")
    text = dialog.problems.text()
    assert ("Model: juggernautXL_v8Rundiffusion [aeb7e9e689] is not among your models; the panel keeps "
            "builtin:tiny-sd15") in text
    assert "LoRA: sd_xl_offset_example-lora_1.0 is not in your LoRA folders" in text
    dialog.reject()
    comfy = open_dialog(qtbot, window, SOURCES["comfyui"][0](tmp_path / "c.png"))
    assert "Seed: outside Collagen's 0–4294967295; the panel keeps -1" in comfy.problems.text()
    comfy.reject()
    dream = app_png(tmp_path / "d.png", {"Dream": '"a castle [fog]" -s 50 -S 7 -W 512 -H 512 -C 7.5 -A k_lms'})
    old = open_dialog(qtbot, window, dream)
    assert rows(old)["Sampler"] == ("k_lms", "— not used")
    assert "Collagen has no k_lms sampler; the panel keeps Euler a" in old.problems.text()
    old.reject()
    qtbot.waitUntil(lambda: window.parameters_dialog is None)
    assert window.document.history.can_undo is False  # cancelled: nothing changed


def test_on_a_canvas_with_layers_the_settings_are_one_undo_step(qtbot, make_editor, tmp_path):
    window = editor_with_models(make_editor)
    doc = window.document
    window.add_image_layer(np.zeros((16, 16, 4), np.uint8), "picture")
    before = doc.settings.to_dict()
    dialog = open_dialog(qtbot, window, SOURCES["a1111"][0](tmp_path / "a.png"))
    assert not dialog.new_canvas.isChecked()  # the picture stays; its size is not forced on it
    dialog.use_button.click()
    qtbot.waitUntil(lambda: window.parameters_dialog is None)
    assert window.document is doc and (doc.width, doc.height) == (512, 512)
    assert doc.settings.steps == 28 and doc.settings.model == "anything-v5" and doc.settings.clip_skip == 2
    assert doc.history.undo_label == "Use parameters of a.png"
    window.undo()
    assert doc.settings.to_dict() == before and window.generation_panel.steps.value() == before["steps"]
    assert isinstance(doc.layers[-1], ImageLayer)  # the one step took the settings only
    window.redo()
    assert doc.settings.sampler == "DPM++ 2M Karras"


def test_the_model_is_found_by_its_a1111_short_hash(qtbot, make_editor, tmp_path):
    window = make_editor().window
    checkpoint = tmp_path / "renamed_by_me.safetensors"
    checkpoint.write_bytes(b"not really weights, but hashed all the same" * 100)
    short = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    window.generation_panel.set_models([*MODELS, ModelInfo("renamed_by_me", str(checkpoint), "sd15", "checkpoint")],
                                       [], LORAS)
    text = A1111.replace("Model hash: 7f96a1a9ca, Model: anything-v5", f"Model hash: {short}, Model: original_name")
    dialog = open_dialog(qtbot, window, app_png(tmp_path / "h.png", {"parameters": text}))
    assert rows(dialog)["Model"] == (f"original_name [{short}]", "renamed_by_me (found by its hash)")
    dialog.new_canvas.setChecked(False)
    dialog.use_button.click()
    qtbot.waitUntil(lambda: window.parameters_dialog is None)
    assert window.generation_panel.model.currentData() == "renamed_by_me"


def drop(window, path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    at = window.view.viewport().mapTo(window, window.view.viewport().rect().center())
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(at), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, event)


def test_dropping_a_png_with_parameters_offers_them_or_the_layer(qtbot, make_editor, tmp_path):
    window = editor_with_models(make_editor)
    path = SOURCES["novelai"][0](tmp_path / "nai.png")
    drop(window, path)
    qtbot.waitUntil(lambda: window.parameters_dialog is not None, timeout=10_000)
    window.parameters_dialog.import_button.click()  # the picture, not its parameters
    qtbot.waitUntil(lambda: window.parameters_dialog is None)
    assert window.document.layers[-1].name == "nai" and window.document.settings.prompt == ""
    drop(window, path)
    qtbot.waitUntil(lambda: window.parameters_dialog is not None, timeout=10_000)
    window.parameters_dialog.use_button.click()
    qtbot.waitUntil(lambda: window.parameters_dialog is None)
    assert window.document.settings.prompt == "cat, space, icon" and len(window.document.layers) == 1
    plain = tmp_path / "plain.png"
    app_png(plain, {"Software": "GIMP"})
    drop(window, plain)  # no parameters: a layer at once, as before
    assert window.parameters_dialog is None and window.document.layers[-1].name == "plain"


def test_a_png_without_parameters_says_so(qtbot, make_editor, tmp_path, dialog_spy):
    window = make_editor().window
    assert window.use_parameters(app_png(tmp_path / "p.png", {})) is None
    assert dialog_spy.texts("information") == [
        "p.png carries no generation parameters Collagen can read (from Collagen, AUTOMATIC1111, ComfyUI, "
        "InvokeAI, Fooocus or NovelAI)."]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    assert window.use_parameters(tmp_path / "bad.png") is None
    assert dialog_spy.texts("warning")[0].startswith("bad.png: is not a usable PNG")
