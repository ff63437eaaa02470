"""Dialogs: errors (one sentence), questions, New document, Settings, autosave restore, models folder.

Messages go through QMessageBox's static functions, so every error the user sees is one
sentence in a dialog and the window stays usable afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from canvas.model.document import MAX_DOCUMENT_SIDE
from desktop.autosave import Orphan
from desktop.settings import (
    DEVICES,
    FAST_PATH_SETTINGS,
    GENERATIONS_MB_RANGE,
    PREVIEW_METHODS,
    THEMES,
    AppSettings,
)

APP_TITLE = "Collagen"

SIZE_PRESETS = (
    ("SD 1.5 square", 512, 512),
    ("SD 1.5 landscape", 768, 512),
    ("SD 1.5 portrait", 512, 768),
    ("SDXL square", 1024, 1024),
    ("SDXL landscape 4:3", 1152, 896),
    ("SDXL portrait 3:4", 896, 1152),
    ("SDXL landscape 3:2", 1216, 832),
    ("SDXL portrait 2:3", 832, 1216),
    ("SDXL wide 16:9", 1344, 768),
)


def show_error(parent: QWidget | None, message: str, title: str = APP_TITLE) -> None:
    QMessageBox.warning(parent, title, message)


def show_info(parent: QWidget | None, message: str, title: str = APP_TITLE) -> None:
    QMessageBox.information(parent, title, message)


def ask_yes_no(parent: QWidget | None, message: str, title: str = APP_TITLE) -> bool:
    answer = QMessageBox.question(parent, title, message, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def ask_save_changes(parent: QWidget | None, name: str) -> str:
    """'save', 'discard' or 'cancel' for a document with unsaved changes."""
    buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
               | QMessageBox.StandardButton.Cancel)
    answer = QMessageBox.question(parent, APP_TITLE, f"Save the changes to {name} first?", buttons,
                                  QMessageBox.StandardButton.Save)
    if answer == QMessageBox.StandardButton.Save:
        return "save"
    if answer == QMessageBox.StandardButton.Discard:
        return "discard"
    return "cancel"


def ask_overwrite_changed_file(parent: QWidget | None, path: Path) -> bool:
    return ask_yes_no(parent, f"{path.name} was changed on disk since it was opened here. Overwrite it anyway?")


def ask_restore(parent: QWidget | None, orphan: Orphan) -> str:
    """'restore', 'discard' or 'later' for what a crashed session left behind."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(APP_TITLE)
    box.setText(f"Collagen did not close properly last time. Restore the autosave of {orphan.title}?")
    restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
    discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(restore)
    box.exec()
    clicked = box.clickedButton()
    if clicked is restore:
        return "restore"
    if clicked is discard:
        return "discard"
    return "later"


@dataclass(frozen=True)
class NewDocumentChoice:
    width: int
    height: int
    background: str  # "transparent" or "white"


class NewDocumentDialog(QDialog):
    """Size presets for SD 1.5 and SDXL, or a custom size (multiples of 8, as the models need)."""

    def __init__(self, parent: QWidget | None = None, width: int = 512, height: int = 512):
        super().__init__(parent)
        self.setWindowTitle("New picture")
        self.presets = QListWidget(self)
        for name, w, h in SIZE_PRESETS:
            self.presets.addItem(f"{name} — {w} × {h}")
        self.presets.addItem("Custom")
        self.presets.currentRowChanged.connect(self._on_preset)
        self.note = QLabel(self)
        self.note.setObjectName("hintLabel")
        self.width_box = QSpinBox(self)
        self.height_box = QSpinBox(self)
        for box in (self.width_box, self.height_box):
            box.setRange(8, MAX_DOCUMENT_SIDE)
            box.setSingleStep(8)
            box.setSuffix(" px")
            box.valueChanged.connect(self._on_size_edited)
        self.width_box.setValue(width)
        self.height_box.setValue(height)
        self.transparent = QRadioButton("Empty (generate from text)", self)
        self.white = QRadioButton("White background", self)
        self.transparent.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.transparent)
        group.addButton(self.white)
        form = QFormLayout()
        form.addRow("Width", self.width_box)
        form.addRow("Height", self.height_box)
        form.addRow("Start with", self.transparent)
        form.addRow("", self.white)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.presets, 1)
        right = QVBoxLayout()
        right.addLayout(form)
        right.addWidget(self.note)
        right.addStretch(1)
        row.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(buttons)
        self._select_matching_preset()

    def _on_preset(self, row: int) -> None:
        if 0 <= row < len(SIZE_PRESETS):
            _, w, h = SIZE_PRESETS[row]
            for box, value in ((self.width_box, w), (self.height_box, h)):
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)
        self._update_note()

    def _on_size_edited(self) -> None:
        self._select_matching_preset()

    def _select_matching_preset(self) -> None:
        size = (self.width_box.value(), self.height_box.value())
        row = next((i for i, (_, w, h) in enumerate(SIZE_PRESETS) if (w, h) == size), len(SIZE_PRESETS))
        self.presets.blockSignals(True)
        self.presets.setCurrentRow(row)
        self.presets.blockSignals(False)
        self._update_note()

    def _update_note(self) -> None:
        w, h = self.width_box.value(), self.height_box.value()
        self.note.setText("" if w % 8 == 0 and h % 8 == 0 else
                          "Generation needs a multiple of 8 px on each side; the size will be rounded.")

    def choice(self) -> NewDocumentChoice:
        w, h = (max(8, int(v / 8 + 0.5) * 8) for v in (self.width_box.value(), self.height_box.value()))
        return NewDocumentChoice(min(w, MAX_DOCUMENT_SIDE), min(h, MAX_DOCUMENT_SIDE),
                                 "white" if self.white.isChecked() else "transparent")


