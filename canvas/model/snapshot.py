"""Frozen copies of a document for saving off the GUI thread, cheap after the first one.

A background save must not read arrays the user is painting into. `Snapshots.take(document)` gives a
Document whose layers are shallow copies holding private copies of their pixel arrays; a layer whose
pixels have not changed since the previous snapshot (same array, same `revision`) reuses the copy it
got then, so after one brush stroke a snapshot copies one layer. The price is one extra copy of every
layer's pixels held between saves.
"""

from __future__ import annotations

import copy

import numpy as np

from canvas.model.document import Document
from canvas.model.layers import Layer

_ARRAYS = ("pixels", "mask")


class Snapshots:
    def __init__(self) -> None:
        # (layer id, attribute) -> (revision, id of the live array, the copy)
        self._copies: dict[tuple[str, str], tuple[int, int, np.ndarray]] = {}

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
        return snapshot

    def _frozen_layer(self, layer: Layer, kept: dict) -> Layer:
        clone = copy.copy(layer)  # shares `events`; nothing emits on a snapshot
        clone.foreign = dict(layer.foreign)
        for attribute in _ARRAYS:
            live = getattr(layer, attribute, None)
            if not isinstance(live, np.ndarray):
                continue
            key = (layer.id, attribute)
            previous = self._copies.get(key)
            if previous is not None and previous[0] == layer.revision and previous[1] == id(live) \
                    and previous[2].shape == live.shape:
                frozen = previous[2]
            else:
                frozen = live.copy()
                frozen.flags.writeable = False
            kept[key] = (layer.revision, id(live), frozen)
            setattr(clone, attribute, frozen)
        return clone
