"""Small helpers shared by the panels: undo merge keys for typing bursts, plain-text fields, LoRA lists."""

from __future__ import annotations

import itertools
import time
from typing import Callable

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QMainWindow,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.actions import icon

BURST_GAP_S = 2.0  # a pause this long while typing starts a new undo step


class EditBursts:
    """Merge keys so that one burst of typing (or one slider drag) is one undo step.

    A burst ends when the widget loses focus or after a pause of BURST_GAP_S; the next edit of the
    same field then gets a new key, so it does not merge into the previous step.
    """

    def __init__(self):
        self._counter = itertools.count()
        self._keys: dict[str, tuple[str, float]] = {}

    def key(self, field: str) -> str:
        now = time.monotonic()
        current = self._keys.get(field)
        if current is None or now - current[1] > BURST_GAP_S:
            current = (f"{field}#{next(self._counter)}", now)
        self._keys[field] = (current[0], now)
        return current[0]

    def end(self, field: str | None = None) -> None:
        if field is None:
            self._keys.clear()
        else:
            self._keys.pop(field, None)


class WheelGuard(QObject):
    """The wheel over a field that does not have focus scrolls the panel instead of changing the value.

    Spin boxes, combo boxes and sliders take the wheel only once clicked or tabbed into (as in
    Krita and Blender); until then a wheel event is handed to the scroll area's scroll bar.
    """

    def __init__(self, scroll_area: QAbstractScrollArea, parent: QObject | None = None):
        super().__init__(parent)
        self.scroll_area = scroll_area

    def watch(self, field: QWidget) -> None:
        field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel alone never gives it focus
        field.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            QCoreApplication.sendEvent(self.scroll_area.verticalScrollBar(), event)
            return True
        return False


class PromptEdit(QPlainTextEdit):
    """A few lines of plain text; emits `edited(text)` on user edits only, `finished` on focus out.

    Its typing is recorded in the document's history, so Ctrl+Z / Ctrl+Shift+Z here are not the
    widget's own undo (which would record the undone text as a new step and throw Redo away): they
    take back (or redo) the document's step when it is this field's typing, and never another one
    (the canvas's): `history_step(redo)`, set by the panel, does that and says whether it could.
    """

    edited = Signal(str)
    finished = Signal()
    NOTHING_TO_UNDO = ("Nothing typed in this field to {}; Ctrl+Z over the canvas undoes the canvas.")

    def __init__(self, placeholder: str, lines: int = 3, parent: QWidget | None = None):
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        height = self.fontMetrics().lineSpacing() * lines + 14
        self.setMinimumHeight(height)
        self.setMaximumHeight(height + self.fontMetrics().lineSpacing() * 3)
        self._setting = False
        self.history_step: Callable[[bool], bool] | None = None
        self.setUndoRedoEnabled(False)  # the document's history is the one undo (see the class note)
        self.textChanged.connect(self._on_text_changed)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and _undo_key(event) is not None:
            event.accept()  # Ctrl+Z here is this field's, never the window's (the canvas's) Undo
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        which = _undo_key(event)
        if which is None:
            super().keyPressEvent(event)
            return
        if self.history_step is not None and self.history_step(which == "redo"):
            return
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(self.NOTHING_TO_UNDO.format(which), 5000)

    def set_text(self, text: str) -> None:
        """Programmatic update (undo, another document) that keeps the cursor where it makes sense."""
        if text == self.toPlainText():
            return
        self._setting = True
        try:
            cursor = self.textCursor()
            position = cursor.position()
            self.setPlainText(text)
            cursor = self.textCursor()
            cursor.setPosition(min(position, len(text)))
            self.setTextCursor(cursor)
        finally:
            self._setting = False

    def _on_text_changed(self) -> None:
        if not self._setting:
            self.edited.emit(self.toPlainText())

    def focusOutEvent(self, event) -> None:
        super().focusOutEvent(event)
        self.finished.emit()


def _undo_key(event) -> str | None:
    if event.matches(QKeySequence.StandardKey.Undo):
        return "undo"
    if event.matches(QKeySequence.StandardKey.Redo) or (
            event.key() == Qt.Key.Key_Z and event.modifiers() == (Qt.KeyboardModifier.ControlModifier
                                                                   | Qt.KeyboardModifier.ShiftModifier)):
        return "redo"
    return None


class LoraList(QWidget):
    """Rows of (LoRA name, weight) with add/remove; `changed(list of (name, weight))` on user edits."""

    changed = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._available: list[str] = []
        self._rows: list[tuple[QComboBox, QDoubleSpinBox, QWidget]] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.add_button = QToolButton(self)
        self.add_button.setText("Add LoRA")
        self.add_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.add_button.setIcon(icon("add"))
        self.add_button.clicked.connect(self._add_clicked)
        self._layout.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignLeft)
        self._emitting = True
        self.wheel_guard: WheelGuard | None = None  # set by a panel that scrolls: rows added later are guarded

    def set_available(self, names: list[str]) -> None:
        self._available = list(names)
        for combo, _, _ in self._rows:
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(sorted(set(self._available) | {current}))
            combo.setCurrentText(current)
            combo.blockSignals(False)
        self.add_button.setToolTip("" if names else "No LoRA files were found in the model folders (loras/ or Lora/).")

    @property
    def available(self) -> list[str]:
        """The discovered LoRA names the rows offer."""
        return list(self._available)

    def values(self) -> list[tuple[str, float]]:
        return [(combo.currentText().strip(), spin.value()) for combo, spin, _ in self._rows
                if combo.currentText().strip()]

    def set_values(self, values: list[tuple[str, float]]) -> None:
        if values == self.values() and len(values) == len(self._rows):
            return
        self._emitting = False
        try:
            while self._rows:
                self._remove_row(self._rows[-1][2], emit=False)
            for name, weight in values:
                self._add_row(str(name), float(weight))
        finally:
            self._emitting = True

    def _add_clicked(self) -> None:
        name = self._available[0] if self._available else ""
        self._add_row(name, 1.0)
        self._emit()

    def _add_row(self, name: str, weight: float) -> None:
        row = QWidget(self)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        combo = QComboBox(row)
        combo.setEditable(True)
        combo.addItems(sorted(set(self._available) | ({name} if name else set())))
        combo.setCurrentText(name)
        combo.setToolTip("LoRA file name (without extension) from the model folders")
        spin = QDoubleSpinBox(row)
        spin.setRange(-4.0, 4.0)
        spin.setSingleStep(0.05)
        spin.setDecimals(2)
        spin.setValue(weight)
        spin.setToolTip("LoRA weight")
        remove = QToolButton(row)
        remove.setIcon(icon("discard"))
        remove.setToolTip("Remove this LoRA")
        remove.setAutoRaise(True)
        remove.clicked.connect(lambda: self._remove_row(row))
        combo.currentTextChanged.connect(lambda _: self._emit())
        spin.valueChanged.connect(lambda _: self._emit())
        layout.addWidget(combo, 1)
        layout.addWidget(spin)
        layout.addWidget(remove)
        if self.wheel_guard is not None:
            self.wheel_guard.watch(combo)
            self.wheel_guard.watch(spin)
        self._rows.append((combo, spin, row))
        self._layout.insertWidget(self._layout.count() - 1, row)

    def _remove_row(self, row: QWidget, emit: bool = True) -> None:
        self._rows = [r for r in self._rows if r[2] is not row]
        row.setParent(None)
        row.deleteLater()
        if emit:
            self._emit()

    def _emit(self) -> None:
        if self._emitting:
            self.changed.emit(self.values())
