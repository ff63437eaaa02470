"""Region inspector: the selected region layer's prompt, negative prompt, strength and LoRAs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from canvas.model.commands import ReplacePixels, SetProperty
from canvas.model.document import Document
from canvas.model.layers import Layer, LoraRef, RegionLayer
from desktop.panels.binding import EditBursts, LoraList, PromptEdit


class RegionInspector(QWidget):
    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.layer: RegionLayer | None = None
        self._bursts = EditBursts()

        self.hint = QLabel("Select a region layer to edit its prompt.\n\nDraw one with the region box tool (R): "
                           "each region gets its own prompt, and the base prompt applies everywhere.", self)
        self.hint.setObjectName("hintLabel")
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.editor = QWidget(self)
        self.title = QLabel(self.editor)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.color_button = QPushButton(self.editor)
        self.color_button.setFixedSize(28, 22)
        self.color_button.setToolTip("Region colour on the canvas")
        self.color_button.clicked.connect(self._choose_color)
        self.prompt = PromptEdit("What this region shows, e.g. “a red fox sitting”", 3, self.editor)
        self.prompt.edited.connect(lambda text: self._set("prompt", text, merge=True))
        self.prompt.finished.connect(lambda: self._bursts.end("prompt"))
        self.negative = PromptEdit("What to avoid in this region", 2, self.editor)
        self.negative.edited.connect(lambda text: self._set("negative", text, merge=True))
        self.negative.finished.connect(lambda: self._bursts.end("negative"))
        self.prompt.history_step = lambda redo: self._typing_step("prompt", redo)
        self.negative.history_step = lambda redo: self._typing_step("negative", redo)
        self.strength_slider = QSlider(Qt.Orientation.Horizontal, self.editor)
        self.strength_slider.setRange(0, 200)
        self.strength_slider.valueChanged.connect(lambda v: self._set_strength(v / 100.0))
        self.strength_slider.sliderReleased.connect(lambda: self._bursts.end("strength"))
        self.strength = QDoubleSpinBox(self.editor)
        self.strength.setRange(0.0, 2.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setToolTip("How strongly the region follows its prompt (0–2, 1 = normal)")
        self.strength.valueChanged.connect(self._set_strength)
        self.loras = LoraList(self.editor)
        self.loras.changed.connect(self._on_loras_changed)
        self.shape = QLabel(self.editor)
        self.shape.setObjectName("hintLabel")
        self.to_rect = QPushButton("Use the rectangle", self.editor)
        self.to_rect.setToolTip("Forget the painted mask and use the region's rectangle again")
        self.to_rect.clicked.connect(self._back_to_rectangle)

        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.color_button)
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength)
        shape_row = QHBoxLayout()
        shape_row.addWidget(self.shape, 1)
        shape_row.addWidget(self.to_rect)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Prompt", self.prompt)
        form.addRow("Negative", self.negative)
        form.addRow("Strength", strength_row)
        form.addRow("LoRAs", self.loras)
        editor_layout = QVBoxLayout(self.editor)
        editor_layout.setContentsMargins(0, 0, 0, 0)
        editor_layout.addLayout(header)
        editor_layout.addLayout(form)
        editor_layout.addLayout(shape_row)
        editor_layout.addStretch(1)

        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.hint)
        self.stack.addWidget(self.editor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.stack)
        self.set_document(document)

    # -- document ---------------------------------------------------------------------------------
    def set_document(self, document: Document) -> None:
        if self.document is not None:
            try:
                self.document.events.active_layer_changed.disconnect(self._on_active_layer_changed)
            except (ValueError, RuntimeError):
                pass
        self.document = document
        document.events.active_layer_changed.connect(self._on_active_layer_changed)
        self._on_active_layer_changed(document.active_layer)

    def close_document(self) -> None:
        self._watch(None)
        try:
            self.document.events.active_layer_changed.disconnect(self._on_active_layer_changed)
        except (ValueError, RuntimeError):
            pass

    def set_available_loras(self, names: list[str]) -> None:
        self.loras.set_available(names)

    def _on_active_layer_changed(self, layer: Layer | None) -> None:
        self._watch(layer if isinstance(layer, RegionLayer) else None)

    def _watch(self, layer: RegionLayer | None) -> None:
        if self.layer is not None:
            try:
                self.layer.events.changed.disconnect(self._on_layer_changed)
            except (ValueError, RuntimeError):
                pass
        self.layer = layer
        self._bursts.end()
        if layer is None:
            self.stack.setCurrentWidget(self.hint)
            return
        layer.events.changed.connect(self._on_layer_changed)
        self.stack.setCurrentWidget(self.editor)
        self._refresh()

    def _on_layer_changed(self, name: str) -> None:
        self._refresh()

    def _refresh(self) -> None:
        layer = self.layer
        if layer is None:
            return
        self.title.setText(layer.name)
        color = QColor(layer.color) if QColor(layer.color).isValid() else QColor(224, 96, 79)
        self.color_button.setStyleSheet(f"background: {color.name()}; border-radius: 4px;")
        self.prompt.set_text(layer.prompt)
        self.negative.set_text(layer.negative)
        for widget, value in ((self.strength, layer.strength), (self.strength_slider, round(layer.strength * 100))):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self.loras.set_values([(lora.name, lora.weight) for lora in layer.loras])
        x, y, w, h = layer.rect
        painted = layer.mask is not None
        self.shape.setText("Shape: painted mask" if painted else f"Shape: rectangle {w}×{h} at ({x}, {y})")
        self.to_rect.setVisible(painted)
        for widget in (self.prompt, self.negative, self.strength, self.strength_slider, self.loras):
            widget.setEnabled(not layer.locked)

    # -- edits ------------------------------------------------------------------------------------
    def _set(self, name: str, value, merge: bool = False) -> None:
        layer = self.layer
        if layer is None or getattr(layer, name) == value:
            return
        key = f"region-{layer.id}-{self._bursts.key(name)}" if merge else None
        self.document.execute(SetProperty(layer, name, value, key))

    def _typing_step(self, name: str, redo: bool) -> bool:
        """Ctrl+Z / Ctrl+Shift+Z in the region's prompt: the document's step if it is that typing."""
        history = self.document.history
        step = history.next_redo if redo else history.next_undo
        if not (isinstance(step, SetProperty) and step.layer is self.layer and step.name == name):
            return False
        self._bursts.end(name)
        self.document.redo() if redo else self.document.undo()
        return True

    def _set_strength(self, value: float) -> None:
        value = round(float(value), 2)
        self._set("strength", min(max(value, 0.0), 2.0), merge=True)

    def _on_loras_changed(self, values: list) -> None:
        self._set("loras", tuple(LoraRef(name, float(weight)) for name, weight in values))

    def _choose_color(self) -> None:
        if self.layer is None:
            return
        color = QColorDialog.getColor(QColor(self.layer.color), self, "Region colour")
        if color.isValid():
            self._set("color", color.name())

    def _back_to_rectangle(self) -> None:
        if self.layer is not None and self.layer.mask is not None:
            self.document.execute(ReplacePixels(self.layer, "mask", None, "Use region rectangle"))
