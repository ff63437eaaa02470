"""File ▸ Use Parameters from Image…: another picture's generation parameters into the panel.

A PNG from Collagen, A1111, ComfyUI, InvokeAI, Fooocus or NovelAI (canvas.io.png_info reads them)
becomes a `ParameterPlan`: the panel settings it can fill, each with what the file said, and what
cannot be used (a sampler Collagen lacks, a model or LoRA not found here, a seed out of range).
A dialog shows the plan; OK puts the settings into the document as ONE undo step (SetSetting
commands in a macro, as history restore does). The canvas size is no panel setting: a different
size is offered as a new canvas of that size carrying the settings.

The model is matched by name (the file's name or path, with or without its suffix, case aside),
then by A1111's short hash (the first 10 hex of the file's sha256; hashed on the inference thread
and cached, see inference.models.hashes) when the file gives one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from canvas.io.errors import ProjectError
from canvas.io.png_info import read_png_parameters
from canvas.io.sampler_names import match_sampler
from canvas.model.commands import SetSetting
from canvas.model.document import MAX_DOCUMENT_SIDE
from desktop import dialogs
from inference.api import CFG_RANGE, MAX_CLIP_SKIP, MAX_PROMPT_CHARS, MAX_SEED, MAX_SIDE, MAX_STEPS, ModelInfo
from inference.asset_names import bare_name, normalized, without_suffix

log = logging.getLogger(__name__)
SOURCES = {"collagen": "Collagen", "a1111": "AUTOMATIC1111", "comfyui": "ComfyUI", "invokeai": "InvokeAI",
           "fooocus": "Fooocus", "novelai": "NovelAI"}
_LORA_TAG = re.compile(r"<lora:([^:>]+)", re.IGNORECASE)
HASHED_KINDS = ("checkpoint", "inpaint")  # single files: what A1111's short hash names


@dataclass
class Row:
    label: str  # the panel's name for it
    written: str  # what the file says
    applied: str = ""  # what the panel gets ("" = nothing)
    note: str = ""  # what differs, or why it cannot be used


@dataclass
class ParameterPlan:
    source: str  # "ComfyUI"
    settings: dict[str, Any] = field(default_factory=dict)  # GenerationSettings field -> value
    size: tuple[int, int] | None = None  # the picture's width and height, when usable
    rows: list[Row] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{row.label}: {row.note}" for row in self.rows if row.note]


def model_hash_wanted(record: dict[str, Any]) -> str:
    """The short hash to look models up by ('' when the file names none, or its model is found by name)."""
    value = record.get("model_hash")
    return value.strip().lower() if isinstance(value, str) and re.fullmatch(r"\s*[0-9a-fA-F]{10}\s*", value) else ""


def find_model(record: dict[str, Any], models: Sequence[ModelInfo],
               hashes: Mapping[str, str] | None = None) -> tuple[ModelInfo | None, str]:
    """The discovered model the record names, and how it was found ('name' or 'hash')."""
    candidates = [m for m in models if m.kind != "builtin" or record.get("source") == "collagen"]
    name = record.get("model")
    if isinstance(name, str) and name.strip():
        wanted = normalized(name.strip())
        # the path as written, without its suffix, case aside; then the bare file name, if only one has it
        keys = ((lambda s: s, False), (without_suffix, False), (lambda s: without_suffix(s).lower(), False),
                (lambda s: bare_name(s).lower(), True))
        for key, unique in keys:
            found = [m for m in candidates if key(normalized(m.name)) == key(wanted)]
            if len(found) == 1 or (found and not unique):
                return found[0], "name"
    short = model_hash_wanted(record)
    if short and hashes:
        for info in candidates:
            if hashes.get(info.name, "").lower() == short:
                return info, "hash"
    return None, ""


def hashable_models(models: Sequence[ModelInfo]) -> list[ModelInfo]:
    return [m for m in models if m.kind in HASHED_KINDS and Path(m.path).is_file()]


def plan_parameters(record: dict[str, Any], current: Mapping[str, Any], *, models: Sequence[ModelInfo],
                    loras: Sequence[str], hashes: Mapping[str, str] | None = None) -> ParameterPlan:
    """What the panel would get from `record` (read_png_parameters' dict); `current` is the
    document's settings (what stays where a value cannot be used)."""
    plan = ParameterPlan(SOURCES.get(record.get("source", ""), str(record.get("source", ""))))
    rows, settings = plan.rows, plan.settings

    for key, label in (("prompt", "Prompt"), ("negative", "Negative prompt")):
        text = record.get(key) or ""
        row = Row(label, _short(text) or "(none)")
        if len(text) > MAX_PROMPT_CHARS:
            row.note = f"longer than Collagen's {MAX_PROMPT_CHARS} characters; the panel keeps its own"
        else:
            settings[key] = text
            row.applied = _short(text) or "(none)"
        rows.append(row)

    written = record.get("sampler_original")
    if written:
        schedule = record.get("schedule")
        match = match_sampler(written, schedule)
        row = Row("Sampler", written if not schedule else f"{written} ({schedule})", note=match.note)
        if match.name is not None:
            settings["sampler"], row.applied = match.name, match.name
        else:
            row.note += f"; the panel keeps {current.get('sampler')}"
        rows.append(row)

    _number_row(plan, "steps", "Steps", record.get("steps"), 1, MAX_STEPS, current)
    _number_row(plan, "cfg", "CFG scale", record.get("cfg"), *CFG_RANGE, current)
    _number_row(plan, "seed", "Seed", record.get("seed"), 0, MAX_SEED, current)
    _number_row(plan, "clip_skip", "Clip skip", record.get("clip_skip"), 1, MAX_CLIP_SKIP, current)

    width, height = record.get("width"), record.get("height")
    if isinstance(width, int) and isinstance(height, int):
        row = Row("Size", f"{width} × {height}")
        if not (8 <= width <= min(MAX_SIDE, MAX_DOCUMENT_SIDE) and 8 <= height <= min(MAX_SIDE, MAX_DOCUMENT_SIDE)):
            row.note = f"outside the 8–{MAX_SIDE} px Collagen generates"
        elif width % 8 or height % 8:
            row.note = "not a multiple of 8 px, as the models need"
        else:
            plan.size = (width, height)
            row.applied = f"{width} × {height} (a new canvas)"
        rows.append(row)

    found_loras = []
    for name, weight in record.get("loras") or []:
        known = _find_lora(name, loras)
        row = Row("LoRA", f"{name} ({weight:g})")
        if known is None:
            row.note = f"{name} is not in your LoRA folders"
        else:
            found_loras.append([known, float(weight)])
            row.applied = f"{known} ({weight:g})"
        rows.append(row)
    settings["loras"] = found_loras  # the file's LoRAs and no others: the picture is made with these
    for text in (record.get("prompt") or "", record.get("negative") or ""):
        for name in dict.fromkeys(n.strip() for n in _LORA_TAG.findall(text)):
            if _find_lora(name, loras) is None:
                rows.append(Row("LoRA", f"<lora:{name}> in the prompt", note=f"{name} is not in your LoRA folders"))

    model_name = record.get("model")
    short = record.get("model_hash") or ""
    if model_name or short:
        info, how = find_model(record, models, hashes)
        written = " ".join(part for part in (model_name or "", f"[{short}]" if short else "") if part)
        row = Row("Model", written)
        if info is None:
            row.note = f"{written} is not among your models; the panel keeps {current.get('model')}"
        else:
            settings["model"] = info.name
            row.applied = info.name if how == "name" else f"{info.name} (found by its hash)"
        rows.append(row)
    return plan


def _number_row(plan: ParameterPlan, key: str, label: str, value: Any, low: float, high: float,
                current: Mapping[str, Any]) -> None:
    if value is None or isinstance(value, bool):
        return
    row = Row(label, _number_text(value))
    if not low <= value <= high:
        row.note = f"outside Collagen's {_number_text(low)}–{_number_text(high)}; the panel keeps {current.get(key)}"
    else:
        plan.settings[key] = float(value) if key == "cfg" else int(value)
        row.applied = row.written
    plan.rows.append(row)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _find_lora(name: str, available: Sequence[str]) -> str | None:
    """The discovered LoRA a file's name means: its path (suffix or not), else its bare name (case aside)."""
    wanted = normalized(name.strip())
    for key in (without_suffix, lambda s: without_suffix(s).lower(), lambda s: bare_name(s).lower()):
        found = [known for known in available if key(normalized(known)) == key(wanted)]
        if found:
            return sorted(found, key=lambda s: (s.count("/"), s))[0]
    return None


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ParametersDialog(QDialog):
    """What a picture's parameters would fill, what cannot be used, and Use / Import / Cancel."""

    def __init__(self, plan: ParameterPlan, file_name: str, *, canvas_size: tuple[int, int], dropped: bool,
                 new_canvas_default: bool, parent: QWidget | None = None):
        super().__init__(parent)
        self.plan = plan
        self.import_requested = False
        self.setWindowTitle("Use Parameters")
        layout = QVBoxLayout(self)
        title = QLabel(f"<b>{file_name}</b> carries {plan.source} parameters.", self)
        title.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(title)
        self.table = QTableWidget(len(plan.rows), 3, self)
        self.table.setHorizontalHeaderLabels(["Setting", "In the file", "In the panel"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setWordWrap(False)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for i, row in enumerate(plan.rows):
            for j, text in enumerate((row.label, row.written, row.applied or "— not used")):
                item = QTableWidgetItem(text)
                item.setToolTip(row.note or text)
                self.table.setItem(i, j, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        problems = plan.problems
        self.problems = QLabel("\n".join(f"• {p}" for p in problems) if problems else "Everything can be used.", self)
        self.problems.setObjectName("warningLabel" if problems else "hintLabel")
        self.problems.setWordWrap(True)
        layout.addWidget(self.problems)
        self.new_canvas = QCheckBox(self)
        if plan.size is not None and plan.size != canvas_size:
            self.new_canvas.setText(f"Start a new {plan.size[0]} × {plan.size[1]} canvas with these settings "
                                    f"(this one is {canvas_size[0]} × {canvas_size[1]})")
            self.new_canvas.setChecked(new_canvas_default)
        else:
            self.new_canvas.hide()
        layout.addWidget(self.new_canvas)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.use_button = buttons.addButton("Use Parameters", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_button.setDefault(True)
        self.import_button: QPushButton | None = None
        if dropped:
            self.import_button = buttons.addButton("Import as Layer", QDialogButtonBox.ButtonRole.ActionRole)
            self.import_button.clicked.connect(self._on_import)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(720, min(220 + 30 * len(plan.rows), 640))

    @property
    def wants_new_canvas(self) -> bool:
        return self.new_canvas.isVisibleTo(self) and self.new_canvas.isChecked()

    def _on_import(self) -> None:
        self.import_requested = True
        self.reject()


class ParameterImport:
    """MainWindow's Use Parameters (mixed into the window class)."""

    parameters_dialog: ParametersDialog | None = None

    def action_use_parameters(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Use parameters from an image", self._start_dir(),
                                              "PNG images (*.png)")
        if path:
            self.use_parameters(path)

    def use_parameters(self, path: str | Path, *, dropped: bool = False, at: QPointF | None = None
                       ) -> asyncio.Task | None:
        """Read `path`'s parameters and show what they fill (a task that ends with the dialog open);
        None when the file carries none (a dropped one is then imported as a layer, as any image)."""
        path = Path(path)
        try:
            record = read_png_parameters(path)
        except ProjectError as exc:
            if dropped:
                self.import_image(path, at=at)
            else:
                dialogs.show_error(self, str(exc))
            return None
        if not record:
            if dropped:
                self.import_image(path, at=at)
            else:
                dialogs.show_info(self, f"{path.name} carries no generation parameters Collagen can read "
                                        "(from Collagen, AUTOMATIC1111, ComfyUI, InvokeAI, Fooocus or NovelAI).")
            return None
        return asyncio.ensure_future(self._offer_parameters(path, record, dropped, at))

    async def _offer_parameters(self, path: Path, record: dict, dropped: bool, at: QPointF | None
                                ) -> ParametersDialog:
        panel = self.generation_panel
        models = panel.discovered_models()
        hashes: dict[str, str] = {}
        if find_model(record, models)[0] is None and model_hash_wanted(record) and self.models is not None:
            manager, files = self.models, hashable_models(models)
            self.statusBar().showMessage(f"Looking for the model of {path.name} by its hash…")

            def hash_files(_engine) -> dict[str, str]:
                return {info.name: manager.model_hash(info.path) for info in files}

            try:
                hashes = await self.worker.call(hash_files)
            except Exception as exc:  # noqa: BLE001 - an unreadable file only means no hash match
                log.warning("hashing models failed: %s", exc)
            self.statusBar().clearMessage()
        plan = plan_parameters(record, self.document.settings.to_dict(), models=models,
                               loras=panel.loras.available, hashes=hashes)
        canvas = (self.document.width, self.document.height)
        dialog = ParametersDialog(plan, path.name, canvas_size=canvas, dropped=dropped,
                                  new_canvas_default=not self.document.layers, parent=self)
        dialog.finished.connect(lambda result: self._on_parameters_dialog_finished(dialog, result, path, at))
        self.parameters_dialog = dialog
        dialog.open()
        return dialog

    def _on_parameters_dialog_finished(self, dialog: ParametersDialog, result: int, path: Path,
                                       at: QPointF | None) -> None:
        self.parameters_dialog = None
        dialog.deleteLater()
        if dialog.import_requested:
            self.import_image(path, at=at)
        elif result == QDialog.DialogCode.Accepted:
            self.apply_parameters(dialog.plan, path.name, new_canvas=dialog.wants_new_canvas)

    def apply_parameters(self, plan: ParameterPlan, file_name: str, *, new_canvas: bool = False) -> int:
        """Put the plan's settings into the document as one undo step (or into a new canvas of the
        plan's size); returns how many settings changed."""
        from desktop.window_files import new_document

        self.generation_panel.end_edit_bursts()
        if new_canvas and plan.size is not None:
            if not self.maybe_save():
                return 0
            settings = {**self.document.settings.to_dict(), **plan.settings}
            self._replace_document(new_document(*plan.size, settings=settings), None)
            changed = len(plan.settings)
        else:
            current = self.document.settings.to_dict()
            changes = [(k, v) for k, v in plan.settings.items() if current.get(k) != v]
            if changes:
                with self.document.history.macro(f"Use parameters of {file_name}"):
                    for name, value in changes:
                        self.document.execute(SetSetting(name, value))
            changed = len(changes)
        problems = len(plan.problems)
        self.statusBar().showMessage(
            f"Used the {plan.source} parameters of {file_name}" +
            (f"; {problems} could not be used." if problems else "."), 8000)
        return changed
