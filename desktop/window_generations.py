"""The editor window's history of generated images: the Generations dock, placing and comparing.

A mixin of `MainWindow` (desktop/main_window.py). The store itself is the document's
(`document.generations`, canvas.model.generations); the controller fills it as results finish.
Kept generations are project content: adding one marks the project as having unsaved changes and
counts as a change for autosave, although it is no undo step.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt

from canvas.io.png_info import collagen_parameters
from canvas.model.compose import flatten_layers
from canvas.model.document import DocumentError
from canvas.model.generations import Generation, GenerationError, MiB, dropped_notice
from canvas.model.layers import ImageLayer
from desktop import dialogs
from desktop.panels.generations import CompareDialog, GenerationsPanel


class GenerationHistory:
    """MainWindow's Generations dock (mixed into the window class)."""

    def _build_generations_dock(self) -> None:
        self.generations_panel = GenerationsPanel(self)
        self.generations_dock = self._dock("Generations", self.generations_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tabifyDockWidget(self.history_dock, self.generations_dock)
        self.region_dock.raise_()
        self.generations_panel.place_requested.connect(self.place_generation)
        self.generations_panel.compare_requested.connect(self.compare_generation)
        self.generations_panel.reuse_requested.connect(self.reuse_generation_settings)
        self._generations_hook = None
        self._generations_saved = 0
        self._encoder: threading.Thread | None = None

    def _watch_generations(self) -> None:
        """Called whenever the window shows a (new) document."""
        store = self.document.generations
        if self._generations_hook is not None:
            self._generations_hook.changed.disconnect(self._on_generations_changed)
        store.budget_bytes = int(self.settings.generations_mb) * MiB  # opening drops nothing; the next result may
        store.changed.connect(self._on_generations_changed)
        self._generations_hook = store
        self._generations_saved = store.revision
        self.generations_panel.set_store(store)

    def _on_generations_changed(self) -> None:
        self._changes_since_autosave += 1
        self._update_title()
        self.encode_generations_in_background()

    def encode_generations_in_background(self) -> threading.Thread | None:
        """New results are encoded to PNG on a worker thread (a save would otherwise do it, or the
        GUI thread would stall on each result); their arrays are let go as they are encoded."""
        if self._encoder is not None and self._encoder.is_alive():
            return self._encoder  # it looks at the store again before it ends
        store = self.document.generations
        if not store.unencoded():
            return None
        self._encoder = threading.Thread(target=_encode_all, args=(store.unencoded,), name="collagen-encode",
                                         daemon=True)
        self._encoder.start()
        return self._encoder

    @property
    def generations_unsaved(self) -> bool:
        return self.document.generations.revision != self._generations_saved

    def apply_generations_budget(self, megabytes: int) -> None:
        """The "Generations kept" setting: what no longer fits leaves, and the user is told."""
        store = self.document.generations
        dropped = store.set_budget(int(megabytes) * MiB)
        if dropped:
            self.statusBar().showMessage(dropped_notice(dropped, store.budget_bytes), 0)

    def place_generation(self, entry_id: str) -> ImageLayer | None:
        layer = self.controller.place_generation(entry_id)
        if layer is not None:
            self.statusBar().showMessage(f"Placed {layer.name} as a new layer.", 4000)
        return layer

    def reuse_generation_settings(self, entry_id: str) -> asyncio.Task | None:
        """A kept generation's parameters offered to the panel through the Use Parameters dialog
        (what changes, what cannot be used; OK is one undo step), as for a PNG it was exported to."""
        entry = self.document.generations.get(entry_id)
        if entry is None:
            return None
        seed = entry.record.get("seed")
        name = Path(f"the generation with seed {seed}" if seed is not None else "that generation")
        return asyncio.ensure_future(self._offer_parameters(name, collagen_parameters(entry.record), False, None))

    def compare_generation(self, entry_id: str) -> CompareDialog | None:
        """The kept generation beside the canvas now; its Place button places it (one undo step)."""
        entry = self.document.generations.get(entry_id)
        if entry is None:
            return None
        try:
            generated = entry.pixels()
            canvas = flatten_layers(self.document)[0]
        except (GenerationError, DocumentError) as exc:
            dialogs.show_error(self, str(exc))
            return None
        dialog = CompareDialog(entry, generated, canvas, self)
        dialog.accepted.connect(lambda: self.place_generation(entry_id))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog


def _encode_all(pending: Callable[[], list[Generation]]) -> None:  # on the encoder thread
    while True:
        entries = pending()
        if not entries:
            return
        for entry in entries:
            try:
                entry.png  # noqa: B018 - encodes once and keeps the bytes
            except (GenerationError, MemoryError, ValueError, OSError):
                return  # a save tries again, and says what went wrong
