"""Traps of the editor found by using it: keys going to the wrong widget, clicks that act, lost results.

Each test drives the real window (offscreen) the way the user did when the trap sprang.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRect, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton, QApplication

from canvas.model.layers import ImageLayer


def staged(qtbot, window, steps: int, batch: int):
    window.document.settings.steps = steps
    window.document.settings.batch_count = batch
    job = window.generate()
    qtbot.waitUntil(lambda: job.state.done and window.controller.staging is not None, timeout=5000)
    return job


def click_history_row(panel, row: int) -> None:
    item = panel.list.item(row)
    rect = panel.list.visualItemRect(item)
    QTest.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_staging_keys_work_from_the_history_list_and_never_restore_its_settings(qtbot, make_editor):
    window = make_editor().window
    doc = window.document
    staged(qtbot, window, steps=20, batch=1)
    window.controller.accept()
    staged(qtbot, window, steps=8, batch=3)
    window.history_dock.raise_()
    panel = window.history_panel
    click_history_row(panel, 1)  # the older job: selected, its settings not brought back
    assert panel.list.hasFocus() and panel.list.currentRow() == 1
    assert (doc.settings.steps, doc.settings.batch_count) == (8, 3)
    QTest.keyClick(panel.list, Qt.Key.Key_Right)
    assert window.staging_strip.title.text() == "Result 2 of 3"
    QTest.keyClick(panel.list, Qt.Key.Key_Left)
    QTest.keyClick(panel.list, Qt.Key.Key_Left)
    assert window.staging_strip.title.text() == "Result 3 of 3"
    layers = len(doc.layers)
    QTest.keyClick(panel.list, Qt.Key.Key_Return)
    assert window.controller.staging is None and len(doc.layers) == layers + 1
    assert isinstance(doc.layers[-1], ImageLayer)
    QTest.keyClick(panel.list, Qt.Key.Key_Return)  # nothing staged: the list must not restore either
    assert (doc.settings.steps, doc.settings.batch_count) == (8, 3)
    panel.restore_button.click()  # the explicit way
    assert (doc.settings.steps, doc.settings.batch_count) == (20, 1)


def test_staging_keys_work_after_clicking_a_panel_button(qtbot, make_editor):
    window = make_editor().window
    staged(qtbot, window, steps=2, batch=2)
    button = next(b for b in window.generation_panel.findChildren(QAbstractButton)
                  if b.isVisible() and b.focusPolicy() != Qt.FocusPolicy.NoFocus and b is not
                  window.generation_panel.generate_button)
    button.setFocus()
    assert button.hasFocus()
    QTest.keyClick(button, Qt.Key.Key_Right)
    assert window.staging_strip.title.text() == "Result 2 of 2"


def test_return_escape_and_arrows_in_the_prompt_are_text_keys(qtbot, make_editor):
    window = make_editor().window
    staged(qtbot, window, steps=2, batch=2)
    prompt = window.generation_panel.prompt
    prompt.setFocus()
    QTest.keyClicks(prompt, "a cat")
    QTest.keyClick(prompt, Qt.Key.Key_Left)
    QTest.keyClick(prompt, Qt.Key.Key_Return)
    QTest.keyClick(prompt, Qt.Key.Key_Escape)
    assert prompt.toPlainText() == "a ca\nt"
    staging = window.controller.staging
    assert staging is not None and staging.index == 0 and len(window.document.layers) == 0


def test_a_new_batch_is_appended_to_the_results_not_yet_accepted(qtbot, make_editor):
    window = make_editor().window
    first = staged(qtbot, window, steps=2, batch=2)
    second = staged(qtbot, window, steps=3, batch=1)
    staging = window.controller.staging
    assert staging.count == 3 and staging.job is second  # the new result is shown ...
    assert window.staging_strip.title.text() == "Result 3 of 3" and window.staging_strip.thumbs.count() == 3
    QTest.keyClick(window.view, Qt.Key.Key_Right)  # ... and the first batch is still there
    assert staging.job is first and staging.index == 0 and window.view.staging.current_index == 0
    window.actions["accept"].trigger()
    assert (window.document.layers[-1].pixels[0, 0, :3] == first.images[0][0, 0]).all()


def test_discarding_is_undoable_and_redoable(qtbot, make_editor):
    window = make_editor().window
    staged(qtbot, window, steps=2, batch=2)
    window.controller.next_candidate()
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Escape)
    assert window.controller.staging is None and not window.staging_strip.isVisible()
    assert window.actions["undo"].text() == "&Undo Discard results"
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    staging = window.controller.staging
    assert staging is not None and staging.count == 2 and window.staging_strip.isVisible()
    assert window.view.staging.candidates and window.staging_strip.title.text() == "Result 2 of 2"
    window.actions["redo"].trigger()
    assert window.controller.staging is None


def test_the_view_menu_hides_and_shows_each_overlay_kind(qtbot, make_editor):
    window = make_editor().window
    region = window.add_layer("region")
    item = window.view.canvas_scene.item_for(region)
    window.overlay_actions["regions"].trigger()
    assert not item.isVisible() and region.visible
    window.overlay_actions["regions"].trigger()
    assert item.isVisible()


def test_b_with_a_region_above_the_mask_paints_the_mask(qtbot, make_editor):
    window = make_editor().window
    mask = window.add_layer("mask")
    region = window.add_layer("region")
    window.add_layer("sketch")  # neither mask nor region selected
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_B)
    assert window.document.active_layer is mask and region.rect is not None


def wheel(widget, notches: int = -1) -> None:
    """One real wheel event at the middle of `widget` (negative notches: towards the user)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_over_an_unfocused_field_scrolls_the_panel_and_keeps_the_value(qtbot, make_editor):
    window = make_editor().window
    window.resize(1024, 700)
    panel = window.generation_panel
    window.document.settings.mode = "refine"  # the longest panel: it must scroll at this height
    panel.set_document(window.document)
    qtbot.waitUntil(lambda: panel.scroll.verticalScrollBar().maximum() > 0, timeout=3000)
    steps, bar = panel.steps, panel.scroll.verticalScrollBar()
    steps_before, sampler_before = window.document.settings.steps, panel.sampler.currentIndex()
    window.view.setFocus()
    wheel(steps)
    wheel(panel.sampler)
    wheel(panel.strength_slider)
    assert window.document.settings.steps == steps_before and steps.value() == steps_before
    assert panel.sampler.currentIndex() == sampler_before
    assert bar.value() > 0  # the panel scrolled instead
    steps.setFocus()  # once the user clicked into the field, the wheel is the field's
    qtbot.waitUntil(steps.hasFocus, timeout=2000)
    wheel(steps, notches=1)
    assert window.document.settings.steps == steps_before + 1


