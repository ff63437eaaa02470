"""Generation panel: mode, model, prompts and every knob of SPEC §2-§4, plus Generate and progress.

Each widget shows one field of the document's GenerationSettings. A user edit becomes a
SetSetting command (typing and slider drags merge into one undo step per burst); the document's
`settings_changed` event updates the widget, so undo, redo, history restore and opening another
file all show up here without the panel keeping its own copy.

Over 500 lines: one widget row per setting of SPEC §2-§4, each a few lines of the same pattern;
the shared pieces (wheel guard, sections, model picker) are small helpers here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from canvas.model.commands import SetSetting
from canvas.model.document import Document
from desktop.actions import icon
from desktop.panels.binding import EditBursts, LoraList, PromptEdit, WheelGuard
from inference.api import (
    CFG_RANGE,
    IMAGE_GUIDANCE_RANGE,
    MAX_BATCH,
    MAX_CLIP_SKIP,
    MAX_MASK_BLUR,
    MAX_REFINE_EDGE_WIDTH,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    SAMPLERS,
    TRUE_CFG_RANGE,
    ModelInfo,
)

MODES = (
    ("generate", "Generate", "txt2img on an empty canvas, img2img over the picture at the given strength"),
    ("inpaint", "Inpaint", "Regenerate under the mask; everything else stays exactly as it is"),
    ("regions", "Regions", "Each region box gets its own prompt; the base prompt applies everywhere"),
    ("composite", "Composite", "Each region is generated on its own, then the whole picture is finished together"),
    ("refine", "Refine collage", "Blend pasted collage pieces into the picture (strongest at their edges)"),
    ("edit", "Edit (instruction)", "Describe a change; an instruction-edit model applies it (+ reference layers)"),
)
GENERATION_SIZES = (
    ("auto", "Auto (native)"),
    ("picture", "Canvas / crop size"),
    ("custom", "Custom size"),
)
STRENGTH_MODES = ("generate", "inpaint", "regions", "composite", "refine")
DEMO_MODEL = "builtin:tiny-sd15"
DEMO_EDIT_MODEL = "builtin:tiny-ip2p"


@dataclass
class Binding:
    show: Callable[[Any], None]  # put a settings value into the widget (signals blocked)


class GenerationPanel(QWidget):
    generate_requested = Signal()
    cancel_requested = Signal()
    refresh_models_requested = Signal()

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self._bursts = EditBursts()
        self._bindings: dict[str, Binding] = {}
        self._random = random.Random()
        self._models: list[ModelInfo] = []  # what discovery found; the picker shows those fit for the mode
        self._build()
        self.set_document(document)

    # -- layout -----------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        column = QVBoxLayout(body)
        column.setContentsMargins(8, 8, 8, 8)
        column.setSpacing(8)

        # mode and model
        top = QFormLayout()
        top.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.mode = QComboBox(body)
        for value, text, tip in MODES:
            self.mode.addItem(text, value)
            self.mode.setItemData(self.mode.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self._bind_combo("mode", self.mode)
        self.mode_hint = QLabel(body)
        self.mode_hint.setObjectName("hintLabel")
        self.mode_hint.setWordWrap(True)
        self.model = QComboBox(body)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(12)
        self._bind_combo("model", self.model)
        refresh = QToolButton(body)
        refresh.setIcon(icon("regenerate"))
        refresh.setToolTip("Look for models again")
        refresh.clicked.connect(self.refresh_models_requested)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(refresh)
        self.model_problem_label = QLabel(body)
        self.model_problem_label.setObjectName("warningLabel")
        self.model_problem_label.setWordWrap(True)
        self.model_problem_label.hide()
        self.noise_badge = QLabel("Demo model: random weights — the result is noise", body)
        self.noise_badge.setObjectName("noiseBadge")
        self.noise_badge.setWordWrap(True)
        top.addRow("Mode", self.mode)
        top.addRow("", self.mode_hint)
        top.addRow("Model", model_row)
        top.addRow("", self.model_problem_label)
        top.addRow("", self.noise_badge)
        column.addLayout(top)

        # prompts
        self.prompt = PromptEdit("Describe the picture (in edit mode: the change to make)", 4, body)
        self._bind_text("prompt", self.prompt)
        self.negative = PromptEdit("What to avoid", 2, body)
        self._bind_text("negative", self.negative)
        column.addWidget(QLabel("Prompt", body))
        column.addWidget(self.prompt)
        column.addWidget(QLabel("Negative prompt", body))
        column.addWidget(self.negative)

        # the usual knobs
        knobs = QFormLayout()
        knobs.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.sampler = QComboBox(body)
        for name in SAMPLERS:
            self.sampler.addItem(name, name)
        self._bind_combo("sampler", self.sampler)
        self.sampler_fixed = QLabel(body)  # a model that runs one scheduler of its own: its name, not a choice
        self.sampler_fixed.setToolTip("This model always runs its own scheduler")
        sampler_row = QHBoxLayout()
        sampler_row.addWidget(self.sampler, 1)
        sampler_row.addWidget(self.sampler_fixed, 1)
        self.steps = self._spin("steps", 1, MAX_STEPS)
        self.cfg = self._double("cfg", *CFG_RANGE, 0.5, 1)
        self.seed = QLineEdit(body)
        self.seed.setPlaceholderText("random")
        self.seed.setValidator(QRegularExpressionValidator(QRegularExpression(r"-1|\d{0,10}"), self.seed))
        self.seed.textEdited.connect(self._on_seed_edited)
        self.seed.editingFinished.connect(lambda: self._bursts.end("seed"))
        self.seed_dice = QToolButton(body)
        self.seed_dice.setIcon(icon("dice"))
        self.seed_dice.setToolTip("Roll a new seed (and keep it)")
        self.seed_dice.clicked.connect(self._roll_seed)
        self.seed_lock = QToolButton(body)
        self.seed_lock.setCheckable(True)
        self.seed_lock.setToolTip("Keep this seed for every generation (unlocked: a new random seed each time)")
        self.seed_lock.clicked.connect(self._on_seed_lock)
        self._lock_icons = (icon("unlock"), icon("lock"))
        self._bindings["seed"] = Binding(self._show_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.seed_dice)
        seed_row.addWidget(self.seed_lock)
        self.strength_slider = QSlider(Qt.Orientation.Horizontal, body)
        self.strength_slider.setRange(0, 100)
        self.strength = self._double("strength", 0.0, 1.0, 0.05, 2)
        self.strength_slider.valueChanged.connect(lambda v: self._set_setting("strength", v / 100.0, merge=True))
        strength_show = self._bindings["strength"].show

        def show_strength(value: Any) -> None:
            strength_show(value)
            self.strength_slider.blockSignals(True)
            self.strength_slider.setValue(round(float(value) * 100))
            self.strength_slider.blockSignals(False)

        self._bindings["strength"] = Binding(show_strength)
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength)
        self.strength_label = QLabel("Strength", body)
        self.batch = self._spin("batch_count", 1, MAX_BATCH)
        self.size_label = QLabel(body)
        self.size_label.setToolTip("The canvas size (File ▸ New sets it); results are always this size")
        self.generation_size = self._combo("generation_size", GENERATION_SIZES)
        self.generation_size.setToolTip(
            "Auto (native): the canvas, or the Only masked crop, at its own size unless it is over the "
            f"{MAX_SIDE} px limit or far above the model's native size; then at about the native size in its "
            "aspect ratio. The result is scaled back to the canvas; inpaint pastes it only inside the mask.")
        self.generation_width = self._spin("generation_width", 64, MAX_SIDE)
        self.generation_height = self._spin("generation_height", 64, MAX_SIDE)
        for spin, what in ((self.generation_width, "Width"), (self.generation_height, "Height")):
            spin.setSingleStep(64)
            spin.setSuffix(" px")
            spin.setToolTip(f"{what} to generate at (a multiple of 8); a whole canvas keeps its aspect ratio at "
                            "this many pixels, an Only masked crop is generated at exactly this size")
        generation_show = self._bindings["generation_size"].show

        def show_generation_size(value: Any) -> None:
            generation_show(value)
            self.knobs.setRowVisible(self._custom_size_row, value == "custom")
            self._fit_scroll_width()

        self._bindings["generation_size"] = Binding(show_generation_size)
        custom_size_row = QHBoxLayout()  # a row of its own: the panel keeps its narrow width
        custom_size_row.addWidget(self.generation_width, 1)
        custom_size_row.addWidget(QLabel("×", body))
        custom_size_row.addWidget(self.generation_height, 1)
        self.cfg_label = QLabel("CFG scale", body)
        # FLUX.1, Kontext and Qwen edit: a second pass with the negative prompt (1 = off); the others ignore it
        self.true_cfg_scale = self._double("true_cfg_scale", *TRUE_CFG_RANGE, 0.5, 1)
        self.true_cfg_scale.setToolTip("Classifier-free guidance with the negative prompt: a second pass per "
                                       "step (1 = off; FLUX.1 and Kontext run it only with a negative prompt)")
        knobs.addRow("Sampler", sampler_row)
        knobs.addRow("Steps", self.steps)
        knobs.addRow(self.cfg_label, self.cfg)
        knobs.addRow("True CFG", self.true_cfg_scale)
        knobs.addRow("Seed", seed_row)
        knobs.addRow(self.strength_label, strength_row)
        knobs.addRow("Batch", self.batch)
        knobs.addRow("Size", self.size_label)
        knobs.addRow("Generate at", self.generation_size)
        knobs.addRow("", custom_size_row)
        knobs.setRowVisible(custom_size_row, False)  # shown for "custom"; hidden before the width is fitted
        column.addLayout(knobs)
        self.knobs = knobs
        self._sampler_row = sampler_row
        self._custom_size_row = custom_size_row

        # advanced
        self.advanced_toggle = QToolButton(body)
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        column.addWidget(self.advanced_toggle)
        self.advanced = QWidget(body)
        advanced = QFormLayout(self.advanced)
        advanced.setContentsMargins(0, 0, 0, 0)
        advanced.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.clip_skip = self._spin("clip_skip", 1, MAX_CLIP_SKIP)
        self.clip_skip.setToolTip("1 = last CLIP layer, 2 = penultimate (A1111 numbering)")
        self.vae = QComboBox(self.advanced)
        self._bind_combo("vae", self.vae)
        self.lcm = self._check("lcm", "LCM (few steps, low CFG)")
        self.loras = LoraList(self.advanced)
        self.loras.changed.connect(lambda values: self._set_setting("loras", [[n, w] for n, w in values]))
        self._bindings["loras"] = Binding(lambda v: self.loras.set_values([(n, w) for n, w in (v or [])]))
        advanced.addRow("Clip skip", self.clip_skip)
        advanced.addRow("VAE", self.vae)
        advanced.addRow("", self.lcm)
        advanced.addRow("LoRAs", self.loras)
        self.advanced.setVisible(False)
        column.addWidget(self.advanced)

        # mode options
        self.inpaint_group = QGroupBox("Inpaint", body)
        form = QFormLayout(self.inpaint_group)
        self.mask_mode = self._combo("mask_mode", (("masked", "Change what is masked"),
                                                   ("not_masked", "Change everything else")))
        self.masked_content = self._combo("masked_content", (("original", "Original"), ("fill", "Fill"),
                                                             ("latent_noise", "Latent noise"),
                                                             ("latent_nothing", "Latent nothing")))
        self.inpaint_area = self._combo("inpaint_area", (("whole", "Whole picture"),
                                                         ("only_masked", "Only masked (crop)")))
        self.padding = self._spin("padding", 0, 512)
        self.padding.setSuffix(" px")
        self.mask_blur = self._spin("mask_blur", 0, MAX_MASK_BLUR)
        self.mask_blur.setSuffix(" px")
        self.color_match = self._check("color_match", "Match colours to the surroundings")
        form.addRow("Mask", self.mask_mode)
        form.addRow("Masked content", self.masked_content)
        form.addRow("Area", self.inpaint_area)
        form.addRow("Padding", self.padding)
        form.addRow("Mask blur", self.mask_blur)
        form.addRow("", self.color_match)
        self.inpaint_form = form
        column.addWidget(self.inpaint_group)

        self.regions_group = QGroupBox("Regions", body)
        form = QFormLayout(self.regions_group)
        self.region_method = self._combo("region_method", (("attention", "Attention (fast)"),
                                                           ("latent", "Latent couple (LoRA per region)")))
        self.composite_step = self._double("composite_step", 0.0, 1.0, 0.05, 2)
        self.composite_step.setToolTip("Fraction of the steps each piece runs on its own")
        form.addRow("Method", self.region_method)
        form.addRow("Pieces alone", self.composite_step)
        self.regions_form = form
        column.addWidget(self.regions_group)

        self.refine_group = QGroupBox("Collage refine", body)
        form = QFormLayout(self.refine_group)
        self.refine_edge_width = self._spin("refine_edge_width", 0, MAX_REFINE_EDGE_WIDTH)
        self.refine_edge_width.setSuffix(" px")
        self.refine_edge_strength = self._double("refine_edge_strength", 0.0, 1.0, 0.05, 2)
        self.refine_inside_strength = self._double("refine_inside_strength", 0.0, 1.0, 0.05, 2)
        self.refine_background_strength = self._double("refine_background_strength", 0.0, 1.0, 0.05, 2)
        form.addRow("Edge band", self.refine_edge_width)
        form.addRow("At edges", self.refine_edge_strength)
        form.addRow("Inside pieces", self.refine_inside_strength)
        form.addRow("Background", self.refine_background_strength)
        column.addWidget(self.refine_group)

        self.edit_group = QGroupBox("Edit", body)
        form = QFormLayout(self.edit_group)
        self.image_guidance_scale = self._double("image_guidance_scale", *IMAGE_GUIDANCE_RANGE, 0.1, 2)
        form.addRow("Image guidance", self.image_guidance_scale)
        column.addWidget(self.edit_group)
        column.addStretch(1)

        scroll = QScrollArea(self)
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll = scroll
        self._wheel_guard = WheelGuard(scroll, self)
        for kind in (QAbstractSpinBox, QComboBox, QSlider):
            for field in body.findChildren(kind):
                self._wheel_guard.watch(field)
        self.loras.wheel_guard = self._wheel_guard
        self._fit_scroll_width()

        # footer: always visible
        footer = QWidget(self)
        foot = QVBoxLayout(footer)
        foot.setContentsMargins(8, 6, 8, 8)
        foot.setSpacing(6)
        self.generate_button = QPushButton(icon("generate", color="#ffffff"), "Generate", footer)
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.generate_button.clicked.connect(self.generate_requested)
        self.progress = QProgressBar(footer)
        self.progress.setTextVisible(False)
        self.progress_label = QLabel(footer)
        self.progress_label.setObjectName("hintLabel")
        self.cancel_button = QPushButton(icon("cancel"), "Cancel", footer)
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setToolTip("Stop the generation (Esc)")
        self.cancel_button.clicked.connect(self.cancel_requested)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        foot.addWidget(self.generate_button)
        foot.addLayout(progress_row)
        foot.addWidget(self.progress_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(scroll, 1)
        layout.addWidget(footer)
        self.set_running(False)

    # -- widget factories with bindings -------------------------------------------------------------
    def _spin(self, name: str, low: int, high: int) -> QSpinBox:
        spin = QSpinBox(self)
        spin.setRange(low, high)
        spin.setKeyboardTracking(True)
        spin.valueChanged.connect(lambda v: self._set_setting(name, int(v), merge=True))
        spin.editingFinished.connect(lambda: self._bursts.end(name))
        self._bindings[name] = Binding(lambda v, w=spin: _quiet(w, w.setValue, int(v)))
        return spin

    def _double(self, name: str, low: float, high: float, step: float, decimals: int) -> QDoubleSpinBox:
        spin = QDoubleSpinBox(self)
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setDecimals(decimals)
        spin.valueChanged.connect(lambda v: self._set_setting(name, round(float(v), decimals), merge=True))
        spin.editingFinished.connect(lambda: self._bursts.end(name))
        self._bindings[name] = Binding(lambda v, w=spin: _quiet(w, w.setValue, float(v)))
        return spin

    def _check(self, name: str, text: str) -> QCheckBox:
        box = QCheckBox(text, self)
        box.clicked.connect(lambda on: self._set_setting(name, bool(on)))
        self._bindings[name] = Binding(lambda v, w=box: _quiet(w, w.setChecked, bool(v)))
        return box

    def _combo(self, name: str, items: tuple[tuple[str, str], ...]) -> QComboBox:
        combo = QComboBox(self)
        for value, text in items:
            combo.addItem(text, value)
        self._bind_combo(name, combo)
        return combo

    def _bind_combo(self, name: str, combo: QComboBox) -> None:
        combo.activated.connect(lambda index, w=combo: self._set_setting(name, w.itemData(index)))
        self._bindings[name] = Binding(lambda v, w=combo: self._show_combo(w, v))

    def _bind_text(self, name: str, edit: PromptEdit) -> None:
        edit.edited.connect(lambda text: self._set_setting(name, text, merge=True))
        edit.finished.connect(lambda: self._bursts.end(name))
        edit.history_step = lambda redo: self._typing_step(name, redo)
        self._bindings[name] = Binding(lambda v, w=edit: w.set_text(str(v)))

    def _typing_step(self, name: str, redo: bool) -> bool:
        """Ctrl+Z / Ctrl+Shift+Z in a prompt field: the document's step if it is that field's typing."""
        history = self.document.history
        step = history.next_redo if redo else history.next_undo
        if not (isinstance(step, SetSetting) and step.name == name):
            return False
        self._bursts.end(name)  # what is typed next is a step of its own
        self.document.redo() if redo else self.document.undo()
        return True

    @staticmethod
    def _show_combo(combo: QComboBox, value: Any) -> None:
        index = combo.findData(value)
        combo.blockSignals(True)
        if index < 0:  # a value this install does not offer (another machine's model): show it as missing
            combo.addItem(f"{value} (not found)", value)
            index = combo.count() - 1
        combo.setCurrentIndex(index)
        combo.blockSignals(False)

    # -- document ---------------------------------------------------------------------------------
    def set_document(self, document: Document) -> None:
        try:
            self.document.events.settings_changed.disconnect(self._on_setting_changed)
        except (ValueError, RuntimeError):
            pass
        self.document = document
        document.events.settings_changed.connect(self._on_setting_changed)
        self._bursts.end()
        for name in self._bindings:
            self._on_setting_changed(name)
        self._show_size()

    def close_document(self) -> None:
        try:
            self.document.events.settings_changed.disconnect(self._on_setting_changed)
        except (ValueError, RuntimeError):
            pass

    def _on_setting_changed(self, name: str) -> None:
        binding = self._bindings.get(name)
        if name in ("mode", "model") and self._models:
            self._fill_model_picker()  # which models fit depends on both; it shows the chosen one
            if name == "mode":
                binding.show(self.document.settings.mode)
        elif binding is not None:
            binding.show(getattr(self.document.settings, name))
        if name in ("mode", "model", "inpaint_area"):
            self._refresh_visibility()
        if name in ("mode", "model", "generation_size", "generation_width", "generation_height", "inpaint_area"):
            self._show_size()

    def _show_size(self) -> None:
        """The canvas size and, where a whole-canvas generation runs at another size, that size (the
        request builder's own choice for the selected model's family)."""
        from desktop.request_builder import canvas_generation_size, family_entry
        from inference.api import RequestError

        document, s = self.document, self.document.settings
        text = f"{document.width} × {document.height} px (the canvas)"
        info = self.model_info()
        entry = family_entry(s.model, info.family if info is not None else None)
        if s.mode == "edit":
            pass  # the edit pipelines size their own work
        elif s.mode == "inpaint" and s.inpaint_area == "only_masked":
            text += ", the crop around the mask at its own size" + (
                "" if s.generation_size != "custom" else f" or {s.generation_width} × {s.generation_height}")
        else:
            try:
                size = canvas_generation_size(document.width, document.height, s, entry)
            except RequestError as exc:
                text += f": {exc}"
            else:
                if (size.width, size.height) != (document.width, document.height):
                    text += f", generated at {size.width} × {size.height} and scaled back"
        self.size_label.setText(text)
        self.size_label.setWordWrap(True)

    def end_edit_bursts(self) -> None:
        self._bursts.end()

    def _set_setting(self, name: str, value: Any, merge: bool = False) -> None:
        if getattr(self.document.settings, name) == value:
            return
        key = f"setting-{self._bursts.key(name)}" if merge else None
        self.document.execute(SetSetting(name, value, key))

    # -- seed -------------------------------------------------------------------------------------
    def _show_seed(self, value: Any) -> None:
        seed = int(value)
        locked = seed >= 0
        if self.seed.text() != ("" if not locked else str(seed)):
            self.seed.setText(str(seed) if locked else "")
        self.seed.setEnabled(locked)
        self.seed_lock.setChecked(locked)
        self.seed_lock.setIcon(self._lock_icons[int(locked)])

    def _on_seed_edited(self, text: str) -> None:
        try:
            seed = int(text) if text.strip() else -1
        except ValueError:
            return
        self._set_setting("seed", min(max(seed, -1), MAX_SEED), merge=True)

    def _roll_seed(self) -> None:
        self._bursts.end("seed")
        self._set_setting("seed", self._random.randrange(MAX_SEED + 1))

    def _on_seed_lock(self, locked: bool) -> None:
        self._bursts.end("seed")
        if locked:
            self._roll_seed()
        else:
            self._set_setting("seed", -1)

    # -- models -----------------------------------------------------------------------------------
    def set_models(self, models: list[ModelInfo], vaes: list[str], loras: list[str],
                   skipped: Sequence[str] = ()) -> None:
        """The discovered models; built-ins are marked as the demo that draws noise. `skipped`
        (`path: reason` of each file discovery left out) is the model picker's tooltip."""
        self.model.setToolTip(skipped_tooltip(skipped))
        self._models = list(models)
        self._fill_model_picker()
        self._show_size()  # the family of the chosen model is known now
        self.vae.blockSignals(True)
        self.vae.clear()
        self.vae.addItem("The checkpoint's own", "")
        for name in vaes:
            self.vae.addItem(name, name)
        self.vae.blockSignals(False)
        self.loras.set_available(loras)
        self._on_setting_changed("model")
        self._on_setting_changed("vae")

    def _fill_model_picker(self) -> None:
        """The models that run the current mode (edit models in Edit, the others elsewhere)."""
        mode = self.document.settings.mode
        self.model.blockSignals(True)
        self.model.clear()
        for info in self._models:
            if not model_runs_mode(info, mode):
                continue
            if info.kind == "builtin":
                text = f"{info.name} — demo, produces noise"
            else:
                text = f"{info.name}  ({info.family}{', inpaint' if info.kind == 'inpaint' else ''})"
            self.model.addItem(text, info.name)
            self.model.setItemData(self.model.count() - 1, info.path, Qt.ItemDataRole.ToolTipRole)
        chosen = self.model_info()
        if chosen is not None and not model_runs_mode(chosen, mode):  # kept selected, and marked
            self.model.addItem(f"{chosen.name} — not for this mode", chosen.name)
        self.model.blockSignals(False)
        self._bindings["model"].show(self.document.settings.model)

    def discovered_models(self) -> list[ModelInfo]:
        """Every model discovery found (whatever the mode), for matching another picture's model."""
        return list(self._models)

    def model_info(self) -> ModelInfo | None:
        """What discovery knows of the selected model (None: not found, or discovery has not run)."""
        name = self.document.settings.model
        return next((info for info in self._models if info.name == name), None)

    def model_problem(self) -> str:
        """One sentence when the selected model cannot run the selected mode; empty when it can."""
        info, mode = self.model_info(), self.document.settings.mode
        if info is None or model_runs_mode(info, mode):
            return ""
        label = next(text for value, text, _ in MODES if value == mode)
        if mode == "edit":
            return (f"{info.name} is not an instruction-edit model; pick an edit model (such as "
                    f"builtin:tiny-ip2p) for {label} mode.")
        return (f"{info.name} is an instruction-edit model and only runs Edit mode; pick another model for "
                f"{label} mode.")

    def use_demo_model(self) -> None:
        """The first-run card's demo: a built-in model that fits the mode (it draws noise)."""
        self._set_setting("model", DEMO_EDIT_MODEL if self.document.settings.mode == "edit" else DEMO_MODEL)

    # -- state ------------------------------------------------------------------------------------
    def _refresh_visibility(self) -> None:
        mode = self.document.settings.mode
        hint = next((tip for value, _, tip in MODES if value == mode), "")
        self.mode_hint.setText(hint)
        s = self.document.settings
        self.inpaint_group.setVisible(mode in ("inpaint", "edit"))
        # An edit pipeline reads only the mask's sense and its blur (inference/edit/run.py); the rest is
        # the inpaint loop's, and Padding is the Only masked crop's margin.
        inpaint = mode == "inpaint"
        for field in (self.masked_content, self.inpaint_area, self.color_match):
            self.inpaint_form.setRowVisible(field, inpaint)
        self.inpaint_form.setRowVisible(self.padding, inpaint and s.inpaint_area == "only_masked")
        # Regions ride along in inpaint and refine; only composite has pieces
        self.regions_group.setVisible(mode in ("regions", "composite", "inpaint", "refine"))
        self.regions_form.setRowVisible(self.composite_step, mode == "composite")
        self.refine_group.setVisible(mode == "refine")
        uses_strength = mode in STRENGTH_MODES
        self.strength.setEnabled(uses_strength)
        self.strength_slider.setEnabled(uses_strength)
        self.strength_label.setText("Strength" if mode != "refine" else "Strength (max)")
        model = self.document.settings.model
        self.noise_badge.setVisible(model.startswith("builtin:"))
        problem = self.model_problem()
        self.model_problem_label.setText(problem)
        self.model_problem_label.setVisible(bool(problem))
        self._show_family_options(self.model_info())
        self._fit_scroll_width()

    def _show_family_options(self, info: ModelInfo | None) -> None:
        """What the model's family uses: FLUX dev's distilled Guidance instead of CFG, none for schnell;
        the sampler only where one can be picked (an edit model shows the scheduler it runs)."""
        extra = info.extra if info is not None else {}
        guidance = extra.get("guidance", "cfg")
        self.cfg_label.setText("Guidance" if guidance == "guidance" else "CFG scale")
        self.cfg.setToolTip("Distilled guidance the model was trained with (not classifier-free guidance)"
                            if guidance == "guidance" else "How closely the picture follows the prompt")
        self.knobs.setRowVisible(self.cfg, guidance != "none")
        samplers = extra.get("samplers")
        choice = samplers is None or bool(samplers)
        edit = self.document.settings.mode == "edit"
        self.knobs.setRowVisible(self._sampler_row, choice or edit)  # FLUX: one sampler, nothing to show
        self.sampler.setVisible(choice and self.knobs.isRowVisible(self._sampler_row))
        self.sampler_fixed.setVisible(not choice and edit)
        self.sampler_fixed.setText(f"{extra.get('sampler', '')} (the model's own)")
        # True CFG and Image guidance only for the families that read them (shown when the family is unknown)
        self.knobs.setRowVisible(self.true_cfg_scale, bool(extra.get("true_cfg", info is None)))
        self.edit_group.setVisible(edit and bool(extra.get("image_guidance", info is None)))

    def _fit_scroll_width(self) -> None:
        """The form's own minimum width plus the scroll bar: the panel never clips its right edge
        (there is no horizontal scrolling), with or without the scroll bar showing."""
        body = self.scroll.widget()
        body.layout().activate()
        self.scroll.setMinimumWidth(body.minimumSizeHint().width() + self.scroll.verticalScrollBar().sizeHint().width())

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self._fit_scroll_width()
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def set_waiting(self, text: str) -> None:
        """Running but no step finished yet (model loading): a busy bar."""
        self.set_running(True)
        self.progress.setRange(0, 0)
        self.progress_label.setText(text)

    def set_progress(self, step: int, total: int, seconds_left: float) -> None:
        self.set_running(True)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(step, total))
        self.progress_label.setText(progress_text(step, total, seconds_left))

    def set_status(self, text: str) -> None:
        self.progress_label.setText(text)


