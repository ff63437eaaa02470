"""Every generated image the project keeps, newest first: place one back as a layer, or compare it.

The list shows the document's Generations store (canvas.model.generations). Thumbnails are
decoded a few at a time after the list is built, so a project with hundreds of kept images opens
without a pause; each is decoded once and cached by entry id.
"""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from canvas.io.png_info import format_parameters
from canvas.model.generations import Generation, GenerationError, Generations, MiB
from desktop.actions import icon
from desktop.panels.thumbnails import image_thumbnail

THUMB = 64
THUMBS_PER_TICK = 4  # decoded per event-loop turn while the list fills in
COMPARE_SIDE = 420  # px: each picture of the compare dialog fits this box


class GenerationsPanel(QWidget):
    place_requested = Signal(str)  # entry id
    compare_requested = Signal(str)  # entry id
    reuse_requested = Signal(str)  # entry id: its parameters into the panel (the Use Parameters dialog)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._store: Generations | None = None
        self._thumbs: dict[str, QPixmap] = {}
        self._items: dict[str, QListWidgetItem] = {}
        self._pending: list[str] = []
        self.list = QListWidget(self)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setSpacing(2)
        self.list.setWordWrap(True)
        self.hint = QLabel("Every generated image is kept here with its settings, accepted or not, and saved "
                           "with the project. Select one to place it back as a layer or compare it with the "
                           "canvas.", self)
        self.hint.setObjectName("hintLabel")
        self.hint.setWordWrap(True)
        self.usage = QLabel(self)
        self.usage.setObjectName("hintLabel")
        self.place_button = QPushButton(icon("layer-image"), "Place as layer", self)
        self.compare_button = QPushButton("Compare", self)
        self.compare_button.setToolTip("This generation beside the canvas as it is now, with its parameters")
        self.reuse_button = QPushButton(icon("history"), "Use settings", self)
        self.reuse_button.setToolTip("Put this generation's prompt, seed, sampler, steps, model… into the panel "
                                     "(you see what changes first)")
        for button, signal in ((self.place_button, self.place_requested), (self.compare_button, self.compare_requested),
                               (self.reuse_button, self.reuse_requested)):
            button.setEnabled(False)
            button.clicked.connect(lambda checked=False, s=signal: self._emit_selected(s))
        self.list.currentItemChanged.connect(self._on_current_changed)
        self.list.itemDoubleClicked.connect(lambda item: self._emit_selected(self.compare_requested))
        buttons = QGridLayout()
        buttons.addWidget(self.place_button, 0, 0, 1, 2)
        buttons.addWidget(self.compare_button, 1, 0)
        buttons.addWidget(self.reuse_button, 1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.hint)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.usage)
        layout.addLayout(buttons)
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._decode_some)

    # -- the store ------------------------------------------------------------------------------
    def set_store(self, store: Generations | None) -> None:
        if self._store is not None:
            self._store.changed.disconnect(self.refresh)
        self._store = store
        self._thumbs.clear()
        if store is not None:
            store.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the rows from the store (newest on top), keeping the selection."""
        selected = self.selected_id()
        entries = list(self._store) if self._store is not None else []
        self.list.blockSignals(True)
        self.list.clear()
        self._items = {}
        for entry in reversed(entries):
            item = QListWidgetItem(describe(entry))
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(str(entry.record.get("prompt") or "(no prompt)"))
            thumb = self._thumbs.get(entry.id)
            if thumb is not None:
                item.setIcon(QIcon(thumb))
            self.list.addItem(item)
            self._items[entry.id] = item
            if entry.id == selected:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        known = {e.id for e in entries}
        self._thumbs = {k: v for k, v in self._thumbs.items() if k in known}
        self._pending = [e.id for e in reversed(entries) if e.id not in self._thumbs]
        if self._pending:
            self._timer.start()
        self.hint.setVisible(not entries)
        store = self._store
        self.usage.setText(f"{len(entries)} kept · {store.total_bytes / MiB:.1f} of {store.budget_bytes // MiB} MB"
                           if store is not None and entries else "")
        self._on_current_changed(self.list.currentItem(), None)

    def selected_id(self) -> str:
        item = self.list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    def select(self, entry_id: str) -> None:
        item = self._items.get(entry_id)
        if item is not None:
            self.list.setCurrentItem(item)

    def thumbnails_done(self) -> bool:
        return not self._pending

    # -- internals -------------------------------------------------------------------------------
    def _decode_some(self) -> None:
        for _ in range(THUMBS_PER_TICK):
            if not self._pending:
                break
            entry_id = self._pending.pop(0)
            entry = self._store.get(entry_id) if self._store is not None else None
            if entry is None:
                continue
            try:
                thumb = image_thumbnail(entry.pixels(), THUMB)
            except (GenerationError, MemoryError):
                thumb = icon("warning").pixmap(THUMB, THUMB)
            self._thumbs[entry_id] = thumb
            item = self._items.get(entry_id)
            if item is not None:
                item.setIcon(QIcon(thumb))
        if not self._pending:
            self._timer.stop()

    def _on_current_changed(self, item: QListWidgetItem | None, _previous) -> None:
        for button in (self.place_button, self.compare_button, self.reuse_button):
            button.setEnabled(item is not None)

    def _emit_selected(self, signal) -> None:
        entry_id = self.selected_id()
        if entry_id:
            signal.emit(entry_id)


def describe(entry: Generation) -> str:
    record = entry.record
    seed = record.get("seed")
    when = time.strftime("%d %b %H:%M", time.localtime(entry.created))
    facts = [str(record.get("mode") or "generate"), f"seed {seed}" if seed is not None else "",
             f"{entry.width}×{entry.height}", when]
    lines = [entry.title, " · ".join(f for f in facts if f)]
    if entry.accepted:
        lines.append("accepted")
    return "\n".join(lines)


class CompareDialog(QDialog):
    """A kept generation beside the canvas as it is now, with the generation's parameters."""

    def __init__(self, entry: Generation, generated: np.ndarray, canvas: np.ndarray, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare generation")
        grid = QGridLayout()
        for column, (caption, image) in enumerate((("This generation", generated), ("The canvas now", canvas))):
            title = QLabel(f"<b>{caption}</b>", self)
            picture = QLabel(self)
            picture.setPixmap(image_thumbnail(image, COMPARE_SIDE))
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(title, 0, column)
            grid.addWidget(picture, 1, column)
        self.parameters = QLabel(format_parameters(entry.record, entry.width, entry.height), self)
        self.parameters.setWordWrap(True)
        self.parameters.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.place_button = QPushButton(icon("layer-image"), "Place as layer", self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.addButton(self.place_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.parameters)
        layout.addWidget(buttons)
