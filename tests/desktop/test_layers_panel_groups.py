"""The layers panel's blend mode menu and groups (issue 18), on a plain document."""

from __future__ import annotations

import numpy as np

from canvas.model.document import Document
from canvas.model.layers import GroupLayer, ImageLayer
from canvas.view.canvas_view import CanvasScene
from desktop.panels.layers import INDENT, PASS_THROUGH, LayersPanel


def document() -> Document:
    doc = Document(8, 8)
    for name in ("bottom", "top"):
        doc.add_layer_untracked(ImageLayer(name=name, pixels=np.full((8, 8, 4), 200, np.uint8)))
    return doc


def test_blend_menu_sets_the_mode_and_undo_restores_it(qtbot):
    doc = document()
    panel = LayersPanel(doc)
    qtbot.addWidget(panel)
    top = doc.layers[1]
    doc.active_layer = top
    panel.blend.setCurrentText("multiply")
    assert top.blend == "multiply" and "multiply" in panel.row_of(top).badge.text()
    assert panel.blend.findText(PASS_THROUGH) < 0  # only groups pass through
    doc.undo()
    assert top.blend == "normal" and panel.blend.currentText() == "normal"


def test_group_and_ungroup_are_undoable_and_shown_indented(qtbot):
    doc = document()
    panel = LayersPanel(doc)
    scene = CanvasScene(doc)
    qtbot.addWidget(panel)
    top = doc.layers[1]
    doc.active_layer = top
    panel.group_selected()
    group = doc.parent_of(top)
    assert isinstance(group, GroupLayer) and doc.index_of(group) == doc.index_of(top) + 1
    assert panel.row_of(top).layout().contentsMargins().left() == 4 + INDENT
    assert scene.item_for(top).parentItem() is scene.item_for(group)  # the canvas hides it with the group
    doc.active_layer = group
    panel.blend.setCurrentText(PASS_THROUGH)
    assert not group.isolated
    doc.active_layer = top
    panel.ungroup_selected()
    assert doc.parent_of(top) is None and scene.item_for(top).parentItem() is None
    doc.undo()
    assert doc.parent_of(top) is group
    doc.undo()  # pass-through
    doc.undo()  # the group itself
    assert group not in doc.layers and top.group == "" and panel.row_of(top).layout().contentsMargins().left() == 4
    scene.close()


def test_the_editor_exports_a_layered_psd_and_says_what_psd_cannot_hold(make_editor, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from canvas.io.psd import load_psd

    window = make_editor().window
    doc = window.document
    layer = ImageLayer(name="cut", pixels=np.full((8, 8, 4), 90, np.uint8), blend="dst-out")
    doc.add_layer_untracked(layer)
    target = tmp_path / "for photoshop"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.action_export_psd()
    opened = load_psd(target.with_suffix(".psd"))
    assert [la.name for la in opened.layers][-1] == "cut"
    assert "no equivalent of the blend mode of 'cut'" in window.statusBar().currentMessage()
