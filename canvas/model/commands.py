"""The undoable changes to a Document. Every mutation a user can make is one of these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from canvas.model.history import Command, PaintPatch, StrokeRecorder  # noqa: F401 - re-exported
from canvas.model.layers import Layer, Rect, ScribbleLayer, Stroke

if TYPE_CHECKING:
    from canvas.model.document import Document


class AddLayer(Command):
    def __init__(self, layer: Layer, index: int | None = None):
        self.layer = layer
        self.index = index
        self.label = f"Add {layer.name}"

    def do(self, doc: Document) -> None:
        index = len(doc.layers) if self.index is None else self.index
        self.index = index
        doc._insert_layer(index, self.layer)

    def undo(self, doc: Document) -> None:
        doc._remove_layer(self.layer)

    @property
    def nbytes(self) -> int:
        return _layer_bytes(self.layer)


class RemoveLayer(Command):
    def __init__(self, layer: Layer):
        self.layer = layer
        self.index = -1
        self.label = f"Delete {layer.name}"

    def do(self, doc: Document) -> None:
        self.index = doc.index_of(self.layer)
        doc._remove_layer(self.layer)

    def undo(self, doc: Document) -> None:
        doc._insert_layer(self.index, self.layer)

    @property
    def nbytes(self) -> int:
        return _layer_bytes(self.layer)


class MoveLayer(Command):
    """Reorder: the layer ends at `index` in the bottom-to-top list."""

    def __init__(self, layer: Layer, index: int):
        self.layer = layer
        self.new_index = index
        self.old_index = -1
        self.label = f"Reorder {layer.name}"

    def do(self, doc: Document) -> None:
        self.old_index = doc.index_of(self.layer)
        doc._move_layer(self.layer, self.new_index)

    def undo(self, doc: Document) -> None:
        doc._move_layer(self.layer, self.old_index)


class SetProperty(Command):
    """Set a layer field. Consecutive sets of the same field merge when `merge_key` matches
    (a slider drag is one undo step)."""

    def __init__(self, layer: Layer, name: str, value: Any, merge_key: str | None = None):
        if name in ("id", "events") or not hasattr(layer, name):
            raise AttributeError(f"{type(layer).__name__} has no settable property {name!r}")
        self.layer = layer
        self.name = name
        self.value = value
        self.old = getattr(layer, name)
        self.merge_key = merge_key
        self.label = f"Change {name}"

    def _set(self, value: Any) -> None:
        setattr(self.layer, self.name, value)
        self.layer.events.changed.emit(self.name)
        if self.name == "strokes":
            self.layer.events.strokes_changed.emit()

    def do(self, doc: Document) -> None:
        self._set(self.value)

    def undo(self, doc: Document) -> None:
        self._set(self.old)

    def merge(self, other: Command) -> bool:
        if (isinstance(other, SetProperty) and self.merge_key is not None and other.merge_key == self.merge_key
                and other.layer is self.layer and other.name == self.name):
            self.value = other.value
            return True
        return False

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in (self.value, self.old) if isinstance(v, np.ndarray))


class SetTransform(Command):
    """Move/scale/rotate an image layer as one step (merges while a drag goes on)."""

    FIELDS = ("x", "y", "scale", "rotation")

    def __init__(self, layer: Layer, merge_key: str | None = None, **values: float):
        self.layer = layer
        self.values = {k: float(v) for k, v in values.items() if k in self.FIELDS}
        self.old = {k: getattr(layer, k) for k in self.values}
        self.merge_key = merge_key
        self.label = "Transform"

    def _set(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            setattr(self.layer, k, v)
        self.layer.events.changed.emit("transform")

    def do(self, doc: Document) -> None:
        self._set(self.values)

    def undo(self, doc: Document) -> None:
        self._set(self.old)

    def merge(self, other: Command) -> bool:
        if (isinstance(other, SetTransform) and self.merge_key is not None
                and other.merge_key == self.merge_key and other.layer is self.layer):
            for k, v in other.values.items():
                self.old.setdefault(k, other.old[k])
                self.values[k] = v
            return True
        return False


class ReplacePixels(Command):
    """Replace a layer's whole array attribute (fill, clear, invert, import, resize)."""

    def __init__(self, layer: Layer, attr: str, value: np.ndarray | None, label: str = "Replace pixels"):
        self.layer = layer
        self.attr = attr
        self.value = value
        self.old = getattr(layer, attr)
        self.label = label

    def _set(self, value: np.ndarray | None) -> None:
        setattr(self.layer, self.attr, value)
        if value is not None:
            self.layer.pixels_touched(Rect(0, 0, value.shape[1], value.shape[0]))
        self.layer.events.changed.emit(self.attr)

    def do(self, doc: Document) -> None:
        self._set(self.value)

    def undo(self, doc: Document) -> None:
        self._set(self.old)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in (self.value, self.old) if isinstance(v, np.ndarray))


class AddStroke(Command):
    def __init__(self, layer: ScribbleLayer, stroke: Stroke):
        self.layer = layer
        self.stroke = stroke
        self.label = "Scribble"

    def do(self, doc: Document) -> None:
        doc.check_new_strokes([self.stroke], f"layer {self.layer.name[:60]!r}")
        self.layer.strokes = (*self.layer.strokes, self.stroke)
        self.layer.events.strokes_changed.emit()

    def undo(self, doc: Document) -> None:
        strokes = list(self.layer.strokes)
        # remove the last occurrence: the one this command added
        for i in range(len(strokes) - 1, -1, -1):
            if strokes[i] is self.stroke:
                del strokes[i]
                break
        self.layer.strokes = tuple(strokes)
        self.layer.events.strokes_changed.emit()


class SetSetting(Command):
    """Change one generation setting of the document (merges by key while typing)."""

    def __init__(self, name: str, value: Any, merge_key: str | None = None):
        self.name = name
        self.value = value
        self.old: Any = None
        self.merge_key = merge_key
        self.label = f"Change {name}"

    def do(self, doc: Document) -> None:
        self.old = getattr(doc.settings, self.name, None)  # an unknown name: _set_setting says so
        doc._set_setting(self.name, self.value)

    def undo(self, doc: Document) -> None:
        doc._set_setting(self.name, self.old)

    def merge(self, other: Command) -> bool:
        if (isinstance(other, SetSetting) and self.merge_key is not None
                and other.merge_key == self.merge_key and other.name == self.name):
            self.value = other.value
            return True
        return False


def _layer_bytes(layer: Layer) -> int:
    return sum(v.nbytes for v in layer.state().values() if isinstance(v, np.ndarray))
