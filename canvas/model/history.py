"""Undo/redo: a stack of commands with a byte budget, macros, and tile-based stroke recording."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np
from psygnal import Signal

from canvas.model.layers import Layer, Rect

if TYPE_CHECKING:
    from canvas.model.document import Document

DEFAULT_BUDGET = 256 * 1024 * 1024  # bytes of undo data kept before the oldest steps are dropped
TILE = 64  # px: strokes back up and store only the tiles they touch


class Command:
    """One undoable change. `do` must be repeatable after `undo` (redo calls it again)."""

    label: str = "Change"

    def do(self, doc: Document) -> None:
        raise NotImplementedError

    def undo(self, doc: Document) -> None:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data this step keeps alive (for the history budget)."""
        return 0

    def merge(self, other: Command) -> bool:
        """Absorb `other` (pushed right after self) into self; True if merged."""
        return False


def flattened(command: Command) -> list[Command]:
    """The plain commands a command is made of, in the order they are done."""
    inner = getattr(command, "commands", None)
    if inner is None:
        return [command]
    return [plain for part in inner for plain in flattened(part)]


class Macro(Command):
    """Several commands as one undo step."""

    def __init__(self, label: str, commands: list[Command] | None = None):
        self.label = label
        self.commands: list[Command] = list(commands or [])

    def do(self, doc: Document) -> None:
        for c in self.commands:
            c.do(doc)

    def undo(self, doc: Document) -> None:
        for c in reversed(self.commands):
            c.undo(doc)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.commands)


class History:
    """Done and undone commands. The owner (Document) applies a command, then records it here."""

    changed = Signal()  # undo/redo availability or the stack changed

    def __init__(self, doc: Document, budget_bytes: int = DEFAULT_BUDGET):
        self._doc = doc
        self.budget_bytes = budget_bytes
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self._macro_stack: list[Macro] = []
        self._clean_index: int | None = 0  # len(_done) at the last save; None = unreachable
        # len(_done) when a save still being written was taken (None: none, or that state is gone);
        # it follows the stack exactly like _clean_index and becomes it when the save ends well.
        self._saving_index: int | None = None

    # -- recording ---------------------------------------------------------------------------
    def record(self, cmd: Command | None) -> None:
        """Record a command that has just been applied. None (a stroke that changed no pixel,
        `StrokeRecorder.finish()` returns None then) records nothing."""
        if cmd is None:
            return
        if self._macro_stack:
            self._macro_stack[-1].commands.append(cmd)
            return
        if self._clean_index is not None and self._clean_index > len(self._done):
            self._clean_index = None  # the saved state was on the redo branch we are discarding
        if self._saving_index is not None and self._saving_index > len(self._done):
            self._saving_index = None
        self._undone.clear()
        if self._done and self._done[-1].merge(cmd):
            if self._clean_index == len(self._done):
                self._clean_index = None
            if self._saving_index == len(self._done):
                self._saving_index = None
        else:
            self._done.append(cmd)
        self._enforce_budget()
        self.changed.emit()

    @contextmanager
    def macro(self, label: str) -> Iterator[Macro]:
        """Everything executed inside the block becomes one undo step."""
        m = Macro(label)
        self._macro_stack.append(m)
        try:
            yield m
        finally:
            self._macro_stack.pop()
            if m.commands:
                self.record(m)

    def _enforce_budget(self) -> None:
        total = self.nbytes
        while total > self.budget_bytes and len(self._done) > 1:
            dropped = self._done.pop(0)
            total -= dropped.nbytes
            if self._clean_index is not None:
                self._clean_index = self._clean_index - 1 if self._clean_index > 0 else None
            if self._saving_index is not None:
                self._saving_index = self._saving_index - 1 if self._saving_index > 0 else None

    # -- navigation --------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_label(self) -> str:
        return self._done[-1].label if self._done else ""

    @property
    def redo_label(self) -> str:
        return self._undone[-1].label if self._undone else ""

    @property
    def next_undo(self) -> Command | None:
        """The step Undo would take back (a text field asks whether it is its own typing)."""
        return self._done[-1] if self._done else None

    @property
    def next_redo(self) -> Command | None:
        return self._undone[-1] if self._undone else None

    def done_commands(self) -> list[Command]:
        """The changes that can be undone, newest first, each macro opened into the commands it holds
        (so a caller finds, say, the accepted generation inside a "paste and accept" step)."""
        out: list[Command] = []
        for command in reversed(self._done):
            out.extend(reversed(flattened(command)))
        return out

    def undo(self) -> bool:
        if not self._done:
            return False
        cmd = self._done.pop()
        cmd.undo(self._doc)
        self._undone.append(cmd)
        self.changed.emit()
        return True

    def redo(self) -> bool:
        if not self._undone:
            return False
        cmd = self._undone.pop()
        cmd.do(self._doc)
        self._done.append(cmd)
        self.changed.emit()
        return True

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self._clean_index = 0
        self._saving_index = None
        self.changed.emit()

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._done) + sum(c.nbytes for c in self._undone)

    def __len__(self) -> int:
        return len(self._done)

    def mark_clean(self) -> None:
        self._clean_index = len(self._done)
        self.changed.emit()

    def saving_started(self) -> None:
        """The state now is being saved (off this thread): `saving_ended(True)` marks it clean, even if
        more was done meanwhile, since it is the state the file holds."""
        self._saving_index = len(self._done)

    def saving_ended(self, saved: bool) -> None:
        if saved and self._saving_index is not None:
            self._clean_index = self._saving_index
        self._saving_index = None
        self.changed.emit()

    @property
    def is_clean(self) -> bool:
        return self._clean_index == len(self._done)