def pick(combo, value) -> None:
    """Choose an entry the way a click in the combo's list does (activated, with the index)."""
    index = combo.findData(value)
    assert index >= 0, f"{value} is not offered"
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_the_picker_lists_the_builtin_edit_models_in_edit_mode_and_generate_refuses_a_misfit(qtbot, make_editor):
    window = make_editor().window
    panel = window.generation_panel
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    offered = lambda: [panel.model.itemData(i) for i in range(panel.model.count())]  # noqa: E731
    assert "builtin:tiny-sd15" in offered() and "builtin:tiny-flux-dev" in offered()
    assert "builtin:tiny-ip2p" not in offered()  # generation modes show generation models
    pick(panel.mode, "edit")
    edit_models = ["builtin:tiny-ip2p", "builtin:tiny-kontext", "builtin:tiny-qwen-edit", "builtin:tiny-qwen-edit-plus"]
    assert all(name in offered() for name in edit_models) and "builtin:tiny-flux-dev" not in offered()
    # the SD model chosen before stays selected, marked, and the panel says why it cannot run
    assert panel.model.currentText() == "builtin:tiny-sd15 — not for this mode"
    problem = panel.model_problem_label.text()
    assert panel.model_problem_label.isVisibleTo(panel) and problem.startswith("builtin:tiny-sd15 is not an")
    assert window.generate() is None and not window.controller.jobs
    assert panel.progress_label.text() == problem
    pick(panel.model, "builtin:tiny-ip2p")
    assert window.document.settings.model == "builtin:tiny-ip2p" and not panel.model_problem_label.isVisibleTo(panel)
    assert "(not found)" not in panel.model.currentText()
    pick(panel.mode, "generate")  # and the other way round
    assert "builtin:tiny-ip2p is an instruction-edit model" in panel.model_problem_label.text()