def model_runs_mode(info: ModelInfo, mode: str) -> bool:
    """Discovery lists each model's modes (from its family); a model without that list is not filtered."""
    modes = info.extra.get("modes")
    return modes is None or mode in modes


def progress_text(step: int, total: int, seconds_left: float) -> str:
    text = f"Step {step} of {total}"
    if seconds_left >= 0 and step < total:
        text += f" · {format_duration(seconds_left)} left"
    return text


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _quiet(widget: QWidget, setter: Callable, value: Any) -> None:
    widget.blockSignals(True)
    try:
        setter(value)
    finally:
        widget.blockSignals(False)


MAX_TOOLTIP_SKIPPED = 20


def skipped_tooltip(skipped: Sequence[str]) -> str:
    """What the model picker's tooltip says about the files discovery skipped (empty: none)."""
    if not skipped:
        return ""
    lines = [f"{len(skipped)} file{'s were' if len(skipped) != 1 else ' was'} skipped:"]
    lines += [f"• {entry}" for entry in skipped[:MAX_TOOLTIP_SKIPPED]]
    if len(skipped) > MAX_TOOLTIP_SKIPPED:
        lines.append(f"… and {len(skipped) - MAX_TOOLTIP_SKIPPED} more (`collagen models` lists them all)")
    return "\n".join(lines)