class PaintPatch(Command):
    """Pixels of one array attribute of a layer, changed inside some tiles."""

    def __init__(self, layer: Layer, attr: str, tiles: list[tuple[Rect, np.ndarray, np.ndarray]],
                 label: str = "Paint"):
        self.layer = layer
        self.attr = attr
        self.tiles = tiles  # (rect, before, after)
        self.label = label

    def _apply(self, which: int) -> None:
        arr = getattr(self.layer, self.attr)
        dirty = Rect(0, 0, 0, 0)
        for tile in self.tiles:
            rect = tile[0]
            arr[rect.slices] = tile[which]
            dirty = dirty.union(rect)
        self.layer.pixels_touched(dirty)

    def do(self, doc: Document) -> None:
        self._apply(2)

    def undo(self, doc: Document) -> None:
        self._apply(1)

    @property
    def nbytes(self) -> int:
        # Asked for every command at every record (the budget): summed once per tile list, not each time.
        seen = getattr(self, "_nbytes", None)
        if seen is None or seen[0] is not self.tiles or seen[1] != len(self.tiles):
            seen = self._nbytes = (self.tiles, len(self.tiles), sum(b.nbytes + a.nbytes for _, b, a in self.tiles))
        return seen[2]

    @property
    def bounds(self) -> Rect:
        r = Rect(0, 0, 0, 0)
        for rect, _, _ in self.tiles:
            r = r.union(rect)
        return r


class StrokeRecorder:
    """Backs up each TILE×TILE tile the first time a stroke touches it.

    Tools paint straight into the layer's array for speed (a mouse event must cost milliseconds
    on a 4096² document); before painting into `rect` they call `touch(rect)`. At the end of the
    stroke `finish()` returns a PaintPatch holding only the touched tiles whose pixels changed,
    before and after, so undo keeps only what the stroke changed.
    """

    def __init__(self, layer: Layer, attr: str = "pixels", label: str = "Stroke", tile: int = TILE):
        self.layer = layer
        self.attr = attr
        self.label = label
        self.tile = tile
        self._backup: dict[tuple[int, int], np.ndarray] = {}

    def touch(self, rect: Rect) -> None:
        arr = getattr(self.layer, self.attr)
        h, w = arr.shape[:2]
        rect = rect.clip(w, h)
        if rect.empty:
            return
        t = self.tile
        for ty in range(rect.y // t, (rect.y + rect.h - 1) // t + 1):
            for tx in range(rect.x // t, (rect.x + rect.w - 1) // t + 1):
                if (ty, tx) not in self._backup:
                    self._backup[(ty, tx)] = arr[ty * t:(ty + 1) * t, tx * t:(tx + 1) * t].copy()

    def finish(self) -> PaintPatch | None:
        arr = getattr(self.layer, self.attr)
        t = self.tile
        tiles = []
        for (ty, tx), before in sorted(self._backup.items()):
            after = arr[ty * t:(ty + 1) * t, tx * t:(tx + 1) * t]
            if not np.array_equal(before, after):
                rect = Rect(tx * t, ty * t, after.shape[1], after.shape[0])
                tiles.append((rect, before, after.copy()))
        self._backup.clear()
        return PaintPatch(self.layer, self.attr, tiles, self.label) if tiles else None
