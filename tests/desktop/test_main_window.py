"""The editor window with a fake engine: panels, tools, files, dialogs, staging, autosave (offscreen)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from canvas.io.ora import load_ora
from canvas.io.png_info import read_png_parameters
from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer, ScribbleLayer
from desktop import dialogs
from desktop.app import CrashHandler, palette_from_file
from desktop.generation import JobState
from desktop.settings import default_models_dir
from tests.desktop.fakes import FakeEngine
from tests.desktop.gui_helpers import drag, line, write_image


def wait_discovery(qtbot, window):
    task = window.refresh_models()
    qtbot.waitUntil(task.done, timeout=10_000)


def test_first_run_explains_where_models_go_and_offers_the_noisy_demo(qtbot, make_editor):
    window = make_editor().window
    wait_discovery(qtbot, window)
    panel, card = window.generation_panel, window.first_run
    assert card.isVisible()
    assert str(default_models_dir()) in card.where.text() and "Collagen" in card.where.text()
    texts = [panel.model.itemText(i) for i in range(panel.model.count())]
    assert any("builtin:tiny-sd15" in t and "produces noise" in t for t in texts)
    assert panel.noise_badge.isVisible() and "noise" in panel.noise_badge.text()
    window.document.settings.model = "elsewhere"  # as a project from another machine would say
    card.demo_button.click()
    assert window.document.settings.model == "builtin:tiny-sd15"
    assert not card.isVisible()  # the choice is made: the card makes room


@pytest.mark.parametrize(("layout", "kind"), [(("models", "Stable-diffusion"), "a1111"),
                                              (("models", "checkpoints"), "comfyui"),
                                              (("checkpoints",), "models"), ((), "flat")])
def test_models_folder_layouts_are_recognised(tmp_path, layout, kind):
    folder = tmp_path / "install"
    folder.joinpath(*layout).mkdir(parents=True, exist_ok=True)
    assert dialogs.detect_layout(folder).kind == kind


def test_add_models_folder_is_saved_for_discovery_and_searched(qtbot, make_editor, tmp_path):
    editor = make_editor()
    window = editor.window
    install = tmp_path / "ComfyUI"
    (install / "models" / "checkpoints").mkdir(parents=True)
    window.add_models_folder(install)
    assert str(install) in window.settings.model_folders
    saved = json.loads(editor.settings_store.path.read_text())
    assert str(install) in saved["model_folders"]
    qtbot.waitUntil(window._discovery_task.done, timeout=10_000)
    assert install.resolve() in [Path(p) for p in window.models.folders.roots]
    message = window.statusBar().currentMessage()
    assert message.startswith("Added ComfyUI: a ComfyUI install.") and "No models found yet" in message


def test_layer_kinds_are_added_and_every_panel_change_is_undoable(qtbot, make_editor):
    window = make_editor().window
    doc = window.document
    for name in ("add_mask", "add_region", "add_sketch"):
        window.actions[name].trigger()
    panel = window.layers_panel
    assert [type(la) for la in doc.layers] == [MaskLayer, RegionLayer, ScribbleLayer]
    assert panel.list.count() == 3
    assert panel.list.itemWidget(panel.list.item(0)).layer is doc.layers[-1]  # top layer first
    mask = doc.layers[0]
    row = panel.row_of(mask)
    row.eye.click()
    assert mask.visible is False and row.eye.isChecked() is False
    doc.undo()
    assert mask.visible is True
    row.start_rename()
    row.editor.setText("Sky mask")
    row.editor.editingFinished.emit()
    assert mask.name == "Sky mask" and panel.row_of(mask).name.text() == "Sky mask"
    doc.active_layer = mask
    steps = len(doc.history)
    panel.opacity.sliderPressed.emit()
    for value in (90, 70, 50):
        panel.opacity.setValue(value)
    assert mask.opacity == 0.5 and len(doc.history) == steps + 1  # one drag, one undo step
    panel.row_of(mask).lock.click()
    assert mask.locked
    panel.move_selected(+1)
    assert doc.index_of(mask) == 1
    panel.list.reordered.emit(mask, 0)  # dropped at the top of the list
    assert doc.layers[-1] is mask
    panel.delete_selected()
    assert mask not in doc.layers and panel.list.count() == 2
    while doc.history.can_undo:
        doc.undo()
    assert doc.layers == [] and panel.list.count() == 0


def test_image_layer_flags_collage_and_reference(qtbot, make_editor):
    window = make_editor().window
    layer = window.add_image_layer(np.full((8, 8, 4), 200, np.uint8), "piece", role="image")
    panel = window.layers_panel
    assert panel.collage.isVisible() and not panel.collage.isChecked()
    panel.collage.click()
    assert layer.collage
    panel.reference.click()
    assert layer.reference
    assert "reference" in panel.row_of(layer).badge.text()


def test_typing_a_prompt_is_one_undo_step_and_undo_updates_the_panel(qtbot, make_editor):
    window = make_editor().window
    doc, panel = window.document, window.generation_panel
    panel.prompt.setFocus()
    QTest.keyClicks(panel.prompt, "a red fox")
    assert doc.settings.prompt == "a red fox"
    assert len(doc.history) == 1
    panel.steps.setValue(7)
    panel.mode.activated.emit(panel.mode.findData("inpaint"))
    assert (doc.settings.steps, doc.settings.mode) == (7, "inpaint")
    assert panel.inpaint_group.isVisibleTo(panel) and not panel.refine_group.isVisibleTo(panel)
    doc.undo()
    doc.undo()
    doc.undo()
    assert doc.settings.prompt == "" and panel.prompt.toPlainText() == ""
    assert panel.steps.value() == 20 and panel.mode.currentData() == "generate"


def test_seed_dice_and_lock(qtbot, make_editor):
    window = make_editor().window
    doc, panel = window.document, window.generation_panel
    assert doc.settings.seed == -1 and not panel.seed_lock.isChecked() and not panel.seed.isEnabled()
    panel.seed_dice.click()
    first = doc.settings.seed
    assert first >= 0 and panel.seed.text() == str(first) and panel.seed_lock.isChecked()
    panel.seed_dice.click()
    assert doc.settings.seed != first
    panel.seed_lock.click()
    assert doc.settings.seed == -1 and panel.seed.text() == ""


def test_brush_shortcut_picks_a_mask_and_a_stroke_is_one_undo_step(qtbot, make_editor):
    window = make_editor().window
    doc, view = window.document, window.view
    QTest.keyClick(view, Qt.Key.Key_B)
    assert view.tool_name == "brush"
    assert isinstance(doc.active_layer, MaskLayer)  # made one, since there was none
    size = view.tool.size
    QTest.keyClick(view, Qt.Key.Key_BracketRight)
    assert view.tool.size > size
    steps = len(doc.history)
    drag(view, line((100, 100), (300, 300)))
    mask = doc.active_layer
    assert mask.pixels[200, 200] > 0 and len(doc.history) == steps + 1
    window.undo()
    assert mask.pixels.max() == 0
    QTest.keyClick(view, Qt.Key.Key_E)
    assert view.tool_name == "eraser" and doc.active_layer is mask


def test_paste_an_image_from_the_clipboard_as_a_layer(qtbot, make_editor):
    window = make_editor().window
    image = QImage(30, 20, QImage.Format.Format_RGBA8888)
    image.fill(Qt.GlobalColor.red)
    QGuiApplication.clipboard().setImage(image)
    window.actions["paste"].trigger()
    layer = window.document.layers[-1]
    assert isinstance(layer, ImageLayer) and layer.pixels.shape == (20, 30, 4)
    assert tuple(layer.pixels[0, 0]) == (255, 0, 0, 255) and not layer.collage  # first picture: the background
    window.actions["paste"].trigger()
    assert window.document.layers[-1].collage  # over a picture: a collage piece


def test_dropped_image_files_become_layers_where_dropped(qtbot, make_editor, tmp_path):
    window = make_editor().window
    view = window.view
    path = write_image(tmp_path / "drop.png", (20, 10))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    at = view.viewport().mapTo(window, view.map_from_document(QPointF(200, 150)).toPoint())
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(at), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)
    layer = window.document.layers[-1]
    assert layer.name == "drop" and (layer.x, layer.y) == (190.0, 145.0)


def test_opening_a_corrupt_project_shows_one_sentence_and_the_editor_keeps_working(qtbot, make_editor, tmp_path,
                                                                                   dialog_spy, monkeypatch):
    window = make_editor().window
    before = window.document
    bad = tmp_path / "broken.ora"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bad), "")))
    window.actions["open"].trigger()
    warnings = dialog_spy.texts("warning")
    assert len(warnings) == 1 and warnings[0].startswith("broken.ora:") and "\n" not in warnings[0]
    assert window.document is before
    window.actions["add_mask"].trigger()
    assert isinstance(window.document.layers[-1], MaskLayer)


def test_save_reopen_and_recent_files(qtbot, make_editor, tmp_path, monkeypatch):
    window = make_editor().window
    window.actions["add_region"].trigger()
    target = tmp_path / "scene"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    assert window.save()
    saved = tmp_path / "scene.ora"
    assert saved.exists() and window.path == saved.resolve() and not window.isWindowModified()
    assert window.settings.recent_files[0] == str(saved.resolve())
    assert window.recent_menu.actions()[0].text() == "scene.ora"
    assert load_ora(saved).same_as(window.document)
    window.actions["add_mask"].trigger()
    assert window.isWindowModified()
    assert window.open_path(saved, ask=False)
    assert len(window.document.layers) == 1 and window.layers_panel.list.count() == 1


def test_save_asks_before_overwriting_a_file_changed_on_disk(qtbot, make_editor, tmp_path, dialog_spy):
    window = make_editor().window
    path = tmp_path / "shared.ora"
    window._save_to(path)
    window.actions["add_mask"].trigger()
    path.write_bytes(path.read_bytes() + b"\0")  # someone else saved it meanwhile
    changed = path.read_bytes()
    dialog_spy.question_answer = QMessageBox.StandardButton.No
    assert window.save() is False
    assert "changed on disk" in dialog_spy.texts("question")[-1] and path.read_bytes() == changed
    dialog_spy.question_answer = QMessageBox.StandardButton.Yes
    assert window.save() is True
    assert len(load_ora(path).layers) == 1


def test_closing_with_unsaved_changes_asks_and_cancel_keeps_the_window(qtbot, make_editor, dialog_spy):
    window = make_editor().window
    window.actions["add_mask"].trigger()
    dialog_spy.question_answer = QMessageBox.StandardButton.Cancel
    assert window.close() is False and window.isVisible()
    assert "Save the changes" in dialog_spy.texts("question")[-1]


def test_generation_staging_accept_and_undo_through_the_window(qtbot, make_editor):
    window = make_editor().window
    doc = window.document
    doc.settings.batch_count = 2
    job = window.generate()
    qtbot.waitUntil(lambda: window.controller.staging is not None, timeout=5000)
    strip = window.staging_strip
    assert strip.isVisible() and strip.title.text() == "Result 1 of 2" and strip.thumbs.count() == 2
    assert window.view.staging.candidates and window.actions["accept"].isEnabled()
    window.actions["next_candidate"].trigger()
    assert strip.title.text() == "Result 2 of 2" and window.view.staging.current_index == 1
    assert window.history_panel.list.count() == 1
    window.actions["accept"].trigger()
    layer = doc.layers[-1]
    assert isinstance(layer, ImageLayer) and np.array_equal(layer.pixels[..., :3], job.images[1])
    assert not strip.isVisible() and not window.view.staging.candidates
    window.actions["undo"].trigger()
    assert layer not in doc.layers


def test_escape_cancels_a_running_generation_then_discards_results(qtbot, make_editor):
    window = make_editor(lambda: FakeEngine(step_seconds=0.02)).window
    window.document.settings.steps = 300
    job = window.generate()
    qtbot.waitUntil(lambda: job.step >= 1, timeout=5000)
    assert window.generation_panel.progress.isVisible()
    window.actions["cancel"].trigger()
    qtbot.waitUntil(lambda: job.state.done, timeout=3000)
    assert job.state is JobState.CANCELLED and not window.view.staging.isVisible()
    window.document.settings.steps = 2
    window.generate()
    qtbot.waitUntil(lambda: window.controller.staging is not None, timeout=5000)
    window.actions["cancel"].trigger()
    assert window.controller.staging is None and not window.staging_strip.isVisible()


def test_a_request_that_cannot_run_is_a_dialog_and_the_window_stays_usable(qtbot, make_editor, dialog_spy):
    window = make_editor().window
    window.document.settings.mode = "inpaint"
    assert window.generate() is None
    assert len(dialog_spy.texts("warning")) == 1 and "mask" in dialog_spy.texts("warning")[0]
    window.document.settings.mode = "generate"
    job = window.generate()
    qtbot.waitUntil(lambda: job.state.done, timeout=5000)
    assert job.state is JobState.FINISHED


def test_engine_failure_is_a_dialog(qtbot, make_editor, dialog_spy):
    from inference.api import OutOfMemory

    window = make_editor(lambda: FakeEngine(fail_with=OutOfMemory("The device ran out of memory."))).window
    job = window.generate()
    qtbot.waitUntil(lambda: job.state.done, timeout=5000)
    assert dialog_spy.texts("warning") == ["The device ran out of memory."]
    assert not window.generation_panel.progress.isVisible()


def test_history_restore_button_brings_back_the_settings_of_that_generation(qtbot, make_editor):
    window = make_editor().window
    doc = window.document
    doc.settings.prompt = "first idea"
    job = window.generate()
    qtbot.waitUntil(lambda: job.state.done, timeout=5000)
    window.generation_panel.prompt.setPlainText("second idea")
    assert doc.settings.prompt == "second idea"
    panel = window.history_panel
    assert "first idea" in panel.list.item(0).text() and not panel.list.item(0).icon().isNull()
    panel.list.setCurrentRow(0)
    panel.restore_button.click()
    assert doc.settings.prompt == "first idea" and window.generation_panel.prompt.toPlainText() == "first idea"


def test_export_png_carries_the_accepted_generation_parameters(qtbot, make_editor, tmp_path):
    window = make_editor().window
    window.document.settings.prompt = "a lighthouse"
    window.generate()
    qtbot.waitUntil(lambda: window.controller.staging is not None, timeout=5000)
    window.controller.accept()
    out = tmp_path / "out.png"
    assert window.export_png(out)
    params = read_png_parameters(out)
    assert params["prompt"] == "a lighthouse" and params["seed"] == 1234 and params["steps"] == 20
    assert params["collagen"]["mode"] == "generate"


def test_autosave_timer_writes_only_after_changes(qtbot, make_editor):
    editor = make_editor()
    window = editor.window
    window._autosave_timer.setInterval(30)
    window._autosave_timer.start()
    qtbot.wait(120)
    assert editor.autosave.files() == []
    window.actions["add_mask"].trigger()
    qtbot.waitUntil(lambda: len(editor.autosave.files()) == 1, timeout=3000)
    qtbot.wait(120)
    assert len(editor.autosave.files()) == 1
    assert len(load_ora(editor.autosave.files()[0]).layers) == 1


def test_crash_handler_logs_autosaves_and_tells_the_user(qtbot, make_editor, dialog_spy, tmp_path):
    editor = make_editor()
    editor.window.actions["add_mask"].trigger()
    handler = CrashHandler(tmp_path / "collagen.log")
    handler.window = editor.window
    try:
        raise RuntimeError("a slot blew up\nwith a second line")
    except RuntimeError as exc:
        handler.handle(type(exc), exc, exc.__traceback__)
    message = dialog_spy.texts("critical")[0]
    assert "RuntimeError: a slot blew up" in message and "autosaved" in message and "\n" not in message
    assert len(editor.autosave.files()) == 1


def test_theme_palettes_are_light_and_dark(qapp):
    light, dark = palette_from_file("light.json"), palette_from_file("dark.json")
    window_light = light.color(light.ColorRole.Window).lightness()
    window_dark = dark.color(dark.ColorRole.Window).lightness()
    assert window_light > 200 > 60 > window_dark


def test_switching_theme_repaints_widgets_and_icons_in_the_new_colours(qtbot, make_editor):
    from PySide6.QtGui import QIcon

    editor = make_editor()
    theme, window = editor.theme, editor.window
    icon = window.actions["undo"].icon()
    for name in ("light", "dark"):
        theme.set_preference(name)
        assert theme.current == name
        text = QApplication.palette().color(QApplication.palette().ColorRole.WindowText)
        pixel = icon.pixmap(24, 24, QIcon.Mode.Normal).toImage().pixelColor(12, 12)
        ink = [icon.pixmap(24, 24).toImage().pixelColor(x, y) for x in range(24) for y in range(24)]
        strongest = max(ink, key=lambda c: c.alpha())
        assert abs(strongest.lightness() - text.lightness()) < 40, (name, pixel.name(), text.name())
        label = window.generation_panel.mode_hint
        assert (label.palette().color(label.backgroundRole()).lightness() > 128) == (name == "light")


def test_spin_box_buttons_show_arrows_in_the_themes_text_colour(qtbot, make_editor):
    """The style sheet's border on spin boxes drops Fusion's own arrows: the buttons were empty."""
    editor = make_editor()
    spin = editor.window.generation_panel.steps
    for name in ("light", "dark"):
        editor.theme.set_preference(name)
        qtbot.wait(10)
        text = QApplication.palette().color(QApplication.palette().ColorRole.Text)
        image = spin.grab().toImage()
        width, height = image.width(), image.height()
        buttons = [image.pixelColor(x, y) for x in range(width - 18, width - 2) for y in range(2, height - 2)]
        field = image.pixelColor(width // 3, height // 2)
        ink = max(buttons, key=lambda c: abs(c.lightness() - field.lightness()))
        assert abs(ink.lightness() - field.lightness()) > 60, (name, ink.name(), field.name())
        assert abs(ink.lightness() - text.lightness()) < 60, (name, ink.name(), text.name())


def test_new_document_dialog_rounds_to_multiples_of_eight(qtbot):
    dialog = dialogs.NewDocumentDialog(None, 512, 512)
    qtbot.addWidget(dialog)
    dialog.presets.setCurrentRow(3)
    assert dialog.choice().width == 1024 and dialog.choice().height == 1024
    dialog.width_box.setValue(500)
    assert dialog.presets.currentItem().text() == "Custom" and dialog.choice().width == 504


def test_move_tool_and_region_box_through_the_canvas(qtbot, make_editor, tmp_path):
    window = make_editor().window
    doc, view = window.document, window.view
    window.import_image(write_image(tmp_path / "piece.png", (40, 40)), role="collage")
    piece = doc.layers[-1]
    x0, y0 = piece.x, piece.y
    window.select_tool("move")
    drag(view, line((x0 + 20, y0 + 20), (x0 + 60, y0 + 50)))
    assert (piece.x, piece.y) == (x0 + 40, y0 + 30)
    window.select_tool("region")
    drag(view, line((50, 60), (250, 220)))
    region = doc.layers[-1]
    assert isinstance(region, RegionLayer) and region.rect == (50, 60, 200, 160)
    editor = view.tool.prompt_editor
    assert editor is not None
    QTest.keyClicks(editor, "a lighthouse")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    assert region.prompt == "a lighthouse"
    assert window.region_panel.prompt.toPlainText() == "a lighthouse"


def test_settings_dialog_changes_preview_autosave_theme_and_folders(qtbot, make_editor, tmp_path, monkeypatch):
    editor = make_editor()
    window = editor.window
    folder = tmp_path / "more-models"
    folder.mkdir()

    def fill_in(dialog):
        dialog.preview.setCurrentIndex(dialog.preview.findData("none"))
        dialog.autosave.setValue(2.5)
        dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
        dialog.folders.addItem(str(folder))
        return dialogs.QDialog.DialogCode.Accepted

    monkeypatch.setattr(dialogs.SettingsDialog, "exec", fill_in)
    window.actions["settings"].trigger()
    assert window.controller.preview_method == "none" and window._autosave_timer.interval() == 150_000
    assert editor.theme.current == "light"
    saved = json.loads(editor.settings_store.path.read_text())
    assert saved["preview"] == "none" and saved["model_folders"] == [str(folder)] and saved["theme"] == "light"
    qtbot.waitUntil(lambda: folder.resolve() in window.models.folders.roots, timeout=10_000)
    window.generate()
    assert window.controller.jobs[-1].request.preview == "none"


def test_region_inspector_edits_prompt_strength_and_loras_as_commands(qtbot, make_editor):
    window = make_editor().window
    doc = window.document
    region = window.add_layer("region")
    inspector = window.region_panel
    assert inspector.stack.currentWidget() is inspector.editor
    inspector.prompt.setFocus()
    QTest.keyClicks(inspector.prompt, "a castle")
    inspector.strength.setValue(1.4)
    inspector.loras.set_available(["stone", "moss"])
    inspector.loras.add_button.click()
    assert region.prompt == "a castle" and region.strength == 1.4
    assert [(lo.name, lo.weight) for lo in region.loras] == [("stone", 1.0)]
    steps = len(doc.history)
    doc.undo()
    assert region.loras == () and len(doc.history) == steps - 1
    doc.active_layer = None
    assert inspector.stack.currentWidget() is inspector.hint


def test_new_document_replaces_the_picture_everywhere(qtbot, make_editor, monkeypatch):
    window = make_editor().window
    window.actions["add_mask"].trigger()
    window.document.history.mark_clean()

    def choose(dialog):
        dialog.presets.setCurrentRow(3)
        dialog.white.setChecked(True)
        return dialogs.QDialog.DialogCode.Accepted

    monkeypatch.setattr(dialogs.NewDocumentDialog, "exec", choose)
    old = window.document
    window.actions["new"].trigger()
    doc = window.document
    assert doc is not old and doc.size == (1024, 1024) and [la.name for la in doc.layers] == ["Background"]
    assert window.view.document is doc and window.controller.document is doc
    assert window.layers_panel.list.count() == 1 and "1024 × 1024" in window.generation_panel.size_label.text()


def test_first_start_fits_the_window_to_the_screen(qapp, user_dirs):
    from desktop.app import build_editor
    from tests.desktop.fakes import FakeEngine

    editor = build_editor(qapp, engine_factory=FakeEngine)
    try:
        screen = editor.window.screen().availableGeometry()
        assert editor.window.width() <= 1440
        if screen.width() < 1440:
            assert editor.window.width() <= screen.width()
    finally:
        editor.window._closing = True
        editor.window.close()
        assert editor.worker.shutdown(timeout=10)
        editor.window.deleteLater()


def test_opening_a_psd_imports_its_layers_as_a_new_unsaved_project(qtbot, make_editor, tmp_path, monkeypatch,
                                                                    dialog_spy):
    from canvas.io.psd import PSD_BLEND, save_psd
    from canvas.model.layers import GroupLayer
    from tests.canvas.documents import interchange_document

    source = interchange_document(tuple(PSD_BLEND))
    psd = tmp_path / "from photoshop.psd"
    save_psd(source, psd)
    window = make_editor().window
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(psd), "")))
    window.actions["open"].trigger()
    assert not dialog_spy.texts("warning")
    document = window.document
    assert (document.width, document.height) == (source.width, source.height)
    assert [layer.name for layer in document.layers] == [layer.name for layer in source.layers]
    assert any(isinstance(layer, GroupLayer) for layer in document.layers)
    assert window.layers_panel.list.count() >= len(document.layers)
    assert window.path is None and window.has_unsaved_changes  # closing asks; Save asks for an .ora name
    assert "Imported from photoshop.psd" in window.statusBar().currentMessage()
    target = tmp_path / "imported"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    assert window.save()
    assert load_ora(tmp_path / "imported.ora").same_as(window.document)


def test_a_damaged_psd_is_one_sentence_and_the_document_stays(qtbot, make_editor, tmp_path, dialog_spy):
    window = make_editor().window
    before = window.document
    bad = tmp_path / "bad.psd"
    bad.write_bytes(b"8BPS" + b"\x00\x01" + b"\xff" * 40)
    assert not window.open_path(bad, ask=False)
    warnings = dialog_spy.texts("warning")
    assert len(warnings) == 1 and warnings[0].startswith("bad.psd:") and "\n" not in warnings[0]
    assert window.document is before
