"""The first-run card, over the canvas: where models go, and that the built-in tiny models try every mode.

It shows when discovery found no model of the user's own and the user has not dismissed it; once
dismissed (closed, or the demo model picked) the window saves that in the settings and it does not
come back at the next start.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.actions import icon

CARD_WIDTH = 460  # at most; a narrow canvas gets a narrower card
MARGIN = 16  # from the canvas's edges


class FirstRunCard(QFrame):
    add_folder_requested = Signal()
    open_folder_requested = Signal()
    demo_requested = Signal()
    dismissed = Signal()

    def __init__(self, over: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("firstRunCard")
        self.setAutoFillBackground(True)
        self._over = over  # the canvas view it floats above (top centre), following its size
        over.installEventFilter(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 10, 12)
        layout.setSpacing(8)
        title = QLabel("No models found yet", self)
        font = title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        title.setFont(font)
        self.close_button = QToolButton(self)
        self.close_button.setIcon(icon("discard"))
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Close (this card does not come back)")
        self.close_button.clicked.connect(self._dismiss)
        header = QHBoxLayout()
        header.addWidget(title, 1)
        header.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.where = QLabel(self)
        self.where.setWordWrap(True)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.how = QLabel(
            "Put Stable Diffusion 1.5, SDXL or FLUX.1 checkpoints (.safetensors) or diffusers folders there, or add "
            "the models folder of your A1111 or ComfyUI install. Nothing is ever downloaded.", self)
        self.how.setWordWrap(True)
        self.builtin = QLabel(
            "Until then the built-in tiny models let you try every mode, Edit included: they run the whole "
            "workflow with random weights, so they draw noise.", self)
        self.builtin.setWordWrap(True)
        self.builtin.setObjectName("hintLabel")
        add_folder = QPushButton(icon("folder-add"), "Add models folder…", self)
        add_folder.setToolTip("A folder with checkpoints, or your A1111 / ComfyUI install (detected automatically)")
        add_folder.clicked.connect(self.add_folder_requested)
        self.open_button = QPushButton(icon("open"), "Open folder", self)
        self.open_button.setToolTip("Open the default models folder in the file manager")
        self.open_button.clicked.connect(self.open_folder_requested)
        self.demo_button = QPushButton("Try a demo model", self)
        self.demo_button.setToolTip("builtin:tiny-sd15: random weights, the picture is noise")
        self.demo_button.clicked.connect(self._try_demo)
        buttons = QHBoxLayout()
        buttons.addWidget(add_folder)
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        demo_row = QHBoxLayout()
        demo_row.addStretch(1)
        demo_row.addWidget(self.demo_button)
        layout.addLayout(header)
        layout.addWidget(self.where)
        layout.addWidget(self.how)
        layout.addWidget(self.builtin)
        layout.addLayout(buttons)
        layout.addLayout(demo_row)
        self.hide()

    def set_folders(self, folders: list[Path]) -> None:
        """The folders discovery looks in, the default models folder first."""
        shown = list(dict.fromkeys(str(folder) for folder in folders))
        lines = "".join(f"<br>&nbsp;&nbsp;<code>{_escape(folder)}</code>" for folder in shown)
        self.where.setText(f"Collagen looks for models in {'this folder' if len(shown) == 1 else 'these folders'}:"
                           f"{lines}")

    def show_card(self) -> None:
        self.show()
        self.raise_()
        self.place()

    def place(self) -> None:
        view = self._over.geometry()
        width = max(min(CARD_WIDTH, view.width() - 2 * MARGIN), 200)
        # wrapped labels: the height that width needs (adjustSize would squeeze them into one line each)
        self.setFixedSize(width, self.layout().totalHeightForWidth(width))
        self.move(view.x() + (view.width() - width) // 2, view.y() + MARGIN)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._over and event.type() in (QEvent.Type.Resize, QEvent.Type.Move) and self.isVisible():
            self.place()
        return False

    def _try_demo(self) -> None:
        self.demo_requested.emit()
        self._dismiss()

    def _dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