def test_the_edit_sample_finds_its_builtin_model(qtbot, make_editor):
    from pathlib import Path

    window = make_editor().window
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    window.open_path(str(Path(__file__).parents[2] / "resources" / "samples" / "edit.ora"), ask=False)
    panel = window.generation_panel
    assert window.document.settings.model == "builtin:tiny-ip2p"
    assert panel.model.currentText() == "builtin:tiny-ip2p — demo, produces noise"
    assert not panel.model_problem_label.isVisibleTo(panel)


def test_flux_shows_guidance_or_nothing_and_no_sampler_and_edit_models_name_their_scheduler(qtbot, make_editor):
    window = make_editor().window
    panel = window.generation_panel
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    shown = lambda widget: widget.isVisibleTo(panel)  # noqa: E731
    assert shown(panel.sampler) and shown(panel.cfg) and panel.cfg_label.text() == "CFG scale"
    pick(panel.model, "builtin:tiny-flux-dev")
    assert shown(panel.cfg) and panel.cfg_label.text() == "Guidance"
    assert not shown(panel.sampler) and not shown(panel.sampler_fixed)  # FLUX runs one sampler: no control
    pick(panel.model, "builtin:tiny-flux-schnell")
    assert not shown(panel.cfg) and not shown(panel.cfg_label)  # schnell uses no guidance at all
    pick(panel.model, "builtin:tiny-sd15")
    assert shown(panel.sampler) and shown(panel.cfg) and panel.cfg_label.text() == "CFG scale"
    pick(panel.mode, "edit")
    pick(panel.model, "builtin:tiny-ip2p")
    assert not shown(panel.sampler) and panel.sampler_fixed.text() == "Euler a (the model's own)"
    pick(panel.model, "builtin:tiny-kontext")
    assert panel.sampler_fixed.text() == "FlowMatchEuler (the model's own)" and panel.cfg_label.text() == "Guidance"


def test_ctrl_z_after_accepting_undoes_the_accept_as_one_step(qtbot, make_editor):
    window = make_editor().window
    doc = window.document
    staged(qtbot, window, steps=2, batch=2)
    layers, steps_done = len(doc.layers), len(doc.history)
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Return)  # accept
    assert len(doc.layers) == layers + 1 and len(doc.history) == steps_done + 1
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(doc.layers) == layers and len(doc.history) == steps_done
    assert window.controller.staging is not None and window.controller.staging.count == 2  # the results are back
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(doc.layers) == layers + 1 and window.controller.staging is None


