"""Frozen copies of a document for saving off the GUI thread, cheap after the first one.

A background save must not read arrays the user is painting into. `Snapshots.take(document)` gives a
Document whose layers are shallow copies holding private copies of their pixel arrays; a layer whose
pixels have not changed since the previous snapshot (same array, same `revision`) reuses the copy it
got then, so after one brush stroke a snapshot copies one layer. The price is one extra copy of every
layer's pixels held between saves.

Copying is the one part that must happen on the document's thread, and a 4096² layer is 64 MiB (the
first snapshot of a 20-layer project 1.3 GB). `copy_some(document, seconds)` copies what the next
`take` would need in slices of rows, for at most that long, so a caller can spread it over event-loop
ticks; a layer painted while its slices are being copied starts again. `take` copies whatever is still
missing itself, so it is always exact.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from canvas.model.document import Document
from canvas.model.layers import Layer

_ARRAYS = ("pixels", "mask")
SLICE_BYTES = 2 << 20  # rows copied between two looks at the clock


class _Partial:
    """A copy being made slice by slice: valid while the live array and its revision stay the same."""

    def __init__(self, revision: int, live: np.ndarray):
        self.revision = revision
        self.live_id = id(live)
        self.array = np.empty_like(live)
        self.rows = 0


class Snapshots:
    def __init__(self) -> None:
        # (layer id, attribute) -> (revision, id of the live array, the copy)
        self._copies: dict[tuple[str, str], tuple[int, int, np.ndarray]] = {}
        self._partial: dict[tuple[str, str], _Partial] = {}

    def take(self, document: Document) -> Document:
        """A document equal to `document` that shares no mutable state with it (call on its thread)."""
        snapshot = Document(document.width, document.height, settings=copy.deepcopy(document.settings))
        snapshot.resolution = tuple(document.resolution)
        snapshot.foreign = dict(document.foreign)
        snapshot.generations = document.generations.snapshot()  # entries are immutable: a list copy
        kept: dict[tuple[str, str], tuple[int, int, np.ndarray]] = {}
        for layer in document.layers:
            snapshot.layers.append(self._frozen_layer(layer, kept))
        self._copies = kept  # layers that left the document drop their copies
        self._partial.clear()
        return snapshot

    def copy_some(self, document: Document, seconds: float) -> bool:
        """Copy pixels the next `take` would otherwise copy, for about `seconds` at most (at least one
        slice). True when nothing is left to copy: `take` will then only clone layer records."""
        deadline = time.perf_counter() + seconds
        for layer, attribute, live in _arrays(document):
            key = (layer.id, attribute)
            if self._fresh(key, layer, live):
                continue
            partial = self._partial.get(key)
            if partial is None or partial.revision != layer.revision or partial.live_id != id(live) \
                    or partial.array.shape != live.shape:
                partial = self._partial[key] = _Partial(layer.revision, live)
            rows_per_slice = max(1, SLICE_BYTES // max(1, live[:1].nbytes))
            while partial.rows < len(live):
                end = min(len(live), partial.rows + rows_per_slice)
                partial.array[partial.rows:end] = live[partial.rows:end]
                partial.rows = end
                if partial.rows < len(live) and time.perf_counter() >= deadline:
                    return False
            partial.array.flags.writeable = False
            self._copies[key] = (partial.revision, partial.live_id, partial.array)
            del self._partial[key]
            if time.perf_counter() >= deadline:
                return self.pending_bytes(document) == 0
        return True

    def pending_bytes(self, document: Document) -> int:
        """How many bytes `take` would copy now."""
        return sum(live.nbytes for layer, attribute, live in _arrays(document)
                   if not self._fresh((layer.id, attribute), layer, live))

    def _fresh(self, key: tuple[str, str], layer: Layer, live: np.ndarray) -> bool:
        previous = self._copies.get(key)
        return previous is not None and previous[0] == layer.revision and previous[1] == id(live) \
            and previous[2].shape == live.shape

    def _frozen_layer(self, layer: Layer, kept: dict) -> Layer:
        clone = copy.copy(layer)  # shares `events`; nothing emits on a snapshot
        clone.foreign = dict(layer.foreign)
        for attribute in _ARRAYS:
            live = getattr(layer, attribute, None)
            if not isinstance(live, np.ndarray):
                continue
            key = (layer.id, attribute)
            if self._fresh(key, layer, live):
                frozen = self._copies[key][2]
            else:
                frozen = live.copy()
                frozen.flags.writeable = False
            kept[key] = (layer.revision, id(live), frozen)
            setattr(clone, attribute, frozen)
        return clone


def _arrays(document: Document):
    for layer in document.layers:
        for attribute in _ARRAYS:
            live = getattr(layer, attribute, None)
            if isinstance(live, np.ndarray):
                yield layer, attribute, live
