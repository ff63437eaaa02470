"""The family registry: the entries in the order detection asks them, and lookups by name and file.

Detection asks every entry's detector, so a new family is a new entry (and its tiny model), not a
branch here. A file no entry claims is refused in one sentence saying what it looks like.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from inference.api import ModelError, UnsupportedModelError
from inference.families.entry import Detected, Family, Shapes
from inference.families.flux import explain_flux_refusal
from inference.families.foreign import UNSUPPORTED_PIPELINES, foreign_checkpoint
from inference.families.sd import explain_unet_refusal


class FamilyRegistry:
    """An immutable, ordered set of entries; the first entry whose detector claims a file wins."""

    def __init__(self, entries: Iterable[Family]):
        self.entries: tuple[Family, ...] = tuple(entries)
        self._by_name = {entry.name: entry for entry in self.entries}
        if len(self._by_name) != len(self.entries):
            raise ValueError("two family entries share a name")
        self._by_pipeline = {
            pipeline: entry for entry in self.entries for pipeline in entry.diffusers_pipelines
        }

    def __iter__(self) -> Iterator[Family]:
        return iter(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def get(self, name: str) -> Family:
        """The entry called `name`; a name no entry has is a ModelError naming it."""
        entry = self._by_name.get(name)
        if entry is None:
            raise ModelError(f"Unknown model family {name!r}; known: {', '.join(self._by_name)}.")
        return entry

    def find(self, name: str) -> Family | None:
        return self._by_name.get(name)

    def of_loop(self, loop: str) -> tuple[Family, ...]:
        return tuple(entry for entry in self.entries if entry.loop == loop)

    # ---- detection --------------------------------------------------------------------------

    def claim_checkpoint(self, shapes: Shapes) -> Detected | None:
        """What the first entry that recognises these tensors says, or None (no refusal reasons here)."""
        for entry in self.entries:
            if entry.detect_checkpoint is not None:
                detected = entry.detect_checkpoint(shapes)
                if detected is not None:
                    return detected
        return None

    def detect_checkpoint(self, path: str | os.PathLike, shapes: Shapes, describe_other) -> Detected:
        """The family of a single file from its tensor names and shapes; anything else is refused.

        `describe_other(shapes)` names what a file without a denoiser is (a LoRA, a VAE, ...), for
        the sentence that refuses it.
        """
        looks_like = foreign_checkpoint(shapes)
        if looks_like is None:
            detected = self.claim_checkpoint(shapes)
            if detected is not None:
                return detected
            looks_like = explain_unet_refusal(shapes) or explain_flux_refusal(shapes) or describe_other(shapes)
        raise UnsupportedModelError(f"{path}: unsupported model family (looks like {looks_like}).")

    def detect_diffusers_folder(self, folder: Path, class_name: object) -> Family:
        """The entry of a diffusers folder whose model_index.json names `class_name`; others are refused."""
        if isinstance(class_name, str) and class_name in UNSUPPORTED_PIPELINES:
            raise UnsupportedModelError(
                f"{folder}: unsupported model family (looks like {UNSUPPORTED_PIPELINES[class_name]})."
            )
        entry = self._by_pipeline.get(class_name) if isinstance(class_name, str) else None
        if entry is None:
            raise UnsupportedModelError(f"{folder}: unsupported model family (pipeline {class_name!r}).")
        if entry.check_diffusers_folder is not None:
            entry.check_diffusers_folder(folder)
        if entry.diffusers_variant is not None:
            return self.get(entry.diffusers_variant(folder))
        return entry