class SettingsDialog(QDialog):
    """Model folders, device, preview method, autosave, theme."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None, *, default_models: Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("Collagen settings")
        self.setMinimumWidth(520)
        self._settings = settings
        self.folders = QListWidget(self)
        self.folders.addItems(settings.model_folders)
        add = QPushButton("Add…", self)
        add.clicked.connect(self._add_folder)
        remove = QPushButton("Remove", self)
        remove.clicked.connect(self._remove_folder)
        folder_buttons = QVBoxLayout()
        folder_buttons.addWidget(add)
        folder_buttons.addWidget(remove)
        folder_buttons.addStretch(1)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folders, 1)
        folder_row.addLayout(folder_buttons)
        default_note = QLabel(f"Always searched too: {default_models}" if default_models else "", self)
        default_note.setObjectName("hintLabel")
        default_note.setWordWrap(True)
        self.device = self._combo(DEVICES, settings.device, {"auto": "Automatic (GPU when there is one)",
                                                             "cpu": "CPU", "cuda": "NVIDIA GPU (CUDA)",
                                                             "mps": "Apple GPU (MPS)"})
        self.fast_path = self._combo(FAST_PATH_SETTINGS, settings.fast_path, {
            "auto": "Automatic (on for NVIDIA GPUs)", "on": "On (fused attention, compiled UNet)", "off": "Off"})
        self.fast_path.setToolTip("The first generation compiles the model (a minute or more); later ones run faster.")
        self.preview = self._combo(PREVIEW_METHODS, settings.preview, {
            "linear": "Fast approximation (linear)", "taesd": "TAESD (when its decoder is in vae_approx/)",
            "none": "No previews"})
        self.autosave = QDoubleSpinBox(self)
        self.autosave.setRange(0.1, 120.0)
        self.autosave.setDecimals(1)
        self.autosave.setSuffix(" min")
        self.autosave.setValue(settings.autosave_minutes)
        self.keep = QSpinBox(self)
        self.keep.setRange(1, 100)
        self.keep.setValue(settings.autosave_keep)
        self.generations_kept = QSpinBox(self)
        self.generations_kept.setRange(*GENERATIONS_MB_RANGE)
        self.generations_kept.setSingleStep(64)
        self.generations_kept.setSuffix(" MB")
        self.generations_kept.setValue(settings.generations_mb)
        self.generations_kept.setToolTip("How much of every project's generated images (accepted or not) is kept "
                                         "and saved with it, counted as uncompressed pixels (a 1024×1024 result "
                                         "is 4 MB). Past this the oldest ones that were never accepted go first, "
                                         "and you are told.")
        self.theme = self._combo(THEMES, settings.theme, {"system": "Follow the system", "light": "Light",
                                                          "dark": "Dark"})
        form = QFormLayout()
        form.addRow("Model folders", folder_row)
        form.addRow("", default_note)
        form.addRow("Device", self.device)
        form.addRow("Fast path", self.fast_path)
        form.addRow("Previews", self.preview)
        form.addRow("Autosave every", self.autosave)
        form.addRow("Autosaves kept", self.keep)
        form.addRow("Generations kept", self.generations_kept)
        form.addRow("Theme", self.theme)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _combo(self, values: tuple[str, ...], current: str, labels: dict[str, str]) -> QComboBox:
        combo = QComboBox(self)
        for value in values:
            combo.addItem(labels.get(value, value), value)
        combo.setCurrentIndex(max(0, combo.findData(current)))
        return combo

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder")
        if folder and not self.folders.findItems(folder, Qt.MatchFlag.MatchExactly):
            self.folders.addItem(folder)

    def _remove_folder(self) -> None:
        for item in self.folders.selectedItems():
            self.folders.takeItem(self.folders.row(item))

    def result_settings(self) -> AppSettings:
        out = AppSettings.from_dict({**self._settings.__dict__})
        out.model_folders = [self.folders.item(i).text() for i in range(self.folders.count())]
        out.device = self.device.currentData()
        out.fast_path = self.fast_path.currentData()
        out.preview = self.preview.currentData()
        out.autosave_minutes = float(self.autosave.value())
        out.autosave_keep = int(self.keep.value())
        out.generations_mb = int(self.generations_kept.value())
        out.theme = self.theme.currentData()
        return out.normalised()


@dataclass(frozen=True)
class FolderLayout:
    kind: str  # "a1111", "comfyui", "models" (a bare models folder) or "flat"
    description: str


def detect_layout(folder: Path) -> FolderLayout:
    """What kind of models folder the user picked, to say so in plain words."""
    folder = Path(folder)

    def has(*parts: str) -> bool:
        return (folder.joinpath(*parts)).is_dir()

    if has("models", "Stable-diffusion"):
        return FolderLayout("a1111", "an AUTOMATIC1111 / Forge install")
    if has("models", "checkpoints") or (folder / "extra_model_paths.yaml").is_file():
        return FolderLayout("comfyui", "a ComfyUI install")
    if has("Stable-diffusion"):
        return FolderLayout("models", "the models folder of an AUTOMATIC1111 / Forge install")
    if has("checkpoints"):
        return FolderLayout("models", "the models folder of a ComfyUI install")
    return FolderLayout("flat", "a folder of model files")