def test_ctrl_z_in_the_prompt_undoes_the_typing_and_never_the_canvas_nor_redo(qtbot, make_editor):
    window = make_editor().window
    doc = window.document
    prompt = window.generation_panel.prompt
    prompt.setFocus()
    qtbot.waitUntil(prompt.hasFocus, timeout=2000)
    QTest.keyClicks(prompt, "a cat")
    QTest.keyClick(prompt, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert prompt.toPlainText() == "" and doc.settings.prompt == ""
    assert doc.history.can_redo  # the typing is a redo step, not a new step that threw redo away
    QTest.keyClick(prompt, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert prompt.toPlainText() == "a cat" and doc.settings.prompt == "a cat"
    window.add_layer("mask")  # a canvas change after the typing
    layers = len(doc.layers)
    prompt.setFocus()
    qtbot.waitUntil(prompt.hasFocus, timeout=2000)
    QTest.keyClick(prompt, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(doc.layers) == layers and prompt.toPlainText() == "a cat"  # the canvas is not undone from here
    assert "canvas" in window.statusBar().currentMessage()
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(doc.layers) == layers - 1


def window_rect(window, widget):
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def test_at_1024_by_700_the_panel_canvas_and_layers_are_all_usable(qtbot, make_editor):
    window = make_editor().window
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024 and window.height() == 700, timeout=3000)
    qtbot.wait(50)  # the docks give room back on the next turn of the event loop
    inside = window.rect()
    view = window.view
    for dock in (window.layers_dock, window.region_dock, window.generation_dock):
        assert inside.contains(window_rect(window, dock)), dock.windowTitle()
    assert view.width() >= 380  # was ~300: the docks shrink to what their controls need first
    doc_width = window.document.width * view.zoom  # and the picture is fitted again to the smaller view
    assert doc_width <= view.viewport().width() and doc_width >= view.viewport().width() - 64
    panel = window.generation_panel
    body, scroll = panel.scroll.widget(), panel.scroll
    assert scroll.verticalScrollBar().maximum() > 0  # the panel scrolls ...
    assert scroll.viewport().width() >= body.minimumSizeHint().width()  # ... without clipping its right edge
    assert inside.contains(window_rect(window, panel.generate_button))  # the footer stays in view
    layers = window.layers_panel
    for button in layers.findChildren(QAbstractButton):
        if button.isVisibleTo(layers):
            assert QRect(QPoint(0, 0), layers.size()).contains(QRect(button.mapTo(layers, QPoint(0, 0)),
                                                                     button.size())), button.toolTip()
    panel.scroll.ensureWidgetVisible(panel.steps)  # every control can be scrolled to and is whole
    qtbot.wait(10)
    assert scroll.viewport().rect().contains(QRect(panel.steps.mapTo(scroll.viewport(), QPoint(0, 0)),
                                                   panel.steps.size()))


def test_the_first_run_card_sits_on_the_canvas_says_where_models_go_and_once_closed_stays_closed(
        qtbot, make_editor):
    from desktop.settings import default_models_dir

    window = make_editor().window
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    card = window.first_run
    assert card.isVisible() and card.parentWidget() is window.centralWidget()
    view = window_rect(window, window.view)
    assert view.contains(window_rect(window, card))  # over the canvas, not in a dock
    assert str(default_models_dir()) in card.where.text()
    assert "every mode" in card.builtin.text()
    card.close_button.click()
    assert not card.isVisible() and window.settings_store.load().first_run_dismissed
    again = make_editor().window  # the next start
    task = again.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    assert not again.first_run.isVisible()


def test_a_model_that_does_not_fit_the_mode_is_marked_so_not_as_missing(qtbot, make_editor):
    window = make_editor().window
    panel = window.generation_panel
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    pick(panel.mode, "edit")
    pick(panel.model, "builtin:tiny-ip2p")
    window.undo()  # the model goes back to the SD one while the mode stays Edit
    assert window.document.settings.model == "builtin:tiny-sd15"
    assert panel.model.currentText() == "builtin:tiny-sd15 — not for this mode"
    assert panel.model_problem_label.isVisibleTo(panel)


def test_only_the_options_that_apply_to_the_mode_and_the_family_are_shown(qtbot, make_editor):
    """Issue 16: Pieces alone outside Composite, inpaint options in Edit, True CFG for SD, Padding with
    Whole picture all showed (their labels too) though nothing read them."""
    window = make_editor().window
    panel = window.generation_panel
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    shown = lambda widget: widget.isVisibleTo(panel)  # noqa: E731
    label = lambda form, field: form.labelForField(field)  # noqa: E731
    pick(panel.model, "builtin:tiny-sd15")
    pick(panel.mode, "regions")
    assert shown(panel.regions_group) and shown(panel.region_method)
    assert not shown(panel.composite_step) and not shown(label(panel.regions_form, panel.composite_step))
    pick(panel.mode, "composite")
    assert shown(panel.composite_step) and shown(label(panel.regions_form, panel.composite_step))
    pick(panel.mode, "inpaint")
    assert shown(panel.regions_group) and not shown(panel.composite_step)  # regions work inside inpaint
    assert shown(panel.masked_content) and shown(panel.inpaint_area) and shown(panel.mask_blur)
    pick(panel.inpaint_area, "whole")
    assert not shown(panel.padding) and not shown(label(panel.inpaint_form, panel.padding))
    pick(panel.inpaint_area, "only_masked")
    assert shown(panel.padding) and shown(label(panel.inpaint_form, panel.padding))
    assert not shown(panel.true_cfg_scale) and not shown(label(panel.knobs, panel.true_cfg_scale))  # SD: no true CFG
    pick(panel.model, "builtin:tiny-flux-dev")
    assert shown(panel.true_cfg_scale)  # FLUX.1: true CFG with a negative prompt
    pick(panel.mode, "edit")
    pick(panel.model, "builtin:tiny-ip2p")
    assert shown(panel.mask_mode) and shown(panel.mask_blur)  # what an edit with a mask reads
    for field in (panel.masked_content, panel.inpaint_area, panel.padding, panel.color_match):
        assert not shown(field), field
    assert not shown(label(panel.inpaint_form, panel.masked_content))
    assert shown(panel.image_guidance_scale) and not shown(panel.true_cfg_scale)
    pick(panel.model, "builtin:tiny-qwen-edit")
    assert shown(panel.true_cfg_scale) and not shown(panel.image_guidance_scale)
    pick(panel.mode, "generate")
    assert not shown(panel.inpaint_group) and not shown(panel.regions_group)


def test_an_edit_records_and_writes_the_samplers_user_name_never_a_diffusers_class(qtbot, make_editor, tmp_path):
    """Issue 16: edit mode recorded `EulerAncestralDiscreteScheduler` as the sampler. The staging strip,
    the History row's record, the exported PNG's A1111 `Sampler:` and the saved project say "Euler a"
    (the name the panel shows for InstructPix2Pix's own scheduler), whatever the panel's sampler was."""
    import zipfile
    from pathlib import Path

    from PIL import Image

    from canvas.io.png_info import read_png_parameters
    from inference.engine import Engine
    from inference.models import ModelManager

    engine = Engine(ModelManager([], device="cpu"))
    window = make_editor(lambda: engine).window
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)
    window.open_path(str(Path(__file__).parents[2] / "resources" / "samples" / "edit.ora"), ask=False)
    panel = window.generation_panel
    doc = window.document
    doc.settings.sampler = "DPM++ 2M Karras"  # chosen in generate mode before; edit runs the model's own
    pick(panel.mode, "edit")
    pick(panel.model, "builtin:tiny-ip2p")
    assert panel.sampler_fixed.text() == "Euler a (the model's own)"
    doc.settings.steps = 2
    job = window.generate()
    qtbot.waitUntil(lambda: job.state.done and window.controller.staging is not None, timeout=60_000)  # torch loads
    assert window.staging_strip.details.text().split(" · ")[2] == "Euler a"
    assert window.controller.staging.parameters["sampler"] == "Euler a"
    window.controller.accept()
    assert doc.layers[-1].generation["sampler"] == "Euler a"
    png = tmp_path / "edit.png"
    assert window.export_png(png)
    assert "Sampler: Euler a," in Image.open(png).text["parameters"]
    assert read_png_parameters(png)["sampler"] == "Euler a"
    assert not any("Scheduler" in text for text in Image.open(png).text.values())
    assert window._save_to(tmp_path / "edit.ora")
    with zipfile.ZipFile(tmp_path / "edit.ora") as project:
        assert not any(b"DiscreteScheduler" in project.read(name) for name in project.namelist())
