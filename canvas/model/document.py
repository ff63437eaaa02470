"""Document: its size, ordered layers (bottom first), generation settings, history, events."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Iterator

from psygnal import Signal, SignalGroup

from canvas.model.generations import Generations
from canvas.model.history import DEFAULT_BUDGET, Command, History
from canvas.model.layers import GroupLayer, Layer

MAX_DOCUMENT_SIDE = 16384
MAX_LAYERS = 1000
MAX_GROUP_DEPTH = 64  # nested groups; a deeper (or circular) chain is treated as ending there
DEFAULT_RESOLUTION = (72.0, 72.0)  # dots per inch, x and y


class DocumentError(ValueError):
    """A document operation the user asked for cannot be done (one clear sentence)."""


@dataclass
class GenerationSettings:
    """What the generation panel shows; saved with the project (SPEC §2-§4)."""

    mode: str = "generate"  # generate | inpaint | regions | composite | refine | edit
    model: str = "builtin:tiny-sd15"
    prompt: str = ""
    negative: str = ""
    sampler: str = "Euler a"
    steps: int = 20
    cfg: float = 7.0
    seed: int = -1
    batch_count: int = 1
    clip_skip: int = 1
    vae: str = ""  # "" = the checkpoint's own
    lcm: bool = False
    loras: list = field(default_factory=list)  # [[name, weight], ...]
    strength: float = 0.75
    # inpaint
    mask_mode: str = "masked"
    masked_content: str = "original"
    inpaint_area: str = "whole"
    padding: int = 32
    mask_blur: int = 4
    color_match: bool = False
    # generation size (issue 16): "auto" (the family's native size when the canvas, or the only_masked
    # crop, is far above it or over the limit), "picture" (its own size) or "custom" (the size below)
    generation_size: str = "auto"
    generation_width: int = 512
    generation_height: int = 512
    # regions / composite / refine
    region_method: str = "attention"
    composite_step: float = 0.5
    refine_edge_width: int = 24
    refine_edge_strength: float = 0.75
    refine_inside_strength: float = 0.45
    refine_background_strength: float = 0.15
    # edit
    image_guidance_scale: float = 1.5
    true_cfg_scale: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSettings:
        """Known keys only, each taken only when it already has the field's JSON type; unknown keys
        are ignored (a newer file), missing keys and values of the wrong type keep the defaults.
        Nothing is coerced: `"lcm": "false"` is a string, and bool("false") would turn LCM on."""
        out = cls()
        for f in fields(cls):
            if f.name in data:
                value = typed_setting(getattr(out, f.name), data[f.name])
                if value is not None:
                    setattr(out, f.name, value)
        return out


def typed_setting(default: Any, value: Any) -> Any:
    """`value` when a project file may hold it for a field whose default is `default`, else None.

    bool: true/false only. int: a whole number (2.0 as written by some tools counts; true does
    not). float: any finite number. str: a string. list: a list a project can store again.
    """
    if isinstance(default, bool):
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):  # JSON true/false is no number or text
        return None
    if isinstance(default, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else None
    if isinstance(default, float):
        if isinstance(value, (int, float)):
            try:
                value = float(value)
            except OverflowError:  # an integer of hundreds of digits
                return None
            return value if math.isfinite(value) else None  # a project file cannot store inf/nan
        return None
    if isinstance(default, str):
        return value if isinstance(value, str) else None
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            return None
        try:
            json.dumps(value, allow_nan=False)  # what a project file can store again
        except (TypeError, ValueError, RecursionError):
            return None
        return list(value)
    return None


class DocumentEvents(SignalGroup):
    layer_added = Signal(object, int)  # layer, index
    layer_removed = Signal(object, int)  # layer, index it had
    layer_moved = Signal(object, int, int)  # layer, old index, new index
    settings_changed = Signal(str)  # setting name
    active_layer_changed = Signal(object)  # layer or None


class Document:
    """All mutation goes through `execute(command)`, so every change is undoable."""

    def __init__(self, width: int, height: int, *, settings: GenerationSettings | None = None,
                 history_budget: int = DEFAULT_BUDGET):
        if not (0 < width <= MAX_DOCUMENT_SIDE and 0 < height <= MAX_DOCUMENT_SIDE):
            raise DocumentError(
                f"A document must be between 1 and {MAX_DOCUMENT_SIDE} px per side, not {width}x{height}."
            )
        self.width = int(width)
        self.height = int(height)
        self.layers: list[Layer] = []
        self.settings = settings or GenerationSettings()
        self.events = DocumentEvents()
        self.history = History(self, history_budget)
        self.generations = Generations()  # every generated image, accepted or not (saved with the project)
        self._active: Layer | None = None
        self._stroke_work_cache: dict[str, tuple[Any, float]] = {}  # layer id -> (its strokes, their work)
        # Kept for other programs: the DPI they set and attributes of stack.xml's <image> they wrote.
        self.resolution: tuple[float, float] = DEFAULT_RESOLUTION
        self.foreign: dict[str, str] = {}
        # What opening the file found worth telling the user (one sentence), "" when nothing.
        self.load_report = ""

    # -- queries -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def index_of(self, layer: Layer) -> int:
        for i, candidate in enumerate(self.layers):
            if candidate is layer:
                return i
        raise DocumentError(f"Layer {layer.name!r} is not in this document.")

    def find(self, layer_id: str) -> Layer | None:
        return next((la for la in self.layers if la.id == layer_id), None)

    def layers_of(self, cls: type) -> list:
        return [la for la in self.layers if isinstance(la, cls)]

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # -- groups (see canvas.model.layers: membership is each layer's `group` id) ----------------
    def _groups_by_id(self) -> dict[str, GroupLayer]:
        return {la.id: la for la in self.layers if isinstance(la, GroupLayer)}

    def parent_of(self, layer: Layer) -> GroupLayer | None:
        """The group the layer belongs to; None at top level or when its group id names no group."""
        parent = self._groups_by_id().get(layer.group) if layer.group else None
        return parent if parent is not layer else None

    def ancestors(self, layer: Layer, groups: dict[str, GroupLayer] | None = None) -> list[GroupLayer]:
        """Enclosing groups, innermost first. A chain that comes back to a group already in it (a
        damaged file) or is deeper than MAX_GROUP_DEPTH stops there."""
        groups = self._groups_by_id() if groups is None else groups
        chain: list[GroupLayer] = []
        parent = groups.get(layer.group) if layer.group else None
        while (parent is not None and parent is not layer and parent not in chain
               and len(chain) < MAX_GROUP_DEPTH):
            chain.append(parent)
            parent = groups.get(parent.group) if parent.group else None
        return chain

    def tree(self) -> dict[GroupLayer | None, list[Layer]]:
        """The layers composited directly in each group (None: the document), bottom first.

        A layer whose chain of groups never reaches the top (circular or too deep) counts as top
        level, so every layer is composited exactly once."""
        groups = self._groups_by_id()
        out: dict[GroupLayer | None, list[Layer]] = {None: []}
        for group in groups.values():
            out[group] = []
        for layer in self.layers:
            chain = self.ancestors(layer, groups)
            reaches_top = not chain or not chain[-1].group or chain[-1].group not in groups
            out[chain[0] if chain and reaches_top else None].append(layer)
        return out

    def members(self, group: GroupLayer | None) -> list[Layer]:
        """The layers composited directly in `group` (None: the document), bottom first."""
        return self.tree().get(group, [])

    def shown(self, layer: Layer) -> bool:
        """Visible, and so is every group around it."""
        return layer.visible and all(g.visible for g in self.ancestors(layer))

    def shown_layers(self) -> list[Layer]:
        """The layers `shown` is true of, bottom first (one pass, for composing)."""
        groups = self._groups_by_id()
        return [la for la in self.layers if la.visible and all(g.visible for g in self.ancestors(la, groups))]

    @property
    def active_layer(self) -> Layer | None:
        return self._active

    @active_layer.setter
    def active_layer(self, layer: Layer | None) -> None:
        if layer is not self._active:
            self._active = layer
            self.events.active_layer_changed.emit(layer)

    def same_as(self, other: Document) -> bool:
        """Value equality: size, settings, and every layer field in order."""
        return (
            self.size == other.size
            and self.resolution == other.resolution
            and self.settings.to_dict() == other.settings.to_dict()
            and len(self.layers) == len(other.layers)
            and all(a.same_as(b) for a, b in zip(self.layers, other.layers))
        )

    # -- mutation: always through commands -----------------------------------------------------
    def execute(self, command: Command) -> Command:
        command.do(self)
        self.history.record(command)
        return command

    def undo(self) -> bool:
        return self.history.undo()

    def redo(self) -> bool:
        return self.history.redo()

    # -- primitives the commands use (not for tools or views) ----------------------------------
    def stroke_work(self) -> float:
        """Upper bound of the pixel evaluations rendering every stroke of the document costs."""
        return sum(self._layer_stroke_work(layer) for layer in self.layers)

    def check_new_strokes(self, strokes: Iterable[Any], where: str) -> None:
        """Refuse (DocumentError) strokes that would take the document's stroke rendering past
        MAX_STROKE_WORK: a crafted project of 50 KB (one 200 000-point, 10 000 px wide stroke)
        used to hang rendering and saving for an hour."""
        from canvas.model.raster import MAX_STROKE_WORK, stroke_work

        added = sum(stroke_work(s.points, s.width, self.width, self.height) for s in strokes)
        if added and self.stroke_work() + added > MAX_STROKE_WORK:
            raise DocumentError(
                f"The strokes of {where} are too costly to draw ({added:.3g} pixel evaluations; a document's "
                f"strokes may take {MAX_STROKE_WORK:.3g}): fewer points or a narrower pen.")

    def _layer_stroke_work(self, layer: Layer) -> float:
        strokes = getattr(layer, "strokes", None)
        if not strokes:
            return 0.0
        cached = self._stroke_work_cache.get(layer.id)
        if cached is None or cached[0] is not strokes:
            from canvas.model.raster import stroke_work

            cached = (strokes, sum(stroke_work(s.points, s.width, self.width, self.height) for s in strokes))
            self._stroke_work_cache[layer.id] = cached
        return cached[1]

    def _insert_layer(self, index: int, layer: Layer) -> None:
        if len(self.layers) >= MAX_LAYERS:
            raise DocumentError(f"A document holds at most {MAX_LAYERS} layers.")
        if getattr(layer, "strokes", None):
            self.check_new_strokes(layer.strokes, f"layer {layer.name[:60]!r}")
        index = max(0, min(index, len(self.layers)))
        self.layers.insert(index, layer)
        self.events.layer_added.emit(layer, index)

    def _remove_layer(self, layer: Layer) -> None:
        index = self.index_of(layer)
        del self.layers[index]
        if self._active is layer:
            self.active_layer = self.layers[min(index, len(self.layers) - 1)] if self.layers else None
        self.events.layer_removed.emit(layer, index)

    def _move_layer(self, layer: Layer, index: int) -> None:
        old = self.index_of(layer)
        index = max(0, min(index, len(self.layers) - 1))
        if old == index:
            return
        del self.layers[old]
        self.layers.insert(index, layer)
        self.events.layer_moved.emit(layer, old, index)

    def _set_setting(self, name: str, value: Any) -> None:
        if not hasattr(self.settings, name):
            raise DocumentError(f"Unknown generation setting {name!r}.")
        setattr(self.settings, name, value)
        self.events.settings_changed.emit(name)

    def add_layer_untracked(self, layer: Layer, index: int | None = None) -> None:
        """Build a document without history (file loading): the loaded state is the clean state."""
        self._insert_layer(len(self.layers) if index is None else index, layer)
