"""Options of the active canvas tool (size, hardness, pen colour) for the top tool bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from canvas.view.canvas_view import CanvasView


class ToolOptions(QWidget):
    """Shows what the active tool has: `size`/`set_size`, `set_hardness`, `color`/`set_color`."""

    def __init__(self, view: CanvasView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.tool_label = QLabel(self)
        font = self.tool_label.font()
        font.setBold(True)
        self.tool_label.setFont(font)
        self.size_label = QLabel("Size", self)
        self.size = QDoubleSpinBox(self)
        self.size.setRange(1.0, 2000.0)
        self.size.setDecimals(0)
        self.size.setSuffix(" px")
        self.size.setToolTip("Brush size ([ and ] change it)")
        self.size.valueChanged.connect(self._on_size)
        self.hardness_label = QLabel("Hardness", self)
        self.hardness = QSlider(Qt.Orientation.Horizontal, self)
        self.hardness.setRange(0, 100)
        self.hardness.setFixedWidth(90)
        self.hardness.valueChanged.connect(self._on_hardness)
        self.color_label = QLabel("Colour", self)
        self.color = QPushButton(self)
        self.color.setFixedSize(36, 22)
        self.color.setToolTip("Pen colour (the eyedropper picks one from the picture)")
        self.color.clicked.connect(self._choose_color)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        layout.setSpacing(6)
        for widget in (self.tool_label, self.size_label, self.size, self.hardness_label, self.hardness,
                       self.color_label, self.color):
            layout.addWidget(widget)
        layout.addStretch(1)
        self._watched = None
        view.tool_changed.connect(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        tool = self.view.tool
        if self._watched is not tool:
            if self._watched is not None:
                try:
                    self._watched.options_changed.disconnect(self.refresh)
                except (RuntimeError, TypeError):
                    pass
            tool.options_changed.connect(self.refresh)
            self._watched = tool
        self.tool_label.setText(tool.label)
        has_size = hasattr(tool, "size") and hasattr(tool, "set_size")
        for widget in (self.size_label, self.size):
            widget.setVisible(has_size)
        if has_size:
            self.size.blockSignals(True)
            self.size.setValue(float(tool.size))
            self.size.blockSignals(False)
        brush = getattr(tool, "brush", None)
        has_hardness = brush is not None and hasattr(tool, "set_hardness")
        for widget in (self.hardness_label, self.hardness):
            widget.setVisible(has_hardness)
        if has_hardness:
            self.hardness.blockSignals(True)
            self.hardness.setValue(round(brush.hardness * 100))
            self.hardness.blockSignals(False)
        color = getattr(tool, "color", None)
        if color is None:
            color = getattr(self.view.tools.get("scribble"), "color", None) if self.view.tool_name == "eyedropper" \
                else None
        has_color = color is not None
        for widget in (self.color_label, self.color):
            widget.setVisible(has_color)
        if has_color:
            self.color.setStyleSheet(f"background: {QColor(color).name()}; border-radius: 4px;")

    def _on_size(self, value: float) -> None:
        tool = self.view.tool
        if hasattr(tool, "set_size"):
            tool.set_size(float(value))
            self.view.refresh_overlay()

    def _on_hardness(self, value: int) -> None:
        tool = self.view.tool
        if hasattr(tool, "set_hardness"):
            tool.set_hardness(value / 100.0)

    def _choose_color(self) -> None:
        pen = self.view.tools.get("scribble")
        if pen is None:
            return
        color = QColorDialog.getColor(QColor(pen.color), self, "Pen colour")
        if color.isValid():
            pen.set_color(color)
            self.refresh()
