"""The staging strip under the canvas: the finished results as thumbnails, accept / discard / next."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.generation import Staging
from desktop.panels.thumbnails import result_thumbnail

THUMB = 56


class StagingStrip(QFrame):
    """Shown while results wait for a decision. Buttons are the window's actions (same shortcuts)."""

    candidate_clicked = Signal(int)

    def __init__(self, actions: dict[str, QAction], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("stagingStrip")
        self.title = QLabel(self)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.details = QLabel(self)
        self.details.setObjectName("hintLabel")
        self.details.setMinimumWidth(60)
        self.details.setWordWrap(True)
        self.thumbs = QListWidget(self)
        self.thumbs.setFlow(QListWidget.Flow.LeftToRight)
        self.thumbs.setViewMode(QListWidget.ViewMode.IconMode)
        self.thumbs.setIconSize(QSize(THUMB, THUMB))
        self.thumbs.setFixedHeight(THUMB + 14)
        self.thumbs.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.thumbs.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumbs.setMovement(QListWidget.Movement.Static)
        self.thumbs.setWrapping(False)
        self.thumbs.setMaximumWidth(4 * (THUMB + 10) + 6)
        self.thumbs.setMinimumWidth(THUMB + 16)
        self.thumbs.currentRowChanged.connect(self._on_row_changed)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(8)
        text = QWidget(self)
        column = QVBoxLayout(text)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(self.title)
        column.addWidget(self.details)
        layout.addWidget(self.thumbs)
        layout.addWidget(text, 1)
        self.buttons: dict[str, QToolButton] = {}
        for name in ("previous_candidate", "next_candidate", "regenerate", "discard", "accept"):
            button = QToolButton(self)
            button.setDefaultAction(actions[name])
            style = (Qt.ToolButtonStyle.ToolButtonTextBesideIcon if name == "accept"
                     else Qt.ToolButtonStyle.ToolButtonIconOnly)
            button.setToolButtonStyle(style)
            button.setIconSize(QSize(20, 20))
            layout.addWidget(button)
            self.buttons[name] = button
        self._updating = False
        self.hide()

    def show_staging(self, staging: Staging | None) -> None:
        if staging is None:
            self.thumbs.clear()
            self.hide()
            return
        self._updating = True
        try:
            if self.thumbs.count() != staging.count or self.thumbs.property("jobs") != list(staging.key):
                self.thumbs.clear()
                for image in staging.images:
                    self.thumbs.addItem(QListWidgetItem(QIcon(result_thumbnail(image, THUMB)), ""))
                self.thumbs.setProperty("jobs", list(staging.key))
            self.thumbs.setCurrentRow(staging.index)
        finally:
            self._updating = False
        params = staging.parameters
        self.title.setText(f"Result {staging.index + 1} of {staging.count}")
        seed = params.get("seed", staging.job.request.seed)
        bits = [f"seed {seed}", f"{params.get('steps', staging.job.request.steps)} steps",
                str(params.get("sampler", staging.job.request.sampler))]
        if params.get("builtin_model"):
            bits.append("demo model: noise")
        self.details.setText(" · ".join(bits))
        self.details.setToolTip(" · ".join(bits))
        self.buttons["previous_candidate"].setVisible(staging.count > 1)
        self.buttons["next_candidate"].setVisible(staging.count > 1)
        self.show()

    def _on_row_changed(self, row: int) -> None:
        if not self._updating and row >= 0:
            self.candidate_clicked.emit(row)
