"""History of past generations: a thumbnail per job.

Clicking or moving through the list only selects; bringing settings back is the explicit
"Restore settings" button, so no click or key meant for something else changes the settings.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from desktop.actions import icon
from desktop.generation import Job, JobState
from desktop.panels.thumbnails import result_thumbnail

THUMB = 64
STATE_TEXT = {
    JobState.QUEUED: "waiting",
    JobState.RUNNING: "running…",
    JobState.FINISHED: "",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}


class HistoryPanel(QWidget):
    restore_requested = Signal(object)  # Job

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._items: dict[int, QListWidgetItem] = {}
        self._jobs: dict[int, Job] = {}
        self.list = QListWidget(self)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setSpacing(2)
        self.list.setWordWrap(True)
        # Rows wrap to the dock's width: a long prompt is never a sideways scroll bar.
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.hint = QLabel("Past generations appear here. Select one and press Restore settings to bring "
                           "its settings back.", self)
        self.hint.setObjectName("hintLabel")
        self.hint.setWordWrap(True)
        self.restore_button = QPushButton(icon("history"), "Restore settings", self)
        self.restore_button.setEnabled(False)
        self.restore_button.clicked.connect(lambda: self._on_item_activated(self.list.currentItem()))
        self.list.currentItemChanged.connect(lambda item, _: self.restore_button.setEnabled(item is not None))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.hint)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.restore_button)

    def job_changed(self, job: Job) -> None:
        """Add or update the row of a job (newest on top)."""
        item = self._items.get(job.id)
        if item is None:
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, job.id)
            self.list.insertItem(0, item)
            self._items[job.id] = item
        self._jobs[job.id] = job
        item.setText(describe(job))
        item.setToolTip(job.request.prompt or "(no prompt)")
        if job.images:
            item.setIcon(QIcon(result_thumbnail(job.images[0], THUMB)))
        else:
            item.setIcon(QIcon(_state_pixmap(job.state)))
        self.hint.setVisible(not self._items)

    def jobs(self) -> list[Job]:
        return [self._jobs[self.list.item(i).data(Qt.ItemDataRole.UserRole)] for i in range(self.list.count())]

    def _on_item_activated(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        job = self._jobs.get(item.data(Qt.ItemDataRole.UserRole))
        if job is not None:
            self.restore_requested.emit(job)


def describe(job: Job) -> str:
    request = job.request
    seeds = sorted({p.get("seed") for p in job.parameters if "seed" in p})
    seed = f"seed {seeds[0]}" + (f"+{len(seeds) - 1}" if len(seeds) > 1 else "") if seeds else (
        f"seed {request.seed}" if request.seed >= 0 else "random seed")
    when = time.strftime("%H:%M", time.localtime(time.time() - (time.monotonic() - job.created)))
    state = STATE_TEXT[job.state]
    lines = [job.title, f"{request.mode} · {request.steps} steps · {seed} · {when}"]
    if state:
        lines.append(state + (f": {job.message}" if job.message else ""))
    return "\n".join(lines)


def _state_pixmap(state: JobState) -> QPixmap:
    pix = QPixmap(THUMB, THUMB)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = {JobState.FAILED: QColor(200, 70, 60), JobState.CANCELLED: QColor(140, 140, 140)}.get(
        state, QColor(90, 130, 200))
    painter.setBrush(color)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawRoundedRect(6, 6, THUMB - 12, THUMB - 12, 8, 8)
    painter.end()
    return pix
