"""Never lose a result: every generated image stays in the project with its parameters (real window,
an engine that makes a distinct noise picture per seed)."""

from __future__ import annotations

import numpy as np

from canvas.io.ora import load_ora, save_ora
from canvas.io.png_info import read_png_parameters
from canvas.model.layers import ImageLayer
from desktop.generation import JobState
from desktop.panels.generations import CompareDialog
from inference.api import Finished, Progress
from tests.canvas.test_generations_io import project_with_generations
from tests.desktop.fakes import FakeEngine


class NoisyEngine(FakeEngine):
    """One step, then a picture of noise drawn from the seed (each result differs, as real ones do)."""

    def run(self, request, on_event, cancel):
        self.requests.append(request)
        rng = np.random.default_rng(request.seed)
        images = tuple(rng.integers(0, 256, (request.height, request.width, 3), dtype=np.uint8)
                       for _ in range(request.batch_count))
        params = tuple({"prompt": request.prompt, "negative_prompt": request.negative, "seed": request.seed + i,
                        "steps": request.steps, "sampler": request.sampler, "cfg_scale": float(request.cfg),
                        "model": request.model, "mode": request.mode, "batch_index": i}
                       for i in range(request.batch_count))
        on_event(Progress(1, 1))
        on_event(Finished(images, params))


def small_editor(make_editor, size=(96, 64)):
    window = make_editor(engine_factory=NoisyEngine).window
    window._replace_document(_blank(*size), None)
    return window


def _blank(width, height):
    from desktop.window_files import new_document

    return new_document(width, height)


def run_one(qtbot, window, prompt: str, seed: int):
    settings = window.document.settings
    settings.prompt, settings.seed, settings.steps = prompt, seed, 3
    job = window.generate()
    assert job is not None
    qtbot.waitUntil(lambda: job.state.done, timeout=10_000)
    assert job.state is JobState.FINISHED
    return job


def test_twenty_generations_accepted_or_not_survive_save_and_reopen_byte_for_byte(qtbot, make_editor, tmp_path):
    window = small_editor(make_editor)
    made, accepted = [], set()
    for n in range(20):
        job = run_one(qtbot, window, f"picture {n}", 1000 + n)
        made.append((job.images[0].copy(), dict(job.parameters[0])))
        if n % 4 == 0:
            window.controller.accept()
            accepted.add(n)
        elif n % 7 == 0:
            window.controller.discard()
    # The strip holds 16 results at most: older unaccepted ones left it, but not the project.
    assert window.has_unsaved_changes
    encoder = window.encode_generations_in_background()  # results are encoded off the GUI thread
    if encoder is not None:
        encoder.join(timeout=30)
    assert window.document.generations.unencoded() == []
    panel = window.generations_panel
    assert panel.list.count() == 20
    path = tmp_path / "twenty.ora"
    assert window._save_to(path) and not window.has_unsaved_changes
    assert window.open_path(path, ask=False)
    store = window.document.generations
    assert len(store) == 20 and window.generations_panel.list.count() == 20
    for n, (entry, (picture, params)) in enumerate(zip(store, made)):
        assert np.array_equal(entry.pixels(), picture), n
        assert entry.record == params and entry.accepted == (n in accepted)
    qtbot.waitUntil(panel.thumbnails_done, timeout=10_000)
    assert not panel.list.item(0).icon().isNull()
    assert "picture 19" in panel.list.item(0).text() and "accepted" in panel.list.item(19).text()

    # put a result that was never accepted back on the canvas: one undo step
    layers_before = list(window.document.layers)
    target = store.entries[5]
    panel.select(target.id)
    panel.place_button.click()
    layer = window.document.layers[-1]
    assert isinstance(layer, ImageLayer) and layer not in layers_before and window.document.active_layer is layer
    assert np.array_equal(layer.pixels[..., :3], made[5][0]) and (layer.pixels[..., 3] == 255).all()
    assert layer.generation == made[5][1] and store.get(target.id).accepted
    assert window.document.history.undo_label == "Place generation"
    window.undo()
    assert window.document.layers == layers_before and not store.get(target.id).accepted
    window.redo()
    assert window.document.layers[-1] is layer


