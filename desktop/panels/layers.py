"""Layers panel: the document's layers top first, with thumbnails, visibility, lock, opacity,
blend mode and groups (a group's members are indented under it; "Group" puts the selected layer
in a new group, "Ungroup" takes it out of its group).

Every change goes through a command on the document (so it is undoable); the panel redraws from
the document's and layers' events, never from its own state. Reordering is by drag and drop
(MoveLayer) or the up/down buttons. Thumbnails refresh shortly after pixels change, not on every
brush dab.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from canvas.model.commands import AddLayer, MoveLayer, RemoveLayer, SetProperty
from canvas.model.document import Document
from canvas.model.layers import (
    BLEND_MODES,
    MAX_NAME_CHARS,
    GroupLayer,
    ImageLayer,
    Layer,
    MaskLayer,
    RegionLayer,
    ScribbleLayer,
)
from desktop.actions import icon
from desktop.panels.thumbnails import layer_thumbnail

THUMB = 40
THUMB_DELAY_MS = 300
INDENT = 14  # px per group level
PASS_THROUGH = "pass-through"  # the blend menu's entry for a group that is not isolated


def layer_badge(layer: Layer) -> str:
    """A few words on what the layer does in a generation."""
    if isinstance(layer, ImageLayer):
        return "reference" if layer.reference else ("collage piece" if layer.collage else "image")
    if isinstance(layer, MaskLayer):
        return "inpaint mask"
    if isinstance(layer, RegionLayer):
        prompt = " ".join(layer.prompt.split())
        return f"“{prompt[:28]}…”" if len(prompt) > 28 else (f"“{prompt}”" if prompt else "region (no prompt)")
    if isinstance(layer, ScribbleLayer):
        return f"{layer.mode} · {len(layer.strokes)} stroke{'s' if len(layer.strokes) != 1 else ''}"
    if isinstance(layer, GroupLayer):
        return "group" + ("" if layer.isolated else " · pass-through")
    return layer.kind


class LayerRow(QWidget):
    """One row: eye, thumbnail, name (double-click to rename), what it is, lock."""

    def __init__(self, panel: LayersPanel, layer: Layer):
        super().__init__()
        self.panel = panel
        self.layer = layer
        self._eye_on, self._eye_off = icon("visible"), icon("hidden")
        self._lock_on, self._lock_off = icon("lock"), icon("unlock")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4 + INDENT * len(panel.document.ancestors(layer)), 2, 4, 2)
        layout.setSpacing(6)
        self.eye = QToolButton(self)
        self.eye.setAutoRaise(True)
        self.eye.setCheckable(True)
        self.eye.setToolTip("Show or hide the layer")
        self.eye.clicked.connect(lambda: panel.set_property(layer, "visible", not layer.visible))
        self.thumb = QLabel(self)
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text = QVBoxLayout()
        text.setSpacing(0)
        self.name = QLabel(self)
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.editor = QLineEdit(self)
        self.editor.setMaxLength(MAX_NAME_CHARS)
        self.editor.hide()
        self.editor.editingFinished.connect(self._finish_rename)
        self.badge = QLabel(self)
        self.badge.setObjectName("hintLabel")
        font = self.badge.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        self.badge.setFont(font)
        text.addWidget(self.name)
        text.addWidget(self.editor)
        text.addWidget(self.badge)
        self.lock = QToolButton(self)
        self.lock.setAutoRaise(True)
        self.lock.setToolTip("Lock the layer against changes")
        self.lock.clicked.connect(lambda: panel.set_property(layer, "locked", not layer.locked))
        layout.addWidget(self.eye)
        layout.addWidget(self.thumb)
        layout.addLayout(text, 1)
        layout.addWidget(self.lock)
        self.refresh()
        self.refresh_thumbnail()

    def refresh(self) -> None:
        layer = self.layer
        self.eye.setIcon(self._eye_on if layer.visible else self._eye_off)
        self.eye.setChecked(layer.visible)
        self.lock.setIcon(self._lock_on if layer.locked else self._lock_off)
        self.name.setText(layer.name)
        mode = "" if layer.blend == "normal" else f" · {layer.blend}"
        self.badge.setText(layer_badge(layer) + mode)
        self.setToolTip(f"{layer.name} — {layer_badge(layer)}")

    def set_selected(self, selected: bool) -> None:
        """The hint colour is unreadable on the selection colour: use the selected text colour there."""
        self.badge.setStyleSheet("color: palette(highlighted-text);" if selected else "")

    def refresh_thumbnail(self) -> None:
        doc = self.panel.document
        self.thumb.setPixmap(layer_thumbnail(self.layer, doc.width, doc.height, THUMB))

    def start_rename(self) -> None:
        self.editor.setText(self.layer.name)
        self.name.hide()
        self.editor.show()
        self.editor.selectAll()
        self.editor.setFocus()

    def _finish_rename(self) -> None:
        if not self.editor.isVisible():
            return
        text = self.editor.text().strip()
        self.editor.hide()
        self.name.show()
        if text and text != self.layer.name:
            self.panel.set_property(self.layer, "name", text)

    def mouseDoubleClickEvent(self, event) -> None:
        self.start_rename()


class LayerList(QListWidget):
    """Top layer first. A drop becomes a MoveLayer command; the list is rebuilt from the document."""

    reordered = Signal(object, int)  # layer, new list row

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(THUMB, THUMB))

    def dropEvent(self, event: QDropEvent) -> None:
        item = self.currentItem()
        layer = item.data(Qt.ItemDataRole.UserRole) if item else None
        super().dropEvent(event)
        event.setDropAction(Qt.DropAction.IgnoreAction)  # the rebuild, not Qt, places the rows
        if layer is not None:
            for row in range(self.count()):
                if self.item(row).data(Qt.ItemDataRole.UserRole) is layer:
                    self.reordered.emit(layer, row)
                    return


class LayersPanel(QWidget):
    add_requested = Signal(str)  # "image", "collage", "reference", "mask", "region", "sketch", "annotation"

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self._rows: dict[str, LayerRow] = {}
        self._dirty_thumbs: set[str] = set()
        self._disconnects: list[Callable[[], None]] = []
        self._opacity_drag = 0
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.setInterval(THUMB_DELAY_MS)
        self._thumb_timer.timeout.connect(self._refresh_dirty_thumbnails)

        self.list = LayerList(self)
        self.list.currentItemChanged.connect(self._on_current_item_changed)
        self.list.reordered.connect(self._on_reordered)
        self.list.itemDoubleClicked.connect(self._on_item_double_clicked)

        self.add_button = QToolButton(self)
        self.add_button.setIcon(icon("add"))
        self.add_button.setToolTip("Add a layer")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.add_button)
        for kind, text, icon_name in (
            ("image", "Image from file…", "layer-image"),
            ("collage", "Collage piece from file…", "layer-collage"),
            ("reference", "Reference image for edit models…", "layer-reference"),
            ("mask", "Mask (inpaint here)", "layer-mask"),
            ("region", "Region (own prompt)", "layer-region"),
            ("sketch", "Sketch scribbles", "layer-scribble"),
            ("annotation", "Annotation scribbles (edit models)", "layer-scribble"),
        ):
            menu.addAction(icon(icon_name), text, lambda k=kind: self.add_requested.emit(k))
        self.add_button.setMenu(menu)
        self.delete_button = self._tool_button("delete", "Delete the selected layer", self.delete_selected)
        self.up_button = self._tool_button("up", "Move the layer up", lambda: self.move_selected(+1))
        self.down_button = self._tool_button("down", "Move the layer down", lambda: self.move_selected(-1))

        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.opacity.setToolTip("Layer opacity")
        self.opacity.valueChanged.connect(self._on_opacity_slider)
        self.opacity.sliderPressed.connect(self._begin_opacity_drag)
        self.opacity_label = QLabel("100 %", self)
        self.opacity_label.setMinimumWidth(40)
        self.blend = QComboBox(self)
        self.blend.setToolTip("How the layer combines with what is below it")
        self.blend.addItems(list(BLEND_MODES))
        self.blend.currentTextChanged.connect(self._on_blend_chosen)
        self.group_button = self._tool_button("add", "Put the selected layer in a new group", self.group_selected)
        self.group_button.setText("Group")
        self.group_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.ungroup_button = self._tool_button("up", "Take the selected layer out of its group", self.ungroup_selected)
        self.ungroup_button.setText("Ungroup")
        self.ungroup_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.collage = QCheckBox("Collage piece", self)
        self.collage.setToolTip("Refine blends this layer's edges into the picture")
        self.collage.clicked.connect(lambda on: self._set_flag("collage", on))
        self.reference = QCheckBox("Reference", self)
        self.reference.setToolTip("Edit models see this image as a reference; it is not part of the picture")
        self.reference.clicked.connect(lambda on: self._set_flag("reference", on))
        self.scribble_mode = QCheckBox("Annotation (edit models only)", self)
        self.scribble_mode.clicked.connect(
            lambda on: self._set_active_property("mode", "annotation" if on else "sketch"))

        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        for b in (self.add_button, self.delete_button, self.up_button, self.down_button, self.group_button,
                  self.ungroup_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity", self))
        opacity_row.addWidget(self.opacity, 1)
        opacity_row.addWidget(self.opacity_label)
        opacity_row.addWidget(self.blend)
        flags = QHBoxLayout()
        flags.addWidget(self.collage)
        flags.addWidget(self.reference)
        flags.addWidget(self.scribble_mode)
        flags.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addWidget(self.list, 1)
        layout.addLayout(opacity_row)
        layout.addLayout(flags)
        layout.addLayout(buttons)
        self.set_document(document)

    def _tool_button(self, icon_name: str, tip: str, slot) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(icon(icon_name))
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # -- document ---------------------------------------------------------------------------------
    def set_document(self, document: Document) -> None:
        self._disconnect()
        self.document = document
        events = document.events
        for signal, slot in ((events.layer_added, self._on_layer_added), (events.layer_removed, self._on_layer_removed),
                             (events.layer_moved, self._on_layer_moved),
                             (events.active_layer_changed, self._on_active_layer_changed)):
            signal.connect(slot)
            self._disconnects.append(lambda s=signal, f=slot: s.disconnect(f))
        self.rebuild()

    def _disconnect(self) -> None:
        for layer_id in list(self._rows):
            self._unwatch(self._rows[layer_id].layer)
        for undo in self._disconnects:
            undo()
        self._disconnects.clear()

    def close_document(self) -> None:
        self._disconnect()
        self._rows.clear()
        self.list.clear()

    def rebuild(self) -> None:
        for row in list(self._rows.values()):
            self._unwatch(row.layer)
        self._rows.clear()
        self.list.blockSignals(True)
        self.list.clear()
        for layer in reversed(self.document.layers):
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, layer)
            row = LayerRow(self, layer)
            item.setSizeHint(row.sizeHint())
            self.list.addItem(item)
            self.list.setItemWidget(item, row)
            self._rows[layer.id] = row
            self._watch(layer)
        self.list.blockSignals(False)
        self._select(self.document.active_layer)
        self._refresh_controls()

    def _watch(self, layer: Layer) -> None:
        layer.events.changed.connect(self._on_layer_changed)
        layer.events.pixels_changed.connect(self._on_layer_pixels_changed)
        layer.events.strokes_changed.connect(self._on_layer_strokes_changed)

    def _unwatch(self, layer: Layer) -> None:
        for signal, slot in ((layer.events.changed, self._on_layer_changed),
                             (layer.events.pixels_changed, self._on_layer_pixels_changed),
                             (layer.events.strokes_changed, self._on_layer_strokes_changed)):
            try:
                signal.disconnect(slot)
            except (ValueError, RuntimeError):
                pass

    def row_of(self, layer: Layer) -> LayerRow | None:
        return self._rows.get(layer.id)

    # -- commands ---------------------------------------------------------------------------------
    def set_property(self, layer: Layer, name: str, value, merge_key: str | None = None) -> None:
        if getattr(layer, name) != value:
            self.document.execute(SetProperty(layer, name, value, merge_key))

    def delete_selected(self) -> None:
        layer = self.document.active_layer
        if layer is not None:
            self.document.execute(RemoveLayer(layer))

    def move_selected(self, delta: int) -> None:
        layer = self.document.active_layer
        if layer is None:
            return
        index = self.document.index_of(layer) + delta
        if 0 <= index < len(self.document.layers):
            self.document.execute(MoveLayer(layer, index))

    def _set_flag(self, name: str, on: bool) -> None:
        layer = self.document.active_layer
        if isinstance(layer, ImageLayer):
            self.set_property(layer, name, bool(on))

    def _set_active_property(self, name: str, value) -> None:
        layer = self.document.active_layer
        if layer is not None:
            self.set_property(layer, name, value)

    def _on_blend_chosen(self, text: str) -> None:
        layer = self.document.active_layer
        if layer is None or not text:
            return
        if isinstance(layer, GroupLayer):
            isolated = text != PASS_THROUGH
            with self.document.history.macro("Change blend mode"):
                if layer.isolated != isolated:
                    self.set_property(layer, "isolated", isolated)
                if text != PASS_THROUGH and layer.blend != text:
                    self.set_property(layer, "blend", text)
        elif text in BLEND_MODES and layer.blend != text:
            self.set_property(layer, "blend", text)

    def group_selected(self) -> None:
        """A new group right above the selected layer, in the same group, holding it (one undo step)."""
        layer = self.document.active_layer
        if layer is None:
            return
        group = GroupLayer(name="Group", group=layer.group)
        with self.document.history.macro("Group"):
            self.document.execute(AddLayer(group, self.document.index_of(layer) + 1))
            self.set_property(layer, "group", group.id)
        self.rebuild()

    def ungroup_selected(self) -> None:
        layer = self.document.active_layer
        parent = self.document.parent_of(layer) if layer is not None else None
        if parent is None:
            return
        with self.document.history.macro("Ungroup"):
            self.set_property(layer, "group", parent.group)
            self.document.execute(MoveLayer(layer, self.document.index_of(parent)))
        self.rebuild()

    def _begin_opacity_drag(self) -> None:
        self._opacity_drag += 1

    def _on_opacity_slider(self, value: int) -> None:
        self.opacity_label.setText(f"{value} %")
        layer = self.document.active_layer
        if layer is None or abs(layer.opacity - value / 100.0) < 1e-6:
            return
        # one undo step per slider drag (or per run of key presses on the slider)
        self.set_property(layer, "opacity", value / 100.0, merge_key=f"opacity-{layer.id}-{self._opacity_drag}")

    # -- events -----------------------------------------------------------------------------------
    def _on_layer_added(self, layer: Layer, index: int) -> None:
        self.rebuild()

    def _on_layer_removed(self, layer: Layer, index: int) -> None:
        self.rebuild()

    def _on_layer_moved(self, layer: Layer, old: int, new: int) -> None:
        self.rebuild()

    def _on_active_layer_changed(self, layer: Layer | None) -> None:
        self._select(layer)
        self._refresh_controls()

    def _on_layer_changed(self, name: str) -> None:
        if name == "group":  # indentation follows membership (undo included)
            self.rebuild()
            return
        for row in self._rows.values():
            row.refresh()
        if name in ("visible", "opacity", "transform", "x", "y", "scale", "rotation", "pixels", "mask", "rect",
                    "color", "strokes"):
            self._dirty_thumbs.update(self._rows)
            self._thumb_timer.start()
        self._refresh_controls()

    def _on_layer_pixels_changed(self, rect) -> None:
        self._dirty_thumbs.update(self._rows)
        self._thumb_timer.start()

    def _on_layer_strokes_changed(self) -> None:
        for row in self._rows.values():
            row.refresh()
        self._dirty_thumbs.update(self._rows)
        self._thumb_timer.start()

    def _refresh_dirty_thumbnails(self) -> None:
        for layer_id in self._dirty_thumbs:
            row = self._rows.get(layer_id)
            if row is not None:
                row.refresh_thumbnail()
        self._dirty_thumbs.clear()

    def _on_current_item_changed(self, current: QListWidgetItem | None, previous) -> None:
        layer = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        if layer is not None and layer is not self.document.active_layer:
            self.document.active_layer = layer

    def _on_item_double_clicked(self, item: QListWidgetItem) -> None:
        row = self.list.itemWidget(item)
        if isinstance(row, LayerRow):
            row.start_rename()

    def _on_reordered(self, layer: Layer, row: int) -> None:
        index = len(self.document.layers) - 1 - row
        if layer in self.document.layers and self.document.index_of(layer) != index:
            self.document.execute(MoveLayer(layer, index))
        else:
            self.rebuild()

    def _select(self, layer: Layer | None) -> None:
        self.list.blockSignals(True)
        self.list.clearSelection()
        for row in range(self.list.count()):
            item = self.list.item(row)
            selected = item.data(Qt.ItemDataRole.UserRole) is layer
            if selected:
                self.list.setCurrentItem(item)
            widget = self.list.itemWidget(item)
            if isinstance(widget, LayerRow):
                widget.set_selected(selected)
        self.list.blockSignals(False)

    def _refresh_controls(self) -> None:
        layer = self.document.active_layer
        has = layer is not None
        self.delete_button.setEnabled(has)
        self.up_button.setEnabled(has and self.document.index_of(layer) < len(self.document.layers) - 1)
        self.down_button.setEnabled(has and self.document.index_of(layer) > 0)
        self.opacity.setEnabled(has)
        self.blend.setEnabled(has)
        self.blend.blockSignals(True)
        is_group = isinstance(layer, GroupLayer)
        has_pass_through = self.blend.findText(PASS_THROUGH) >= 0
        if is_group and not has_pass_through:
            self.blend.addItem(PASS_THROUGH)
        elif not is_group and has_pass_through:
            self.blend.removeItem(self.blend.findText(PASS_THROUGH))
        self.blend.setCurrentText(PASS_THROUGH if is_group and not layer.isolated else (layer.blend if has else "normal"))
        self.blend.blockSignals(False)
        self.group_button.setEnabled(has)
        self.ungroup_button.setEnabled(has and self.document.parent_of(layer) is not None)
        self.opacity.blockSignals(True)
        self.opacity.setValue(round((layer.opacity if has else 1.0) * 100))
        self.opacity.blockSignals(False)
        self.opacity_label.setText(f"{self.opacity.value()} %")
        is_image = isinstance(layer, ImageLayer)
        self.collage.setVisible(is_image)
        self.reference.setVisible(is_image)
        if is_image:
            self.collage.setChecked(layer.collage)
            self.reference.setChecked(layer.reference)
        is_scribble = isinstance(layer, ScribbleLayer)
        self.scribble_mode.setVisible(is_scribble)
        if is_scribble:
            self.scribble_mode.setChecked(layer.mode == "annotation")

