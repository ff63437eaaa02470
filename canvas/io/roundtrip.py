"""Round trips through other programs: what to do when Krita (or any OpenRaster editor) saved a
Collagen project and dropped or outdated Collagen's own data (data/collagen/project.json).

The layers in the file are what the user last saw and edited, so they win. What Collagen alone
knows is taken from its own data: the stale project.json still in the file, or else the last copy
`save_ora` keeps beside the project (`canvas.io.ora.last_copy_path`). Layers are matched by name,
in order, among layers of the same place in the stack:
- a mask, region or scribble (saved for other programs as a hidden picture) comes back as what it
  was, with its prompts, painted mask or strokes;
- an image layer whose pixels are still what Collagen rendered gets its untransformed source and
  transform back, and its collage/reference flags; one edited elsewhere keeps the new pixels;
- the generation settings come back, and so do the kept generations (canvas.model.generations)
  when the file no longer has them.
`document.load_report` tells the user, in one sentence, what happened and what could not be restored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canvas.io.errors import ProjectError
from canvas.io.limits import ReadLimits
from canvas.model.compose import layer_matrix
from canvas.model.document import Document, DocumentError
from canvas.model.layers import GroupLayer, ImageLayer, Layer, Rect
from canvas.model.raster import footprint, integer_offset

PIXEL_TOLERANCE = 2  # levels: a layer PNG another program re-encoded still counts as unedited


def repair_foreign_save(document: Document, path: Path, stale: Document | None, limits: ReadLimits) -> None:
    """Restore into `document` (opened from the file's stack.xml) what Collagen's data can give."""
    if stale is None and _is_collagen_project_file(path, limits):
        return  # Collagen saved this file last: nothing to repair
    copy, origin = stale, "the Collagen data left in the file"
    if copy is None:
        copy, origin = _last_copy(path, document, limits), "the copy Collagen kept when it last saved it"
    if copy is None:
        return  # an ordinary OpenRaster file of another program
    restored, lost = _restore(document, copy)
    settings = "the generation settings"
    if not len(document.generations) and len(copy.generations):  # another program dropped data/collagen
        document.generations = copy.generations
        count = len(copy.generations)
        settings += f" and {count} kept generation{'s' if count != 1 else ''}"
    what = f"{path.name} was saved by another program after Collagen"
    if restored:
        report = f"{what}; restored {_count(restored)} and {settings} from {origin}"
    else:
        report = f"{what}; nothing could be matched in {origin} except {settings}"
    if lost:
        report += f", but could not restore {', '.join(repr(n[:40]) for n in lost[:6])}"
        report += f" and {len(lost) - 6} more" if len(lost) > 6 else ""
    document.load_report = report + "."


def _is_collagen_project_file(path: Path, limits: ReadLimits) -> bool:
    """True when the file's own project.json is current (checked by load_ora): only the stale case
    reaches here with `stale` set, so a file without project.json is the one to look at."""
    import zipfile

    from canvas.io.ora import PROJECT_MEMBER

    try:
        with zipfile.ZipFile(path) as archive:
            return PROJECT_MEMBER in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _last_copy(path: Path, document: Document, limits: ReadLimits) -> Document | None:
    from canvas.io.ora import last_copy_path, load_ora

    copy_path = last_copy_path(path)
    if not copy_path.is_file():
        return None
    try:
        copy = load_ora(copy_path, limits, repair=False)
    except ProjectError:
        return None  # a damaged copy restores nothing; the file itself opened fine
    return copy if copy.size == document.size else None


def _count(restored: list[Layer]) -> str:
    kinds: dict[str, int] = {}
    for layer in restored:
        kinds[layer.kind] = kinds.get(layer.kind, 0) + 1
    words = {"image": "image layer", "mask": "mask", "region": "region", "scribble": "scribble", "group": "group"}
    parts = [f"{n} {words[k]}{'s' if n != 1 else ''}" for k, n in kinds.items()]
    return ", ".join(parts)


def _restore(document: Document, copy: Document) -> tuple[list[Layer], list[str]]:
    """Match the copy's layers to the document's by name in stack order; replace what matches."""
    unused = {id(la): la for la in document.layers}
    restored: list[Layer] = []
    lost: list[str] = []
    for old in copy.layers:
        match = next((la for la in document.layers if id(la) in unused and la.name == old.name
                      and isinstance(la, GroupLayer) == isinstance(old, GroupLayer)), None)
        if match is None:
            lost.append(old.name)
            continue
        del unused[id(match)]
        if isinstance(old, GroupLayer):
            continue  # the file's group (its members point at it) is kept as the other program left it
        back = _restored_layer(match, old, document.width, document.height)
        if back is None:
            continue
        back.group = match.group
        document.layers[document.index_of(match)] = back
        restored.append(back)
    document.settings = copy.settings
    document.history.clear()
    return restored, lost


def _restored_layer(found: Layer, old: Layer, width: int, height: int) -> Layer | None:
    """The layer to put in place of `found`, or None to keep `found` as it is."""
    if not isinstance(old, ImageLayer):
        return old  # masks, regions, scribbles: only Collagen can edit what they mean
    if not isinstance(found, ImageLayer):
        return None
    if not _unedited(found, old, width, height):
        found.collage, found.reference = old.collage, old.reference
        return None
    # What the other program shows and lets the user change wins; an opacity it only rounded to
    # 8 bits does not count as changed, and "locked" is not something every program writes.
    old.visible, old.blend = found.visible, found.blend
    if abs(found.opacity - old.opacity) > 1 / 255:
        old.opacity = found.opacity
    return old


def _unedited(found: ImageLayer, old: ImageLayer, width: int, height: int) -> bool:
    """Whether the file's pixels, placed on the canvas, are still those Collagen wrote for `old`
    (within re-encoding; another program may have cropped or grown the layer's rectangle)."""
    from canvas.io.ora import rendered_rgba

    try:
        matrix = layer_matrix(old)
    except DocumentError:
        return False
    offset = integer_offset(matrix)
    if old.reference:  # written untransformed, at whole pixels
        expected = _on_canvas(old.pixels, _whole(old.x), _whole(old.y), width, height)
    elif offset is not None:
        expected = _on_canvas(old.pixels, offset[0], offset[1], width, height)
    else:
        reach = footprint(matrix, old.size[0], old.size[1]).clip(width, height)
        rendered = rendered_rgba(old.pixels, matrix, reach) if not reach.empty else np.zeros((0, 0, 4), np.uint8)
        expected = _on_canvas(rendered, reach.x, reach.y, width, height)
    if not (float(found.x).is_integer() and float(found.y).is_integer() and found.scale == 1 and found.rotation == 0):
        return False
    actual = _on_canvas(found.pixels, int(found.x), int(found.y), width, height)
    visible = np.maximum(expected[..., 3], actual[..., 3]) > 0  # colours under alpha 0 do not count
    diff = np.abs(expected.astype(np.int16) - actual.astype(np.int16))
    return bool(diff[visible].max(initial=0) <= PIXEL_TOLERANCE)


def _whole(value: float) -> int:
    return int(np.floor(value + 0.5))


def _on_canvas(pixels: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    out = np.zeros((height, width, 4), np.uint8)
    placed = Rect(x, y, pixels.shape[1], pixels.shape[0]).clip(width, height)
    if not placed.empty:
        out[placed.slices] = pixels[placed.y - y:placed.y - y + placed.h, placed.x - x:placed.x - x + placed.w]
    return out
