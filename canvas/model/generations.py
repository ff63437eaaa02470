"""Every generated image of a project, accepted or not, with the record that made it.

A `Generations` store lives on the Document (`document.generations`). Each entry holds its image
losslessly, the generation record (the parameters dict the engine reported, the one PNG export
writes), whether it was accepted, when it was made, and where on the canvas it goes (the area
accept used).

The image (`ImageData`) starts as the result's array and is encoded to PNG once, when first
needed (a save, or the window's background encoder), never on the GUI thread as a result
arrives: a 1024 px result takes a few hundred milliseconds to encode. From then on it is those
PNG bytes, which are saved and read back as they are, so a reopened project has them byte for
byte. Pixels of a loaded entry are decoded only when asked (a thumbnail, placing it as a layer).

Entries are immutable: marking one accepted replaces it (sharing its image). A snapshot for a
background save is a copy of the list.

The store keeps at most `budget_bytes` of images, counted as uncompressed RGBA (width × height ×
4, known at once and the same before and after encoding; the saved file is smaller), and
`MAX_GENERATIONS` entries. Past that the oldest entries that were never accepted go first, then
the oldest accepted ones (their pixels and record also live on the layer accept made); the newest
entry always stays. Whatever is dropped is returned to the caller, which tells the user: nothing
leaves silently.

Adding or dropping entries is not an undo step (generating is not one either); accepting is
part of the accept step (`set_accepted` from the command's do/undo).
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from psygnal import Signal

MiB = 1024 * 1024
DEFAULT_BUDGET_MB = 512
MAX_GENERATIONS = 2000  # entries a project keeps (each is a member of the saved archive)
PNG_COMPRESS_LEVEL = 3  # as layers are saved: fast, lossless


class GenerationError(ValueError):
    """A kept generation cannot be used (one sentence)."""


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class ImageData:
    """A kept image: its array until it is encoded, then its PNG bytes (encoded once, under a lock,
    on whichever thread asks first; readers never wait for an encoding)."""

    def __init__(self, *, pixels: np.ndarray | None = None, png: bytes | None = None):
        if png is None and pixels is None:
            raise GenerationError("A kept generation needs its pixels or its PNG bytes.")
        if pixels is not None:
            pixels = np.array(pixels, copy=True)  # private and read-only: shared with snapshots
            pixels.flags.writeable = False
        self._pixels, self._png = pixels, png
        self._lock = threading.Lock()

    @property
    def encoded(self) -> bool:
        return self._png is not None

    def png(self) -> bytes:
        png = self._png
        if png is not None:
            return png
        with self._lock:
            if self._png is None:
                self._png = encode_png(self._pixels)
            self._pixels = None  # the bytes are set first: a reader sees one or the other
            return self._png

    def array(self) -> np.ndarray | None:
        """The unencoded array (read-only), None once encoded."""
        return self._pixels


@dataclass(frozen=True, eq=False)
class Generation:
    """One generated image and what made it."""

    image: ImageData  # lossless (RGB or RGBA)
    width: int
    height: int
    record: dict[str, Any]  # the generation parameters (JSON values), as PNG export writes them
    accepted: bool = False
    created: float = field(default_factory=time.time)  # epoch seconds
    area: tuple[int, int, int, int] | None = None  # x, y, w, h on the canvas; None = the whole image
    id: str = field(default_factory=_new_id)

    @property
    def png(self) -> bytes:
        """The image as PNG bytes (encoded now when it was not yet)."""
        return self.image.png()

    @property
    def nbytes(self) -> int:
        """What the entry counts against the budget: its pixels as uncompressed RGBA."""
        return self.width * self.height * 4

    @property
    def title(self) -> str:
        prompt = " ".join(str(self.record.get("prompt") or "").split())
        return prompt[:60] + ("…" if len(prompt) > 60 else "") if prompt else f"({self.record.get('mode', 'generate')})"

    @property
    def placement(self) -> tuple[int, int, int, int]:
        """The area of the image that goes on the canvas (x, y, w, h), clipped to the image."""
        if self.area is None:
            return 0, 0, self.width, self.height
        x, y, w, h = self.area
        x0, y0 = max(0, min(x, self.width)), max(0, min(y, self.height))
        x1, y1 = max(x0, min(x + w, self.width)), max(y0, min(y + h, self.height))
        if x1 <= x0 or y1 <= y0:
            return 0, 0, self.width, self.height
        return x0, y0, x1 - x0, y1 - y0

    def pixels(self) -> np.ndarray:
        """The image decoded (HxWx3 or HxWx4 uint8, a fresh writable array); GenerationError when
        its bytes cannot be decoded (a damaged project)."""
        from PIL import PngImagePlugin

        raw = self.image.array()
        if raw is not None:
            return np.array(raw, copy=True)
        try:
            image = PngImagePlugin.PngImageFile(io.BytesIO(self.png))
            if image.size != (self.width, self.height):
                raise GenerationError("its size is not the one recorded")
            image.load()
            array = np.array(image.convert("RGBA" if image.mode in ("RGBA", "LA", "PA") else "RGB"))
        except GenerationError as exc:
            raise GenerationError(f"The kept generation {self.title!r} is damaged: {exc}.") from None
        except Exception as exc:  # a decoder fails in many ways on damaged data; all mean "damaged"
            raise GenerationError(f"The kept generation {self.title!r} is damaged: its image cannot be decoded "
                                  f"({type(exc).__name__}).") from None
        return array

    def layer_rgba(self) -> np.ndarray:
        """What accept puts on a layer: the placed area, opaque where the result has no alpha."""
        x, y, w, h = self.placement
        pixels = self.pixels()[y:y + h, x:x + w]
        rgba = np.empty((h, w, 4), np.uint8)
        rgba[..., :3] = pixels[..., :3]
        rgba[..., 3] = pixels[..., 3] if pixels.shape[2] == 4 else 255
        return rgba


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an HxWx3/HxWx4 uint8 array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


class Generations:
    """The project's generated images, oldest first, within a byte budget."""

    changed = Signal()  # entries were added, dropped, or marked

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_MB * MiB, entries: list[Generation] | None = None):
        self.budget_bytes = int(budget_bytes)
        self.entries: list[Generation] = list(entries or [])
        self.revision = 0  # counts changes, so the window can tell there is something to save

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(list(self.entries))

    @property
    def total_bytes(self) -> int:
        return sum(e.nbytes for e in self.entries)

    def get(self, entry_id: str) -> Generation | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def add(self, image: np.ndarray, record: dict[str, Any], *, area: tuple[int, int, int, int] | None = None,
            accepted: bool = False) -> tuple[Generation, list[Generation]]:
        """Keep a finished image; returns it and the entries the budget dropped to make room."""
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] in (3, 4) and image.size):
            raise GenerationError("A generated image must be HxWx3 or HxWx4 8-bit pixels.")
        height, width = image.shape[:2]
        entry = Generation(image=ImageData(pixels=image), width=int(width), height=int(height), record=dict(record),
                           accepted=accepted, area=tuple(int(v) for v in area) if area is not None else None)
        self.entries.append(entry)
        dropped = self._fit()
        self._changed()
        return entry, dropped

    def insert_loaded(self, entry: Generation) -> None:
        """An entry read from a project file (no budget applied: opening never drops anything)."""
        self.entries.append(entry)

    def set_accepted(self, entry_id: str, accepted: bool) -> None:
        for i, entry in enumerate(self.entries):
            if entry.id == entry_id and entry.accepted != accepted:
                self.entries[i] = replace(entry, accepted=accepted)
                self._changed()

    def set_budget(self, budget_bytes: int) -> list[Generation]:
        """A new budget; returns what no longer fits (oldest unaccepted first)."""
        self.budget_bytes = int(budget_bytes)
        dropped = self._fit()
        if dropped:
            self._changed()
        return dropped

    def unencoded(self) -> list[Generation]:
        """Entries whose image is still an array (for an encoder off the GUI thread)."""
        return [e for e in list(self.entries) if not e.image.encoded]  # list(): called from other threads

    def snapshot(self) -> Generations:
        """An independent store with the same (immutable) entries, for a save off the GUI thread."""
        copy = Generations(self.budget_bytes, self.entries)
        copy.revision = self.revision
        return copy

    def _fit(self) -> list[Generation]:
        dropped: list[Generation] = []
        total = self.total_bytes
        while len(self.entries) > 1 and (total > self.budget_bytes or len(self.entries) > MAX_GENERATIONS):
            newest = self.entries[-1]
            victim = next((e for e in self.entries if not e.accepted and e is not newest), None)
            if victim is None:
                victim = self.entries[0]
            self.entries.remove(victim)
            dropped.append(victim)
            total -= victim.nbytes
        return dropped

    def _changed(self) -> None:
        self.revision += 1
        self.changed.emit()


def dropped_notice(dropped: list[Generation], budget_bytes: int) -> str:
    """The sentence that tells the user which kept generations the budget let go."""
    if not dropped:
        return ""
    count = len(dropped)
    accepted = sum(e.accepted for e in dropped)
    what = f"{count} older generation{'s' if count != 1 else ''}"
    if accepted:
        what += f" ({accepted} of them accepted)"
    return (f"{what} left the project's history to stay within the {budget_bytes // MiB} MB kept "
            "(Settings ▸ Generations kept).")
