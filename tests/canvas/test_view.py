"""The canvas widget driven with real mouse and key events: tools, undo steps, zoom and pan."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from canvas.model.commands import AddLayer, MoveLayer, RemoveLayer, SetProperty
from canvas.model.document import Document
from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer, ScribbleLayer
from canvas.view.canvas_view import ABOVE_PICTURE_Z, MAX_ZOOM, MIN_ZOOM, CanvasView, overlay_kind

LEFT = Qt.MouseButton.LeftButton
MIDDLE = Qt.MouseButton.MiddleButton
NONE = Qt.MouseButton.NoButton
NO_MOD = Qt.KeyboardModifier.NoModifier


# -- driving the view ----------------------------------------------------------------------------

def vp(view: CanvasView, x: float, y: float) -> QPointF:
    """Viewport position of a document point."""
    return view.map_from_document(QPointF(x, y))


def send_mouse(view: CanvasView, kind: QEvent.Type, pos: QPointF, button=LEFT, buttons=None,
               modifiers=NO_MOD) -> None:
    if buttons is None:
        buttons = NONE if kind == QEvent.Type.MouseButtonRelease else button
    global_pos = QPointF(view.viewport().mapToGlobal(pos.toPoint()))
    event = QMouseEvent(kind, pos, global_pos, button, buttons, modifiers)
    QApplication.sendEvent(view.viewport(), event)


def drag(view: CanvasView, points: list[tuple[float, float]], button=LEFT, modifiers=NO_MOD) -> None:
    """Press at the first document point, move through the rest, release at the last."""
    first, *rest = points
    send_mouse(view, QEvent.Type.MouseButtonPress, vp(view, *first), button, modifiers=modifiers)
    for p in rest:
        send_mouse(view, QEvent.Type.MouseMove, vp(view, *p), NONE, buttons=button, modifiers=modifiers)
    send_mouse(view, QEvent.Type.MouseButtonRelease, vp(view, *points[-1]), button, modifiers=modifiers)


def press_key(view: CanvasView, key: Qt.Key, text: str = "", release: bool = True) -> None:
    QApplication.sendEvent(view, QKeyEvent(QEvent.Type.KeyPress, key, NO_MOD, text))
    if release:
        QApplication.sendEvent(view, QKeyEvent(QEvent.Type.KeyRelease, key, NO_MOD, text))


def gradient_rgba(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = xx * 255 // max(w - 1, 1)
    img[..., 1] = yy * 255 // max(h - 1, 1)
    img[..., 2] = 90
    img[..., 3] = 255
    return img


@pytest.fixture
def doc() -> Document:
    d = Document(256, 192)
    d.add_layer_untracked(ImageLayer(name="Background", pixels=gradient_rgba(192, 256)))
    d.add_layer_untracked(ImageLayer(name="Piece", pixels=gradient_rgba(40, 60), x=150, y=100, collage=True))
    d.add_layer_untracked(MaskLayer(pixels=np.zeros((192, 256), np.uint8)))
    d.add_layer_untracked(ScribbleLayer(name="Ink"))
    return d


@pytest.fixture
def view(qtbot, doc) -> CanvasView:
    v = CanvasView(doc)
    qtbot.addWidget(v)
    v.resize(420, 320)
    v.show()
    qtbot.waitExposed(v)
    v.actual_size()
    v.centerOn(128, 96)
    yield v
    v.close_document()


def layer_named(doc: Document, name: str):
    return next(layer for layer in doc.layers if layer.name == name)


# -- brush and eraser ----------------------------------------------------------------------------

def test_brush_stroke_on_a_mask_is_one_undo_step(view, doc):
    mask = layer_named(doc, "Mask")
    doc.active_layer = mask
    view.set_tool("brush")
    view.tools["brush"].set_size(10)
    view.tools["brush"].set_hardness(1.0)
    steps = len(doc.history)
    drag(view, [(40, 50), (60, 50), (80, 50), (100, 50), (100, 70)])
    assert len(doc.history) == steps + 1
    assert doc.history.undo_label == "Brush stroke"
    for x, y in [(40, 50), (70, 50), (100, 50), (100, 60), (100, 70)]:
        assert mask.pixels[y, x] == 255, (x, y)
    for x, y in [(40, 70), (20, 20), (200, 150), (120, 50)]:
        assert mask.pixels[y, x] == 0, (x, y)
    painted = mask.pixels.copy()
    doc.undo()
    assert mask.pixels.sum() == 0
    doc.redo()
    assert np.array_equal(mask.pixels, painted)


def test_eraser_stroke_removes_mask_pixels(view, doc):
    mask = layer_named(doc, "Mask")
    mask.pixels[:] = 255
    doc.active_layer = mask
    view.set_tool("eraser")
    view.tools["eraser"].set_size(8)
    view.tools["eraser"].set_hardness(1.0)
    drag(view, [(30, 30), (90, 30)])
    assert mask.pixels[30, 30] == 0 and mask.pixels[30, 60] == 0 and mask.pixels[30, 90] == 0
    assert mask.pixels[50, 60] == 255
    assert doc.history.undo_label == "Eraser stroke"
    doc.undo()
    assert np.all(mask.pixels == 255)


def test_painting_a_rectangle_region_turns_it_into_a_painted_mask_in_one_step(view, doc):
    region = RegionLayer(name="Sky", rect=(10, 10, 40, 30), prompt="sky")
    doc.execute(AddLayer(region))
    doc.active_layer = region
    view.set_tool("brush")
    view.tools["brush"].set_size(6)
    steps = len(doc.history)
    drag(view, [(100, 100), (120, 100)])
    assert len(doc.history) == steps + 1
    assert region.mask is not None
    assert region.mask[20, 20] == 255  # the old rectangle
    assert region.mask[100, 110] == 255  # the new paint
    assert region.mask[150, 200] == 0
    doc.undo()
    assert region.mask is None and region.rect == (10, 10, 40, 30)


def test_a_mask_of_another_size_is_brought_to_the_document_size_in_the_same_step(view, doc):
    small = MaskLayer(name="Small", pixels=np.full((10, 20), 255, np.uint8))
    doc.execute(AddLayer(small))
    doc.active_layer = small
    steps = len(doc.history)
    view.tools["brush"].set_size(6)
    drag(view, [(100, 100), (110, 100)])
    assert small.pixels.shape == (192, 256) and len(doc.history) == steps + 1
    assert small.pixels[5, 5] == 255 and small.pixels[100, 105] == 255 and small.pixels[50, 50] == 0
    doc.undo()
    assert small.pixels.shape == (10, 20) and np.all(small.pixels == 255)


def test_brush_refuses_layers_it_cannot_paint_with_a_message(view, doc, qtbot):
    image = layer_named(doc, "Background")
    doc.active_layer = image
    before = image.pixels.copy()
    with qtbot.waitSignal(view.status_message) as blocker:
        drag(view, [(40, 40), (60, 60)])
    assert "mask or region" in blocker.args[0]
    assert np.array_equal(image.pixels, before) and len(doc.history) == 0
    mask = layer_named(doc, "Mask")
    doc.execute(SetProperty(mask, "locked", True))
    doc.active_layer = mask
    with qtbot.waitSignal(view.status_message) as blocker:
        drag(view, [(40, 40), (60, 60)])
    assert "locked" in blocker.args[0] and mask.pixels.sum() == 0


def test_escape_cancels_a_stroke_in_progress(view, doc):
    mask = layer_named(doc, "Mask")
    doc.active_layer = mask
    send_mouse(view, QEvent.Type.MouseButtonPress, vp(view, 50, 50))
    send_mouse(view, QEvent.Type.MouseMove, vp(view, 90, 50), NONE, buttons=LEFT)
    assert mask.pixels.sum() > 0
    press_key(view, Qt.Key.Key_Escape)
    send_mouse(view, QEvent.Type.MouseButtonRelease, vp(view, 90, 50))
    assert mask.pixels.sum() == 0 and len(doc.history) == 0


def test_bracket_keys_change_the_brush_size(view):
    view.set_tool("brush")
    brush = view.tools["brush"]
    brush.set_size(20)
    press_key(view, Qt.Key.Key_BracketRight, "]")
    assert brush.size == pytest.approx(24)
    press_key(view, Qt.Key.Key_BracketLeft, "[")
    press_key(view, Qt.Key.Key_BracketLeft, "[")
    assert brush.size == pytest.approx(20 / 1.2)
    brush.set_size(1)
    press_key(view, Qt.Key.Key_BracketLeft, "[")
    assert brush.size == 1


def test_brush_outline_follows_the_pointer_at_the_brush_size(view, doc):
    view.set_tool("brush")
    view.tools["brush"].set_size(30)
    send_mouse(view, QEvent.Type.MouseMove, vp(view, 100, 80), NONE, buttons=NONE)
    outline = view.tool.overlay_rect()
    assert outline.center() == QPointF(100, 80) and outline.width() == 30
    assert view.viewport().cursor().shape() == Qt.CursorShape.CrossCursor


# -- region box ----------------------------------------------------------------------------------

def test_region_box_drag_creates_a_region_with_that_rect(view, doc, qtbot):
    view.set_tool("region")
    drag(view, [(20, 30), (60, 60), (120, 90)])
    region = doc.layers[-1]
    assert isinstance(region, RegionLayer)
    assert region.rect == (20, 30, 100, 60)
    assert doc.active_layer is region and doc.history.undo_label.startswith("Add")
    editor = view.tools["region"].prompt_editor
    assert editor is not None and editor.isVisible()
    QTest.keyClicks(editor, "a red fox")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    assert region.prompt == "a red fox"
    assert view.tools["region"].prompt_editor is None
    doc.undo()  # the prompt
    doc.undo()  # the region
    assert region not in doc.layers


def test_region_box_drag_backwards_and_past_the_edge_is_clamped(view, doc):
    view.set_tool("region")
    view.tools["region"].edit_prompt_after_create = False
    drag(view, [(200, 150), (300, 250)])
    assert doc.layers[-1].rect == (200, 150, 56, 42)
    count = len(doc.layers)
    drag(view, [(10, 10), (12, 11)])  # a click is not a box
    assert len(doc.layers) == count


def test_region_move_and_resize_are_one_undo_step_each(view, doc):
    region = RegionLayer(name="R", rect=(40, 40, 50, 30))
    doc.execute(AddLayer(region))
    view.set_tool("region")
    steps = len(doc.history)
    drag(view, [(60, 50), (70, 55), (80, 60), (90, 65)])
    assert region.rect == (70, 55, 50, 30)
    assert len(doc.history) == steps + 1 and doc.active_layer is region
    drag(view, [(120, 85), (130, 90), (140, 100)])  # the south-east handle
    assert region.rect == (70, 55, 70, 45)
    assert len(doc.history) == steps + 2
    doc.undo()
    assert region.rect == (70, 55, 50, 30)
    doc.undo()
    assert region.rect == (40, 40, 50, 30)


def test_region_move_stays_inside_the_document(view, doc):
    region = RegionLayer(name="R", rect=(40, 40, 50, 30))
    doc.execute(AddLayer(region))
    view.set_tool("region")
    drag(view, [(60, 50), (-100, -100)])
    assert region.rect == (0, 0, 50, 30)


def test_double_click_edits_the_prompt_and_escape_cancels(view, doc, qtbot):
    region = RegionLayer(name="R", rect=(40, 40, 80, 40), prompt="old")
    doc.execute(AddLayer(region))
    view.set_tool("region")
    tool = view.tools["region"]
    QTest.mouseDClick(view.viewport(), LEFT, NO_MOD, vp(view, 60, 60).toPoint())
    editor = tool.prompt_editor
    assert editor is not None and editor.text() == "old"
    QTest.keyClicks(editor, "new words")
    QTest.keyClick(editor, Qt.Key.Key_Escape)
    assert region.prompt == "old" and tool.prompt_editor is None
    editor = tool.edit_prompt(region)
    editor.setText("snowy mountains")
    QTest.keyClick(editor, Qt.Key.Key_Enter)
    assert region.prompt == "snowy mountains"
    assert doc.history.undo_label == "Change prompt"


# -- move / transform ----------------------------------------------------------------------------

def test_moving_an_image_layer_updates_x_y_in_one_undo_step(view, doc):
    piece = layer_named(doc, "Piece")
    view.set_tool("move")
    drag(view, [(170, 110), (160, 105), (150, 100), (140, 96)])
    assert doc.active_layer is piece
    assert (piece.x, piece.y) == (120.0, 86.0)
    assert len(doc.history) == 1 and doc.history.undo_label == "Transform"
    doc.undo()
    assert (piece.x, piece.y) == (150.0, 100.0)


def test_a_drag_touches_the_history_once_and_escape_leaves_no_trace(view, doc):
    piece = layer_named(doc, "Piece")
    region = RegionLayer(name="R", rect=(10, 10, 30, 20))
    doc.execute(AddLayer(region))
    history_changes = []
    doc.history.changed.connect(lambda: history_changes.append(1))
    view.set_tool("move")
    drag(view, [(170, 110), (175, 112), (180, 114), (185, 116)])
    assert len(history_changes) == 1 and (piece.x, piece.y) == (165.0, 106.0)
    for tool, start, end, layer, attrs in (("move", (170, 110), (200, 130), piece, ("x", "y")),
                                           ("region", (20, 20), (60, 50), region, ("rect",))):
        view.set_tool(tool)
        before = [getattr(layer, a) for a in attrs]
        steps = len(doc.history)
        send_mouse(view, QEvent.Type.MouseButtonPress, vp(view, *start))
        send_mouse(view, QEvent.Type.MouseMove, vp(view, *end), NONE, buttons=LEFT)
        assert [getattr(layer, a) for a in attrs] != before  # the layer follows the pointer live
        press_key(view, Qt.Key.Key_Escape)
        send_mouse(view, QEvent.Type.MouseButtonRelease, vp(view, *end))
        assert [getattr(layer, a) for a in attrs] == before
        assert len(doc.history) == steps and not doc.history.can_redo


def test_shift_constrains_a_move_to_one_axis(view, doc):
    piece = layer_named(doc, "Piece")
    view.set_tool("move")
    drag(view, [(170, 110), (190, 116)], modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert (piece.x, piece.y) == (170.0, 100.0)


def test_corner_handle_scales_about_the_opposite_corner(view, doc):
    piece = layer_named(doc, "Piece")
    doc.active_layer = piece
    view.set_tool("move")
    # the south-east corner is at (210, 140); the north-west one (150, 100) stays put
    drag(view, [(210, 140), (240, 160), (270, 180)])
    assert piece.scale == pytest.approx(2.0)
    assert (piece.x, piece.y) == pytest.approx((150.0, 100.0))
    assert len(doc.history) == 1


def test_rotate_knob_turns_the_layer_about_its_centre(view, doc):
    piece = layer_named(doc, "Piece")
    doc.active_layer = piece
    view.set_tool("move")
    centre = (180.0, 120.0)
    knob = (180.0, 100.0 - 28.0)  # 28 screen px above the top edge at 100 %
    # swing the knob a quarter turn clockwise around the centre, ending to the right of it
    drag(view, [knob, (200, 90), (centre[0] + 48, centre[1])],
         modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert piece.rotation == pytest.approx(90.0)
    x0, y0, x1, y1 = piece.bounds()
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx(centre)
    assert len(doc.history) == 1


def test_move_tool_on_empty_canvas_explains(view, doc, qtbot):
    doc.layers[0].visible = False  # hide the background directly: no event needed for the test
    view.set_tool("move")
    with qtbot.waitSignal(view.status_message) as blocker:
        drag(view, [(20, 20), (30, 30)])
    assert "image layer" in blocker.args[0] and len(doc.history) == 0


# -- scribble and eyedropper ---------------------------------------------------------------------

def test_scribble_adds_one_stroke_with_the_pen_colour_and_width(view, doc):
    ink = layer_named(doc, "Ink")
    doc.active_layer = ink
    view.set_tool("scribble")
    pen = view.tools["scribble"]
    pen.set_color("#00aa00")
    pen.set_width(5)
    drag(view, [(20, 20), (40, 30), (60, 25), (80, 40)])
    assert len(ink.strokes) == 1 and len(doc.history) == 1
    stroke = ink.strokes[0]
    assert stroke.color == "#00aa00" and stroke.width == 5
    assert stroke.points[0] == pytest.approx((20, 20)) and stroke.points[-1] == pytest.approx((80, 40))
    assert len(stroke.points) == 4
    doc.undo()
    assert ink.strokes == ()


def test_scribble_needs_a_scribble_layer(view, doc, qtbot):
    doc.active_layer = layer_named(doc, "Mask")
    view.set_tool("scribble")
    with qtbot.waitSignal(view.status_message) as blocker:
        drag(view, [(20, 20), (40, 30)])
    assert "scribble layer" in blocker.args[0] and len(doc.history) == 0


def test_eyedropper_emits_the_flattened_colour(view, doc, qtbot):
    view.set_tool("eyedropper")
    with qtbot.waitSignal(view.tools["eyedropper"].color_picked) as blocker:
        drag(view, [(155, 105)])
    piece = layer_named(doc, "Piece")
    r, g, b, _ = piece.pixels[5, 5]
    assert blocker.args[0].getRgb()[:3] == (r, g, b)


# -- zoom, pan, tools ----------------------------------------------------------------------------

def test_wheel_zooms_around_the_cursor(view, qtbot):
    anchor = vp(view, 60, 40)
    with qtbot.waitSignal(view.zoom_changed):
        event = QWheelEvent(anchor, QPointF(view.viewport().mapToGlobal(anchor.toPoint())), QPoint(0, 0),
                            QPoint(0, 240), NONE, NO_MOD, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(view.viewport(), event)
    assert view.zoom == pytest.approx(2 ** 0.5)
    under = view.map_to_document(anchor)
    assert (under.x(), under.y()) == pytest.approx((60, 40), abs=1.0)


def test_fit_and_actual_size_and_zoom_limits(view, doc):
    view.set_zoom(8.0)
    view.fit()
    shown = view.visible_document_rect()
    assert shown.width() == pytest.approx(doc.width, abs=1) and shown.height() == pytest.approx(doc.height, abs=1)
    view.actual_size()
    assert view.zoom == 1.0
    view.set_zoom(1e6)
    assert view.zoom == MAX_ZOOM
    view.set_zoom(0)
    assert view.zoom == MIN_ZOOM


def test_space_drag_and_middle_button_pan_without_painting(view, doc):
    doc.active_layer = layer_named(doc, "Mask")
    view.set_zoom(4.0)
    h0, v0 = view.horizontalScrollBar().value(), view.verticalScrollBar().value()
    QApplication.sendEvent(view, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Space, NO_MOD, " "))
    start = QPointF(200, 150)
    send_mouse(view, QEvent.Type.MouseButtonPress, start)
    send_mouse(view, QEvent.Type.MouseMove, QPointF(150, 120), NONE, buttons=LEFT)
    send_mouse(view, QEvent.Type.MouseButtonRelease, QPointF(150, 120))
    QApplication.sendEvent(view, QKeyEvent(QEvent.Type.KeyRelease, Qt.Key.Key_Space, NO_MOD, " "))
    assert (view.horizontalScrollBar().value(), view.verticalScrollBar().value()) == (h0 + 50, v0 + 30)
    send_mouse(view, QEvent.Type.MouseButtonPress, start, MIDDLE)
    send_mouse(view, QEvent.Type.MouseMove, QPointF(210, 170), NONE, buttons=MIDDLE)
    send_mouse(view, QEvent.Type.MouseButtonRelease, QPointF(210, 170), MIDDLE)
    assert (view.horizontalScrollBar().value(), view.verticalScrollBar().value()) == (h0 + 40, v0 + 10)
    assert layer_named(doc, "Mask").pixels.sum() == 0 and len(doc.history) == 0


def test_set_tool_emits_and_rejects_unknown_names(view, qtbot):
    with qtbot.waitSignal(view.tool_changed) as blocker:
        view.set_tool("region")
    assert blocker.args == ["region"] and view.tool_name == "region"
    with pytest.raises(KeyError, match="Unknown tool"):
        view.set_tool("lasso")
    assert set(view.tools) == {"brush", "eraser", "region", "move", "scribble", "eyedropper"}


def test_set_document_switches_scenes_and_disconnects_the_old_one(view, doc):
    old_scene = view.canvas_scene
    other = Document(64, 64)
    view.set_document(other)
    assert view.canvas_scene is not old_scene and view.document is other
    # the old document's changes no longer reach any item
    assert len(doc.layers[0].events.pixels_changed) == 0
    other.execute(AddLayer(MaskLayer(pixels=np.zeros((64, 64), np.uint8))))
    assert len(view.canvas_scene.layer_items()) == 1


def test_layer_order_changes_restack_items(view, doc):
    scene = view.canvas_scene
    items = scene.layer_items()
    # document order, with masks, regions and annotations lifted above every picture layer
    band = [ABOVE_PICTURE_Z if overlay_kind(i.layer) else 0.0 for i in items]
    assert [i.zValue() for i in items] == [z + b for z, b in zip([0, 1, 2, 3], band)]
    piece = layer_named(doc, "Piece")
    doc.execute(MoveLayer(piece, 3))
    assert scene.item_for(piece).zValue() == 3
    doc.execute(RemoveLayer(piece))
    assert piece not in [i.layer for i in scene.layer_items()]
    assert len(piece.events.changed) == 0  # the removed item no longer listens
    doc.undo()
    assert scene.item_for(piece).zValue() == 3