def test_export_after_reopening_writes_the_parameters_of_the_generation_that_made_the_layer(
        qtbot, make_editor, tmp_path):
    window = small_editor(make_editor)
    run_one(qtbot, window, "a lighthouse at dusk", 77)
    lighthouse = window.controller.accept()
    run_one(qtbot, window, "a red barn", 88)
    barn = window.controller.accept()
    assert barn.generation["prompt"] == "a red barn"
    settings = window.document.settings
    settings.prompt, settings.seed, settings.steps = "what the panel says now", 5, 31
    path = tmp_path / "p.ora"
    assert window._save_to(path)
    assert window.open_path(path, ask=False)  # the undo history is gone: the layers carry the records
    doc = window.document
    assert not doc.history.can_undo
    out = tmp_path / "out.png"
    doc.active_layer = None
    assert window.export_png(out)  # the topmost shown generated layer
    params = read_png_parameters(out)
    assert (params["prompt"], params["seed"], params["steps"]) == ("a red barn", 88, 3)
    assert params["collagen"]["parameters"] == doc.layers[-1].generation == barn.generation
    doc.active_layer = doc.layers[0]  # the selected generated layer wins
    assert window.export_png(out)
    params = read_png_parameters(out)
    assert (params["prompt"], params["seed"]) == ("a lighthouse at dusk", 77)
    assert params["collagen"]["parameters"] == lighthouse.generation
    doc.active_layer = None
    for layer in doc.layers:
        layer.visible = False
    assert window.export_png(out)  # no generated layer shown: the panel's settings
    assert read_png_parameters(out)["prompt"] == "what the panel says now"


    # a kept generation's settings back into the panel, through the Use Parameters dialog
    entry = doc.generations.entries[0]
    window.generations_panel.select(entry.id)
    window.generations_panel.reuse_button.click()
    qtbot.waitUntil(lambda: window.parameters_dialog is not None, timeout=10_000)
    window.parameters_dialog.use_button.click()
    qtbot.waitUntil(lambda: window.parameters_dialog is None)
    assert (doc.settings.prompt, doc.settings.seed, doc.settings.steps) == ("a lighthouse at dusk", 77, 3)
    assert window.generation_panel.prompt.toPlainText() == "a lighthouse at dusk"
    assert "seed 77" in window.statusBar().currentMessage()


def test_compare_shows_the_generation_beside_the_canvas_and_can_place_it(qtbot, make_editor):
    window = small_editor(make_editor)
    job = run_one(qtbot, window, "a kite", 3)
    window.controller.discard()
    entry = window.document.generations.entries[0]
    window.generations_panel.select(entry.id)
    window.generations_panel.compare_button.click()
    (dialog,) = window.findChildren(CompareDialog)
    assert "a kite" in dialog.parameters.text() and "Seed: 3" in dialog.parameters.text()
    dialog.place_button.click()
    assert np.array_equal(window.document.layers[-1].pixels[..., :3], job.images[0])


def test_the_budget_lets_old_results_go_with_a_notice_and_autosave_keeps_the_rest(qtbot, make_editor):
    window = small_editor(make_editor)
    run_one(qtbot, window, "first", 1)
    window.controller.accept()
    first = window.document.generations.entries[0]
    assert first.accepted and window.document.layers[-1].generation == first.record
    window.undo()  # accepting was one step: the mark goes with the layer, the result stays kept
    assert not window.document.generations.entries[0].accepted and window.controller.staging is not None
    window.redo()
    assert window.document.generations.entries[0].accepted
    one = first.nbytes
    window.document.generations.budget_bytes = int(one * 3.5)
    for seed in (2, 3, 4):
        run_one(qtbot, window, f"more {seed}", seed)
    kept = window.document.generations
    assert [e.record["seed"] for e in kept] == [1, 3, 4]  # the accepted one stays; the oldest unaccepted went
    assert "left the project's history" in window.statusBar().currentMessage()
    path = window.autosave_now(force=True)
    restored = load_ora(path)
    assert [e.png for e in restored.generations] == [e.png for e in kept]
    window.settings.generations_mb = 16
    window.apply_settings(window.settings)
    assert window.document.generations.budget_bytes == 16 * 1024 * 1024


def test_the_settings_dialog_has_the_generations_kept_setting(qtbot, make_editor):
    from desktop.dialogs import SettingsDialog

    window = make_editor(show=False).window
    dialog = SettingsDialog(window.settings, window)
    qtbot.addWidget(dialog)
    assert dialog.generations_kept.value() == 512 and dialog.generations_kept.suffix() == " MB"
    dialog.generations_kept.setValue(1024)
    assert dialog.result_settings().generations_mb == 1024


def test_collagen_info_names_the_seed_of_a_generated_layer(tmp_path, capsys):
    from desktop.cli import main

    doc, _ = project_with_generations(2)
    path = tmp_path / "p.ora"
    save_ora(doc, path)
    assert main(["info", str(path)]) == 0
    assert "Generated: image 10x8 at (2, 3) scale 1 rot 0, generated with seed 1" in capsys.readouterr().out
