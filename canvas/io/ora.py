"""OpenRaster (.ora) projects: `save_ora(document, path)` and `load_ora(path) -> Document`.

Layout of a saved project (SPEC §7):

    mimetype                      "image/openraster", first member, stored
    stack.xml                     layers top first, as OpenRaster requires
    data/layer-NNNN.png           one RGBA PNG per layer (NNNN = index from the bottom); groups
                                  are nested <stack> elements and have no PNG
    data/collagen/project.json    everything that is not raster, "format_version": 2
    data/collagen/source-NNNN.png the untransformed pixels of a scaled, rotated or fractionally
                                  placed image layer (its data/layer PNG is the rendered result)
    data/collagen/generations.json  the index of every generated image kept (canvas.model.generations):
                                  id, size, record, accepted, time, area; format_version 1
    data/collagen/generations/ID.png  each kept generation's image, the bytes it had in memory
    Thumbnails/thumbnail.png      <= 256 px
    mergedimage.png               the flattened canvas (compose().init_image)

Other apps see what Collagen shows: every image layer as its rendered pixels at whole-pixel x/y
(a transformed layer's source and transform live in data/collagen, so editing stays lossless),
blend modes as `composite-op`, groups as nested stacks with their opacity, visibility, mode and
isolation, and masks, regions and scribbles as hidden layers (their pixels, or a rendering of
rectangles and strokes). A mask's or painted region's values are the alpha channel of its PNG.
The DPI and attributes other programs wrote (on <image>, <stack> and <layer>) are kept and
written back. project.json records a digest of the stack.xml written with it: when another
program rewrote the layers (or dropped data/collagen), the layers in stack.xml win and
canvas.io.roundtrip restores what it can from Collagen's last copy (see `last_copy_path`).

This module is over 500 lines because saving and hostile-input reading of one archive format
share their layout constants and checks; the round-trip repair lives in canvas.io.roundtrip.

Reading treats the file as hostile: sizes are checked against `ReadLimits` before anything is
allocated, every failure is a `ProjectError` naming the file, and no partial Document escapes.
A plain .ora from another app (no project.json) opens as image layers.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import struct
import time
import xml.etree.ElementTree as ElementTree
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from canvas.io.atomic import atomic_file
from canvas.io.errors import CostlyFileError, ProjectError
from canvas.io.limits import (
    DEFAULT_LIMITS,
    GiB,
    MiB,
    ReadLimits,
    decode_budget,
    decode_need,
    text_caps,
    warp_budget,
)
from canvas.io.png_chunks import (
    PNG_HEADER_BYTES,
    PngFormatError,
    check_dimensions,
    check_inflate_ratio,
    decode_png,
    peek_header,
    plausible_file_bytes,
)
from canvas.io.png_chunks import (
    SIGNATURE as PNG_SIGNATURE,
)
from canvas.model.compose import CostlyDocumentError, check_cost, flatten_layers, layer_matrix
from canvas.model.document import Document, DocumentError, GenerationSettings
from canvas.model.generations import Generation, Generations, ImageData
from canvas.model.layers import (
    BLEND_MODES,
    MAX_NAME_CHARS,
    GroupLayer,
    ImageLayer,
    Layer,
    LoraRef,
    MaskLayer,
    Rect,
    RegionLayer,
    ScribbleLayer,
    Stroke,
)
from canvas.model.raster import (
    StrokeCanvas,
    footprint,
    integer_offset,
    parse_color,
    strokes_bounds,
    warp_rgba,
)

FORMAT_VERSION = 2  # 2: groups, blend modes, rendered transformed layers with their sources
MIMETYPE = b"image/openraster"
STACK_MEMBER = "stack.xml"
PROJECT_MEMBER = "data/collagen/project.json"
GENERATIONS_MEMBER = "data/collagen/generations.json"
GENERATIONS_FOLDER = "data/collagen/generations/"
GENERATIONS_FORMAT_VERSION = 1
MERGED_MEMBER = "mergedimage.png"
THUMBNAIL_MEMBER = "Thumbnails/thumbnail.png"
THUMBNAIL_SIDE = 256
PNG_COMPRESS_LEVEL = 3  # saves are frequent (autosave); level 3 is ~2x faster than 6 for ~5% more bytes
MASK_PREVIEW_RGB = (0, 0, 0)  # colour other apps show for a mask layer's hidden PNG
RECT_PREVIEW_ALPHA = 128  # opacity of a rectangle region's rendering for other apps
MAX_COORDINATE = 1e7  # px: positions further out than this are corrupt, not creative
MAX_SCALE = 1e4
MAX_STROKE_WIDTH = 1e4
MAX_ID_CHARS = 64
MAX_FOREIGN_ATTRIBUTES = 64  # per element: kept for other programs, never interpreted
MAX_FOREIGN_CHARS = 4096
MAX_RESOLUTION = 1e6  # dpi
# Attributes Collagen writes itself; everything else on an element is another program's, kept.
_OWN_ATTRIBUTES = {"name", "src", "x", "y", "opacity", "visibility", "composite-op", "edit-locked", "isolation"}
# In project.json a layer's "foreign" also keeps an operation this version does not know.
_OWN_IN_RECORDS = _OWN_ATTRIBUTES - {"composite-op"}
_OWN_IMAGE_ATTRIBUTES = {"version", "w", "h", "xres", "yres"}
# Krita's own names for operations that are one of ours (Krita writes them for PSD imports).
_KRITA_OPS = {"krita:linear_dodge": "plus", "krita:addition": "plus"}
# A plain attribute name, or a namespaced one as ElementTree gives it ("{uri}name"; written back
# with the namespace declared). A prefixed name without its declaration would be invalid XML.
_XML_NAME = re.compile(r"(\{[^{}<>\"'\s]{1,200}\})?[A-Za-z_][A-Za-z0-9_.-]{0,99}")

_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_DRIVE = re.compile(r"[A-Za-z]:")
_GENERATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


# ==== saving ===================================================================================


def last_copy_path(path: str | os.PathLike[str]) -> Path:
    """Where `save_ora` keeps Collagen's last copy of a project, beside it: what round-trip
    repair restores from when another program saves the file without Collagen's data."""
    target = Path(path)
    return target.with_name(f".{target.name}.collagen-copy")


class PngCache:
    """The PNG bytes of the previous save's layers, reused while a layer's array, revision and
    placement are the same (an autosave after one stroke encodes one layer). One save at a time.

    It also keeps the merged picture's and the thumbnail's PNGs while every image layer and group is
    as it was: a stroke on a mask or region changes nothing other programs show, so the save after it
    flattens nothing (20 layers of 4096² take seconds to flatten and encode)."""

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[np.ndarray, bytes]] = {}
        self._used: dict[tuple, tuple[np.ndarray, bytes]] = {}
        self.encoded = 0  # PNGs encoded by the last save (the rest came from here)
        self._merged: tuple[str, list[np.ndarray], bytes, bytes] | None = None
        self.merged_encoded = False  # whether the last save flattened and encoded the merged picture

    def png(self, key: tuple | None, array: np.ndarray, render: Callable[[], np.ndarray]) -> bytes:
        if key is None:
            return _encode_png(render())
        entry = self._entries.get(key)
        if entry is None or entry[0] is not array:  # the array itself is kept, so its id is not reused
            entry = (array, _encode_png(render()))
            self.encoded += 1
        self._used[key] = entry
        return entry[1]

    def merged(self, document: Document) -> tuple[bytes, bytes]:
        """(thumbnail PNG, merged PNG) of the document's image layers."""
        key, arrays = _merged_key(document)
        if self._merged is None or self._merged[0] != key:
            self._merged = (key, arrays, *_merged_pngs(document))  # the arrays kept: their ids stay theirs
            self.merged_encoded = True
        else:
            self.merged_encoded = False
        return self._merged[2], self._merged[3]

    def start(self) -> None:
        self.encoded = 0

    def finish(self) -> None:
        """Keep only what the save that just ended used."""
        self._entries, self._used = self._used, {}


def _merged_pngs(document: Document) -> tuple[bytes, bytes]:
    merged = flatten_layers(document, with_alpha=False)[0]  # what other programs show; no float alpha plane
    return _encode_png(_thumbnail(merged)), _encode_png(merged)


def _merged_key(document: Document) -> tuple[str, list[np.ndarray]]:
    """Everything flattening reads: the canvas, and each image layer's and group's fields in stack
    order (arrays by identity and revision; the key keeps nothing alive, the caller keeps them)."""
    parts: list[Any] = [document.width, document.height]
    arrays = []
    for layer in document.layers:
        if not isinstance(layer, (ImageLayer, GroupLayer)):
            continue
        state = layer.state()
        for name, value in sorted(state.items()):
            if isinstance(value, np.ndarray):
                arrays.append(value)
                value = ("array", id(value), value.shape, str(value.dtype))
            parts.append((name, value))
        parts.append((type(layer).__name__, layer.revision))
    return repr(parts), arrays


def save_ora(document: Document, path: str | os.PathLike[str], *, keep_copy: bool = False,
             cache: PngCache | None = None) -> None:
    """Write the document atomically: the target is either the old file or the complete new one.
    With `keep_copy`, a copy also goes to `last_copy_path(path)` (a failure there is not fatal:
    the project itself is saved). With `cache`, layers unchanged since the save that used it last
    are not encoded again."""
    target = Path(path)
    cache = cache or PngCache()
    try:
        plan = prepare_layers(document)
        merged_pngs = cache.merged(document)
    except DocumentError as exc:
        raise ProjectError(target, f"cannot be saved: {exc}") from None
    except OSError as exc:
        raise ProjectError(target, f"cannot be written: {exc.strerror or exc}") from None
    except (TypeError, ValueError) as exc:  # a value Pillow cannot encode
        raise ProjectError(target, f"cannot be saved: {exc}") from None
    try:
        with atomic_file(target) as fileobj:
            _write_archive(fileobj, document, plan, merged_pngs, cache)
    except OSError as exc:
        raise ProjectError(target, f"cannot be written: {exc.strerror or exc}") from None
    except (TypeError, ValueError) as exc:  # a value json or Pillow cannot encode
        raise ProjectError(target, f"cannot be saved: {exc}") from None
    if keep_copy:
        try:
            with atomic_file(last_copy_path(target)) as copy, open(target, "rb") as saved:
                shutil.copyfileobj(saved, copy)
        except OSError:
            pass  # the project is saved; only the repair copy for other programs' saves is missing


@dataclass
class PlannedLayer:
    layer: Layer
    src: str
    rgba: Callable[[], np.ndarray]  # rendered lazily, one layer at a time, while writing
    x: int
    y: int
    shown_elsewhere: bool  # visibility other apps get
    source: str = ""  # member holding a transformed image layer's untransformed pixels


def prepare_layers(document: Document) -> list[PlannedLayer]:
    plan = []
    for index, layer in enumerate(document.layers):
        src = f"data/layer-{index:04d}.png"
        if layer.blend not in BLEND_MODES:
            raise DocumentError(f"Layer {layer.name!r} has an unknown blend mode {str(layer.blend)[:40]!r}.")
        if isinstance(layer, ImageLayer):
            plan.append(_prepare_image(layer, src, index, document))
        elif isinstance(layer, GroupLayer):
            plan.append(PlannedLayer(layer, "", _blank, 0, 0, layer.visible))
        elif isinstance(layer, MaskLayer):
            mask = _checked_array(layer, layer.pixels, 2)
            plan.append(PlannedLayer(layer, src, lambda m=mask: _tinted(m, MASK_PREVIEW_RGB), 0, 0, False))
        elif isinstance(layer, RegionLayer):
            plan.append(_prepare_region(layer, src, document))
        elif isinstance(layer, ScribbleLayer):
            plan.append(_prepare_scribble(layer, src, document))
        else:
            raise DocumentError(f"Layer {layer.name!r} is of a kind this version cannot save.")
    return plan


def _prepare_image(layer: ImageLayer, src: str, index: int, document: Document) -> PlannedLayer:
    """Untransformed: the pixels as they are. Otherwise the layer rendered as Collagen shows it,
    clipped to the canvas, with its source kept in data/collagen for lossless editing."""
    pixels = _checked_array(layer, layer.pixels, 3)
    shown = layer.visible and not layer.reference
    matrix = layer_matrix(layer)
    offset = integer_offset(matrix)
    if offset is not None or layer.reference:  # a reference is used untransformed (compose)
        x, y = offset if offset is not None else (_whole(layer.x), _whole(layer.y))
        return PlannedLayer(layer, src, lambda: pixels, x, y, shown)
    source = f"data/collagen/source-{index:04d}.png"
    reach = footprint(matrix, pixels.shape[1], pixels.shape[0]).clip(document.width, document.height)
    if reach.empty:
        return PlannedLayer(layer, src, _blank, 0, 0, shown, source)
    return PlannedLayer(layer, src, lambda: rendered_rgba(pixels, matrix, reach), reach.x, reach.y, shown, source)


def rendered_rgba(pixels: np.ndarray, matrix: np.ndarray, reach: Rect) -> np.ndarray:
    """Straight-alpha RGBA of `reach` of the document from a layer placed by `matrix`, rendered in
    bands of rows (the float temporaries of a whole 16384² reach would be 8 GiB)."""
    pixels = np.ascontiguousarray(pixels)
    out = np.empty((reach.h, reach.w, 4), np.uint8)
    rows = max(1, _RENDER_BAND_PIXELS // max(reach.w, 1))
    for top in range(0, reach.h, rows):
        band = Rect(reach.x, reach.y + top, reach.w, min(rows, reach.h - top))
        rgb, alpha = warp_rgba(pixels, matrix, band, 1.0)
        # In place (the same values as to_uint8(where(alpha > 0, rgb / alpha, 0)), a third of the passes).
        np.divide(rgb, alpha[..., None], out=rgb, where=alpha[..., None] > 0)
        rgb += np.float32(0.5)
        np.clip(rgb, 0, 255, out=rgb)
        out[top:top + band.h, :, :3] = rgb  # truncation of x + 0.5 in 0..255.5: rounds half up
        alpha *= np.float32(255)
        alpha += np.float32(0.5)
        np.clip(alpha, 0, 255, out=alpha)
        out[top:top + band.h, :, 3] = alpha
    return out


_RENDER_BAND_PIXELS = 1 << 20


def _checked_array(layer: Layer, array: Any, ndim: int) -> np.ndarray:
    ok = isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == ndim
    if not ok or (ndim == 3 and array.shape[2] != 4) or array.size == 0:
        raise DocumentError(f"Layer {layer.name!r} holds pixels of an unexpected shape or type.")
    return array


def _whole(value: float) -> int:
    return int(math.floor(value + 0.5)) if math.isfinite(value) else 0


def _tinted(alpha: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    out = np.empty((*alpha.shape, 4), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = alpha
    return out


def _blank() -> np.ndarray:
    return np.zeros((1, 1, 4), np.uint8)


def _prepare_region(layer: RegionLayer, src: str, document: Document) -> PlannedLayer:
    try:
        rgb = parse_color(layer.color)
    except ValueError as exc:
        raise DocumentError(f"Region {layer.name!r} has an invalid colour: {exc}") from None
    if layer.mask is not None:
        mask = _checked_array(layer, layer.mask, 2)
        return PlannedLayer(layer, src, lambda: _tinted(mask, rgb), 0, 0, False)
    rect = Rect(*(int(v) for v in layer.rect)).clip(document.width, document.height)
    if rect.empty:
        return PlannedLayer(layer, src, _blank, 0, 0, False)
    return PlannedLayer(layer, src, lambda: _tinted(np.full((rect.h, rect.w), RECT_PREVIEW_ALPHA, np.uint8), rgb),
                         rect.x, rect.y, False)


def _prepare_scribble(layer: ScribbleLayer, src: str, document: Document) -> PlannedLayer:
    try:
        box = strokes_bounds(layer.strokes, document.width, document.height)
        for stroke in layer.strokes:
            parse_color(stroke.color)
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"A stroke of {layer.name!r} cannot be saved: {exc}") from None
    if box.empty:
        return PlannedLayer(layer, src, _blank, 0, 0, False)

    def render() -> np.ndarray:
        canvas = StrokeCanvas(box)
        for stroke in layer.strokes:
            canvas.draw(stroke.points, stroke.color, stroke.width)
        return canvas.rgba()

    return PlannedLayer(layer, src, render, box.x, box.y, False)


def _write_archive(fileobj: BinaryIO, document: Document, plan: list[PlannedLayer],
                   merged_pngs: tuple[bytes, bytes], cache: PngCache) -> None:
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(fileobj, "w", allowZip64=True) as archive:
        def put(name: str, data: bytes, compress: int) -> None:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = compress
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)

        # The mimetype must be the first member, stored, with no extra field (OpenRaster §1).
        put("mimetype", MIMETYPE, zipfile.ZIP_STORED)
        stack = _stack_xml(document, plan)
        project = _project_json(document, plan, stack_digest(stack))
        # Never write what could not be opened again (the old file stays as it was).
        for what, data, cap in (("layer list", stack, DEFAULT_LIMITS.max_xml_bytes),
                                ("project data", project, DEFAULT_LIMITS.max_json_bytes)):
            if len(data) > cap:
                raise ValueError(f"its {what} would be {len(data) >> 20} MiB, more than the {cap >> 20} MiB "
                                 "a project may hold (are some layer names or prompts that long?)")
        put(STACK_MEMBER, stack, zipfile.ZIP_DEFLATED)
        put(PROJECT_MEMBER, project, zipfile.ZIP_DEFLATED)
        cache.start()
        for planned in plan:
            if planned.src:
                put(planned.src, cache.png(_png_key(planned, "layer"), _keyed_array(planned.layer), planned.rgba),
                    zipfile.ZIP_STORED)
            if planned.source:
                pixels = planned.layer.pixels
                put(planned.source, cache.png(_png_key(planned, "source"), pixels, lambda p=pixels: p),
                    zipfile.ZIP_STORED)
        cache.finish()
        _write_generations(put, document.generations)
        put(THUMBNAIL_MEMBER, merged_pngs[0], zipfile.ZIP_STORED)
        put(MERGED_MEMBER, merged_pngs[1], zipfile.ZIP_STORED)


def _write_generations(put: Callable[[str, bytes, int], None], generations: Generations) -> None:
    """The index and each kept image as it is in memory (PNG bytes, stored: they are compressed)."""
    entries = list(generations)
    if not entries:
        return
    index = {"format_version": GENERATIONS_FORMAT_VERSION, "entries": [
        {"id": e.id, "width": e.width, "height": e.height, "record": e.record, "accepted": bool(e.accepted),
         "created": float(e.created), "area": list(e.area) if e.area is not None else None} for e in entries]}
    data = json.dumps(index, ensure_ascii=True, allow_nan=False, default=_json_default).encode("ascii")
    if len(data) > DEFAULT_LIMITS.max_json_bytes:
        raise ValueError(f"the records of its kept generations would be {len(data) >> 20} MiB, more than the "
                         f"{DEFAULT_LIMITS.max_json_bytes >> 20} MiB a project may hold")
    put(GENERATIONS_MEMBER, data, zipfile.ZIP_DEFLATED)
    for entry in entries:
        put(f"{GENERATIONS_FOLDER}{entry.id}.png", entry.png, zipfile.ZIP_STORED)


def _keyed_array(layer: Layer) -> np.ndarray | None:
    array = getattr(layer, "pixels", None)
    if isinstance(layer, RegionLayer):
        array = layer.mask
    return array if isinstance(array, np.ndarray) else None


def _png_key(planned: PlannedLayer, member: str) -> tuple | None:
    """What a layer's PNG depends on; None for layers drawn from their fields (cheap, not cached)."""
    layer = planned.layer
    array = _keyed_array(layer)
    if array is None or isinstance(layer, ScribbleLayer):
        return None
    placement: tuple = ()
    if isinstance(layer, ImageLayer) and member == "layer" and planned.source:  # rendered by its transform
        placement = (layer.x, layer.y, layer.scale, layer.rotation, planned.x, planned.y)
    elif isinstance(layer, RegionLayer):
        placement = (layer.color,)
    return (layer.id, member, layer.revision, array.shape, placement)


def _encode_png(array: np.ndarray) -> bytes:
    """An 8-bit grey, RGB or RGBA array as PNG bytes, written here with zlib rather than by Pillow:
    Pillow's encoder into memory holds the GIL while it compresses, and a 4096² mask of mostly zeros is
    one call of 100+ ms in which the GUI thread cannot run a line (a background save stalled painting).
    zlib and numpy let it go. Every row uses the Up filter (computed in one numpy pass)."""
    array = np.ascontiguousarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else 0
    if array.dtype != np.uint8 or channels not in _PNG_COLOR_TYPES or 0 in array.shape[:2]:
        return _encode_png_pillow(array)
    height, width = array.shape[:2]
    rows = array.reshape(height, width * channels)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # Up: each byte minus the one above it (mod 256)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    raw = memoryview(filtered).cast("B")
    compressor = zlib.compressobj(PNG_COMPRESS_LEVEL)
    step = 4 << 20
    compressed = [compressor.compress(raw[i:i + step]) for i in range(0, len(raw), step)]
    compressed.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPES[channels], 0, 0, 0)
    crc = zlib.crc32(b"IDAT")
    for piece in compressed:
        crc = zlib.crc32(piece, crc)
    # One join, the only copy of the compressed bytes made with the GIL held.
    return b"".join([PNG_SIGNATURE, _png_chunk(b"IHDR", header), struct.pack(">I", sum(map(len, compressed))),
                     b"IDAT", *compressed, struct.pack(">I", crc), _png_chunk(b"IEND", b"")])


_PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # grey, RGB, RGBA


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _encode_png_pillow(array: np.ndarray) -> bytes:
    from PIL import Image  # imported when saving, not when the GUI starts

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(image)


def stack_digest(stack: bytes) -> str:
    """What project.json records of the stack.xml saved with it, to notice another program's save."""
    return hashlib.sha256(stack).hexdigest()


def _foreign(attributes: dict[str, str], own: set[str]) -> dict[str, str]:
    """Other programs' attributes that can be written back: XML names, bounded, not Collagen's own."""
    out = {}
    for key, value in list(attributes.items())[:MAX_FOREIGN_ATTRIBUTES]:
        if (isinstance(key, str) and isinstance(value, str) and key not in own and _XML_NAME.fullmatch(key)
                and len(value) <= MAX_FOREIGN_CHARS):
            out[key] = _XML_UNSAFE.sub("", value)
    return out


def composite_op(blend: str) -> str:
    return "svg:src-over" if blend == "normal" else f"svg:{blend}"


def _stack_xml(document: Document, plan: list[PlannedLayer]) -> bytes:
    xres, yres = document.resolution
    root = ElementTree.Element("image", {"version": "0.0.5", "w": str(document.width), "h": str(document.height),
                                         "xres": _number_text(xres), "yres": _number_text(yres),
                                         **_foreign(document.foreign, _OWN_IMAGE_ATTRIBUTES)})
    planned_of = {id(p.layer): p for p in plan}
    tree = document.tree()

    def emit(parent: ElementTree.Element, group: GroupLayer | None) -> None:
        for layer in reversed(tree.get(group, [])):  # OpenRaster lists the top layer first
            planned = planned_of[id(layer)]
            attributes = _foreign(layer.foreign, _OWN_ATTRIBUTES)
            # An operation this version does not know stays as the other program wrote it.
            kept_op = layer.foreign.get("composite-op") if layer.blend == "normal" else None
            attributes.update({
                "name": _XML_UNSAFE.sub("", layer.name),
                "opacity": repr(float(min(max(layer.opacity, 0.0), 1.0))),
                "visibility": "visible" if planned.shown_elsewhere else "hidden",
                "composite-op": kept_op if isinstance(kept_op, str) else composite_op(layer.blend),
                "edit-locked": "true" if layer.locked else "false",
            })
            if isinstance(layer, GroupLayer):
                attributes["isolation"] = "isolate" if layer.isolated else "auto"
                emit(ElementTree.SubElement(parent, "stack", attributes), layer)
            else:
                attributes.update(src=planned.src, x=str(planned.x), y=str(planned.y))
                ElementTree.SubElement(parent, "layer", attributes)

    emit(ElementTree.SubElement(root, "stack"), None)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def _number_text(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _project_json(document: Document, plan: list[PlannedLayer], digest: str) -> bytes:
    project = {
        "format_version": FORMAT_VERSION,
        "generator": "Collagen",
        "width": document.width,
        "height": document.height,
        "stack_digest": digest,
        "settings": document.settings.to_dict(),
        "layers": [_layer_record(p) for p in plan],  # bottom first, like Document.layers
    }
    # ASCII escapes keep any Python string (even a lone surrogate) round-trippable.
    return json.dumps(project, ensure_ascii=True, allow_nan=False, default=_json_default).encode("ascii")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored in a project")


def _layer_record(planned: PlannedLayer) -> dict[str, Any]:
    layer = planned.layer
    record: dict[str, Any] = {
        "id": layer.id, "kind": layer.kind, "name": layer.name, "visible": bool(layer.visible),
        "opacity": float(layer.opacity), "locked": bool(layer.locked), "blend": layer.blend,
        "group": str(layer.group), "foreign": _foreign(layer.foreign, _OWN_IN_RECORDS),
    }
    if planned.src:
        record["src"] = planned.src
    if isinstance(layer, ImageLayer):
        record.update(x=float(layer.x), y=float(layer.y), scale=float(layer.scale),
                      rotation=float(layer.rotation), collage=bool(layer.collage),
                      reference=bool(layer.reference))
        if planned.source:
            record["source"] = planned.source
        if layer.generation is not None:
            record["generation"] = layer.generation
    elif isinstance(layer, GroupLayer):
        record["isolated"] = bool(layer.isolated)
    elif isinstance(layer, RegionLayer):
        record.update(rect=[int(v) for v in layer.rect], painted=layer.mask is not None,
                      prompt=layer.prompt, negative=layer.negative, strength=float(layer.strength),
                      loras=[[lora.name, float(lora.weight)] for lora in layer.loras], color=layer.color)
    elif isinstance(layer, ScribbleLayer):
        record.update(mode=layer.mode, strokes=[
            {"points": [[float(x), float(y)] for x, y in s.points], "color": s.color, "width": float(s.width)}
            for s in layer.strokes
        ])
    return record


# ==== loading ==================================================================================


def load_ora(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS, *,
             repair: bool = True, pixels: bool = True) -> Document:
    """Read a project (or any OpenRaster file). Raises ProjectError; never returns a partial document.

    A file whose layers another program saved after Collagen (no project.json, or one whose
    stack digest no longer matches) opens with the layers in stack.xml; with `repair`, what can
    be matched is restored from Collagen's data (the stale project.json, or the last copy) and
    `document.load_report` says what happened in one sentence.

    With `pixels=False` only the layers' PNG headers are read: every layer holds a read-only
    array of zeros of its size that takes no memory (for `collagen info`, which prints sizes), and
    nothing is repaired. Every limit is checked as for a full load."""
    source = Path(path)
    with _Archive(source, limits, pixels=False) as archive:
        try:
            # First every header, size and cost is read and checked with placeholders for the pixels
            # (kept generations are not read then); only then, within the file's decode budget, is any
            # layer decoded.
            archive.costs = pixels
            document, stale, notes = _read_document(archive)
            if pixels:
                archive.check_decode_budget()
                archive.pixels = True
                archive.decoded_bytes = archive.largest_layer = 0
                document, stale, notes = _read_document(archive)
        except MemoryError:
            raise ProjectError(source, "is too large to open with the memory available.") from None
    if repair and pixels:
        from canvas.io.roundtrip import repair_foreign_save

        repair_foreign_save(document, source, stale, limits)
    if notes:
        document.load_report = " ".join([document.load_report, *notes]).strip()
    return document


class _Archive:
    """A zip opened for reading with every declared size checked before any member is read."""

    def __init__(self, path: Path, limits: ReadLimits, *, pixels: bool = True):
        self.path = path
        self.limits = limits
        self.pixels = pixels  # False: PNG headers only, layers hold zero-cost placeholders
        self.costs = pixels  # check what showing the document costs (check_cost) once it is built
        self.decoded_bytes = 0  # RGBA bytes of the layers read so far (placeholders count)
        self.largest_layer = 0
        self.file_bytes = 0
        self.canvas_pixels = 0  # of the document read (the larger, when stack.xml and project.json differ)
        self._parsed: dict[str, Any] = {}  # stack.xml and project.json, parsed once for both passes
        self._zip = self._open()
        try:
            self.members = self._check_members()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def fail(self, reason: str) -> ProjectError:
        return ProjectError(self.path, reason)

    def _open(self) -> zipfile.ZipFile:
        try:
            with open(self.path, "rb") as probe:
                self.file_bytes = os.fstat(probe.fileno()).st_size
                magic = probe.read(4)
                directory = zip_directory_extent(probe) if magic else None
        except FileNotFoundError:
            raise self.fail("does not exist") from None
        except IsADirectoryError:
            raise self.fail("is a folder, not a project file") from None
        except PermissionError:
            raise self.fail("cannot be read (permission denied)") from None
        except OSError as exc:
            raise self.fail(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
        if not magic:
            raise self.fail("is empty")
        if directory is not None:  # zipfile builds an object per entry: refuse a huge directory first
            entries, size = directory
            if entries > self.limits.max_members:
                raise self.fail(f"has {entries} entries, more than the {self.limits.max_members} allowed")
            if size > self.limits.max_directory_bytes:
                raise self.fail(f"has a zip directory of {size} bytes, more than the "
                                f"{self.limits.max_directory_bytes} allowed")
        try:
            return zipfile.ZipFile(self.path)
        except OSError as exc:
            raise self.fail(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError):
            if magic.startswith(b"PK"):
                raise self.fail("is damaged or truncated (its zip directory cannot be read)") from None
            raise self.fail("is not an OpenRaster project (it is not a zip archive)") from None

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        limits = self.limits
        if len(infos) > limits.max_members:
            raise self.fail(f"has {len(infos)} entries, more than the {limits.max_members} allowed")
        members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            if info.filename in members:
                raise self.fail(f"contains {info.filename!r} twice")
            members[info.filename] = info
            if info.flag_bits & 0x1:
                raise self.fail("is encrypted")
            total += info.file_size
            if total > limits.max_total_unpacked:
                raise self.fail(f"unpacks to more than {limits.max_total_unpacked >> 20} MiB")
            # Text members may pack very well (repeated strokes) and are capped on reading anyway.
            bounded = info.filename in (STACK_MEMBER, PROJECT_MEMBER)
            if (not bounded and info.file_size > limits.ratio_floor
                    and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
                raise self.fail(f"looks like a zip bomb ({info.filename!r} claims to unpack "
                                f"{info.file_size // max(info.compress_size, 1)} times larger than it is)")
        return members

    def read(self, name: str, cap: int, what: str, *, head: int | None = None, sized: bool = False) -> bytes:
        """The member's bytes; with `head`, only its first `head` bytes (nothing more is unpacked).
        `sized`: the cap follows the file's size (the refusal says so)."""
        info = self.members.get(name)
        if info is None:
            raise self.fail(f"is missing {what} ({name})")
        if info.file_size > cap:
            why = f" for a file of {_file_size(self.file_bytes)}" if sized else ""
            raise self.fail(f"has {what} ({name}) of {info.file_size} bytes, more than the {cap} allowed{why}")
        try:
            with self._zip.open(info) as member:
                data = member.read(info.file_size + 1 if head is None else head)
        except Exception as exc:  # zlib, bz2, lzma and zipfile each fail their own way on damaged data
            raise self.fail(f"is damaged: {what} ({name}) cannot be unpacked ({_brief(exc)})") from None
        if head is None and len(data) != info.file_size:
            raise self.fail(f"is damaged: {what} ({name}) is not the size its directory says")
        return data

    def count_decoded(self, nbytes: int, too_many: Exception) -> None:
        self.decoded_bytes += nbytes
        self.largest_layer = max(self.largest_layer, nbytes)
        if self.decoded_bytes > self.limits.max_decoded_bytes:
            raise too_many

    def check_decode_budget(self) -> None:
        """Refuse, before any layer is decoded, a file whose layers would need more memory decoded
        than a file of its size may ask for (ReadLimits.decode_floor)."""
        need = decode_need(self.decoded_bytes, self.largest_layer, self.canvas_pixels)
        budget = decode_budget(self.limits, self.file_bytes)
        if need > budget:
            raise CostlyFileError(
                self.path, f"its layers and canvas would need {_file_size(need)} of memory decoded, more than the "
                f"{_file_size(budget)} a file of {_file_size(self.file_bytes)} may ask for "
                f"(at least {self.limits.decode_floor >> 20} MiB, else {self.limits.decode_ratio} times the "
                "file's size); it is refused before any layer is decoded")

    def parsed(self, name: str, parse: Callable[[], Any]) -> Any:
        if name not in self._parsed:
            self._parsed[name] = parse()
        return self._parsed[name]

    def png_header(self, name: str, what: str):
        """The PNG member's header, judged from its first bytes with the member's declared size before
        the member (up to max_png_bytes) is unpacked into memory. Raises ProjectError, PngFormatError."""
        start = self.read(name, self.limits.max_png_bytes, what, head=PNG_HEADER_BYTES)
        header = peek_header(start)
        check_dimensions(header, self.limits)
        if self.members[name].file_size > plausible_file_bytes(header):
            raise PngFormatError(f"its {self.members[name].file_size} bytes are far more than a "
                                 f"{header.width}x{header.height} px image needs (padded or forged)")
        return header

    def read_png(self, name: str, what: str) -> np.ndarray:
        try:
            header = self.png_header(name, what)
            check_inflate_ratio(header, self.members[name].file_size)
            self.count_decoded(header.width * header.height * 4, PngFormatError(
                f"the layers together exceed the {self.limits.max_decoded_bytes >> 20} MiB of pixels this "
                "program opens"))
            if not self.pixels:
                return placeholder(header.height, header.width)
            return decode_png(self.read(name, self.limits.max_png_bytes, what), self.limits)
        except PngFormatError as exc:
            raise self.fail(f"cannot use {what} ({name}): {exc}") from None


_END_OF_DIRECTORY = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END_OF_DIRECTORY = b"PK\x06\x06"


def _file_size(nbytes: int) -> str:
    if nbytes >= GiB:
        return f"{nbytes / GiB:.1f} GiB"
    return f"{nbytes / MiB:.1f} MiB" if nbytes >= MiB else f"{nbytes / 1024:.0f} KiB" if nbytes >= 1024 else \
        f"{nbytes} bytes"


def placeholder(height: int, width: int) -> np.ndarray:
    """A read-only height x width x 4 array of zeros backed by four bytes (a header-only load)."""
    return np.broadcast_to(np.zeros(4, np.uint8), (height, width, 4))


def zip_directory_extent(fileobj: BinaryIO) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory as the zip's end record declares them (zip64 too),
    read from the file's tail only; None when there is no end record (zipfile then reports it)."""
    size = fileobj.seek(0, os.SEEK_END)
    tail_length = min(size, 22 + (1 << 16))  # the end record and its comment; found as zipfile finds it:
    fileobj.seek(size - tail_length)
    tail = fileobj.read(tail_length)
    at = len(tail) - 22  # a record without comment at the very end first, then the last one anywhere
    if not (at >= 0 and tail[at:at + 4] == _END_OF_DIRECTORY and tail[-2:] == b"\0\0"):
        at = tail.rfind(_END_OF_DIRECTORY)
    if at < 0 or at + 22 > len(tail):
        return None
    entries, directory_bytes = struct.unpack("<2xHL", tail[at + 8:at + 16])
    if at >= 20 and tail[at - 20:at - 16] == _ZIP64_LOCATOR:  # the real numbers are in the zip64 record
        (record_offset,) = struct.unpack("<Q", tail[at - 12:at - 4])
        if record_offset < size:
            fileobj.seek(record_offset)
            record = fileobj.read(56)
            if len(record) == 56 and record[:4] == _ZIP64_END_OF_DIRECTORY:
                entries, directory_bytes = struct.unpack("<QQ", record[32:48])
    return entries, directory_bytes


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text if text and len(text) < 120 else type(exc).__name__


def _read_document(archive: _Archive) -> tuple[Document, Document | None, list[str]]:
    """(the document, Collagen's own stale data when another program rewrote the layers, notes on
    what was left out without refusing the file)."""
    if "mimetype" not in archive.members:
        raise archive.fail("is a zip archive but not an OpenRaster project (it has no mimetype entry)")
    mimetype = archive.read("mimetype", 256, "the mimetype entry").strip()
    if mimetype != MIMETYPE:
        shown = mimetype[:60].decode("ascii", "replace")
        raise archive.fail(f"is not an OpenRaster project (its mimetype is {shown!r})")
    stack = archive.parsed(STACK_MEMBER, lambda: _read_stack(archive))
    if PROJECT_MEMBER not in archive.members:
        plain = _with_stack_extras(_plain_ora_document(archive, stack), stack)
        return plain, None, _read_generations(archive, plain)
    reader = _ProjectReader(archive)
    project = reader.document()
    if reader.digest is None or reader.digest == stack.digest:  # format 1 has no digest: trusted
        document, stale = _with_stack_extras(project, stack), None
    else:
        document, stale = _with_stack_extras(_plain_ora_document(archive, stack), stack), project
    return document, stale, reader.notes + _read_generations(archive, document)


def _storable_record(value: Any) -> bool:
    """A generation record this program can save again: an object of JSON values without NaN or
    infinity (json.loads accepts those; saving refuses them, which would trap the project)."""
    if not isinstance(value, dict):
        return False
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits
        return False


def _read_generations(archive: _Archive, document: Document) -> list[str]:
    """The kept generations read into the document; returns notes on what had to be left out."""
    if not archive.pixels or GENERATIONS_MEMBER not in archive.members:
        return []
    return _GenerationsReader(archive).read_into(document.generations)


class _GenerationsReader:
    """The index of kept generations, each entry checked; a damaged entry is left out (counted in
    a note), never the project. Images are read as PNG bytes (their headers checked against the
    limits) and decoded only when used."""

    def __init__(self, archive: _Archive):
        self.archive = archive

    def read_into(self, store: Generations) -> list[str]:
        archive = self.archive
        try:
            data = archive.read(GENERATIONS_MEMBER, archive.limits.max_json_bytes, "its kept generations")
            index = json.loads(data)
        except ProjectError as exc:
            return [f"Its kept generations could not be read ({str(exc).split(': ', 1)[-1].rstrip('.')}); "
                    "the project opened without them."]
        except (ValueError, RecursionError):
            return ["Its kept generations (data/collagen/generations.json) are not valid JSON; "
                    "the project opened without them."]
        entries = index.get("entries") if isinstance(index, dict) else None
        version = index.get("format_version") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not isinstance(version, int) or isinstance(version, bool):
            return ["Its kept generations (data/collagen/generations.json) are not an index this version "
                    "reads; the project opened without them."]
        if version > GENERATIONS_FORMAT_VERSION:
            return ["Its kept generations were saved by a newer Collagen; the project opened without them."]
        notes = []
        cap = archive.limits.max_generations
        if len(entries) > cap:
            notes.append(f"It lists {len(entries)} kept generations; the newest {cap} were opened.")
            entries = entries[-cap:]
        skipped, seen = 0, set()
        for item in entries:
            entry = self.entry(item, seen)
            if entry is None:
                skipped += 1
                continue
            seen.add(entry.id)
            store.insert_loaded(entry)
        if skipped:
            notes.append(f"{skipped} of its {len(entries)} kept generation{'s' if len(entries) != 1 else ''} "
                         f"{'was' if skipped == 1 else 'were'} damaged and left out.")
        return notes

    def entry(self, item: Any, seen: set[str]) -> Generation | None:
        if not isinstance(item, dict):
            return None
        entry_id, width, height = item.get("id"), item.get("width"), item.get("height")
        record, accepted, created, area = item.get("record"), item.get("accepted"), item.get("created"), item.get("area")
        if not (isinstance(entry_id, str) and _GENERATION_ID.fullmatch(entry_id) and entry_id not in seen):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            return None
        if not _storable_record(record) or not isinstance(accepted, bool):
            return None
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not _finite(created):
            return None
        if area is not None and not (isinstance(area, list) and len(area) == 4 and all(
                isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_COORDINATE for v in area)):
            return None
        name = f"{GENERATIONS_FOLDER}{entry_id}.png"
        try:
            header = self.archive.png_header(name, "a kept generation")
            if (header.width, header.height) != (width, height):
                return None
            png = self.archive.read(name, self.archive.limits.max_png_bytes, "a kept generation")
        except (ProjectError, PngFormatError):
            return None
        return Generation(image=ImageData(png=png), width=width, height=height, record=record, accepted=accepted,
                          created=float(created), area=tuple(area) if area is not None else None, id=entry_id)


def _with_stack_extras(document: Document, stack: _Stack) -> Document:
    document.resolution = stack.resolution
    document.foreign = stack.foreign
    return document


# ---- stack.xml --------------------------------------------------------------------------------


@dataclass
class _StackEntry:
    src: str  # "" for a group (<stack>)
    name: str
    x: float
    y: float
    opacity: float
    visible: bool
    locked: bool
    blend: str
    isolated: bool
    group: str  # id given to the enclosing <stack> entry; "" at top level
    id: str
    foreign: dict[str, str]
    background_tile: str  # MyPaint: a PNG member repeated over the canvas instead of src


@dataclass
class _Stack:
    width: int
    height: int
    entries: list[_StackEntry]  # bottom first
    resolution: tuple[float, float]
    foreign: dict[str, str]
    digest: str


def _read_stack(archive: _Archive) -> _Stack:
    from defusedxml import ElementTree as SafeElementTree  # entity expansion and DTDs refused
    from defusedxml.common import DefusedXmlException

    data = archive.read(STACK_MEMBER, text_caps(archive.limits, archive.file_bytes)[0], "its layer list", sized=True)
    try:
        root = SafeElementTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise archive.fail("has a layer list (stack.xml) with forbidden XML entities or a DTD") from None
    except (ElementTree.ParseError, ValueError, SyntaxError, LookupError) as exc:  # LookupError: unknown encoding
        raise archive.fail(f"has a layer list (stack.xml) that is not valid XML ({_brief(exc)})") from None
    if root.tag != "image":
        raise archive.fail("has a layer list (stack.xml) without an <image> root element")
    width = _xml_int(archive, root, "w")
    height = _xml_int(archive, root, "h")
    _check_canvas_size(archive, width, height)
    resolution = (_xml_resolution(archive, root, "xres"), _xml_resolution(archive, root, "yres"))
    top = root.find("stack")
    if top is None:
        raise archive.fail("has a layer list (stack.xml) without a <stack> element")
    entries: list[_StackEntry] = []
    _read_entries(archive, top, entries, 0.0, 0.0, "", 0)
    return _Stack(width, height, entries, resolution, _foreign(dict(root.attrib), _OWN_IMAGE_ATTRIBUTES),
                  stack_digest(data))


def _read_entries(archive: _Archive, stack: ElementTree.Element, out: list[_StackEntry], dx: float,
                  dy: float, group: str, depth: int) -> None:
    """Layers and nested stacks bottom first, each group right after its members (as Collagen
    keeps them); a nested stack's offset moves what it holds."""
    if depth > archive.limits.max_xml_depth:
        raise archive.fail("has a layer list (stack.xml) nested too deeply")
    for child in reversed(stack):  # stack.xml lists the top layer first
        if child.tag not in ("layer", "stack"):
            continue  # text, filter and future elements: nothing raster to show
        if len(out) >= archive.limits.max_layers:
            raise archive.fail(f"has more than {archive.limits.max_layers} layers")
        x = dx + _xml_float(archive, child, "x", 0.0)
        y = dy + _xml_float(archive, child, "y", 0.0)
        op = child.get("composite-op", "svg:src-over")
        blend = "normal" if op == "svg:src-over" else op[4:] if op.startswith("svg:") else _KRITA_OPS.get(op, "")
        foreign = _foreign(dict(child.attrib), _OWN_ATTRIBUTES)
        if blend not in BLEND_MODES:  # another program's own operation: kept, shown as normal
            blend = "normal"
            foreign["composite-op"] = _XML_UNSAFE.sub("", op[:200])
        entry = _StackEntry(
            src="", name=child.get("name", f"Layer {len(out) + 1}")[:MAX_NAME_CHARS], x=x, y=y,
            opacity=min(max(_xml_float(archive, child, "opacity", 1.0), 0.0), 1.0),
            visible=child.get("visibility", "visible") != "hidden",
            locked=child.get("edit-locked", "false") == "true", blend=blend,
            isolated=child.get("isolation", "auto") != "auto" or op != "svg:src-over"
            or _xml_float(archive, child, "opacity", 1.0) < 1.0,
            group=group, id=f"ora-{len(out):04d}-{depth}", foreign=foreign, background_tile="")
        if child.tag == "stack":  # members first: a group sits right above them, as the panel shows it
            _read_entries(archive, child, out, x, y, entry.id, depth + 1)
            out.append(entry)
            continue
        out.append(entry)
        src = child.get("src")
        if src is None:
            raise archive.fail("has a layer without a src attribute in stack.xml")
        _check_member_name(archive, src)
        entry.src = src
        tile = next((value for key, value in child.attrib.items()
                     if key.rsplit("}", 1)[-1] in ("background_tile", "background-tile")), None)
        if tile:
            _check_member_name(archive, tile)
            entry.background_tile = tile


def _xml_resolution(archive: _Archive, element: ElementTree.Element, key: str) -> float:
    value = _xml_float(archive, element, key, 72.0)
    if not 0 < value <= MAX_RESOLUTION:
        raise archive.fail(f"has a layer list (stack.xml) with an invalid {key} resolution")
    return value


def _xml_int(archive: _Archive, element: ElementTree.Element, key: str) -> int:
    text = element.get(key)
    try:
        return int(text)
    except (TypeError, ValueError):
        raise archive.fail(f"has a layer list (stack.xml) with a missing or invalid {key!r} size") from None


def _xml_float(archive: _Archive, element: ElementTree.Element, key: str, default: float) -> float:
    text = element.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        raise archive.fail(f"has a layer list (stack.xml) with an invalid {key} value {text[:40]!r}")
    return value




def _check_canvas_size(archive: _Archive, width: int, height: int) -> None:
    limits = archive.limits
    archive.canvas_pixels = max(archive.canvas_pixels, width * height)
    if not (0 < width <= limits.max_side and 0 < height <= limits.max_side) or width * height > limits.max_pixels:
        raise archive.fail(f"declares a {width}x{height} px canvas; the limit is {limits.max_side} px per side")


def _check_member_name(archive: _Archive, src: str) -> None:
    """Layer sources must name a member inside the archive, never a path out of it."""
    parts = src.split("/")
    if (not src or len(src) > 1024 or "\\" in src or "\0" in src or src.startswith("/")
            or _DRIVE.match(src) or any(p in ("", ".", "..") for p in parts)):
        raise archive.fail(f"has a layer whose source {src[:80]!r} points outside the project")


def _plain_ora_document(archive: _Archive, stack: _Stack) -> Document:
    layers: list[Layer] = []
    for entry in stack.entries:
        common = dict(name=entry.name, opacity=entry.opacity, visible=entry.visible, locked=entry.locked,
                      blend=entry.blend, group=entry.group, foreign=entry.foreign)
        if not entry.src:
            layers.append(GroupLayer(id=entry.id, isolated=entry.isolated, **common))
            continue
        what = f"the image of layer {entry.name[:60]!r}"
        if entry.background_tile:
            pixels = _tiled(archive.read_png(entry.background_tile, what), stack.width, stack.height, archive)
            layers.append(ImageLayer(id=entry.id, pixels=pixels, **common))
            continue
        pixels = archive.read_png(entry.src, what)
        layers.append(ImageLayer(id=entry.id, pixels=pixels, x=entry.x, y=entry.y, **common))
    return _assemble(archive, stack.width, stack.height, GenerationSettings(), layers)


def _tiled(tile: np.ndarray, width: int, height: int, archive: _Archive) -> np.ndarray:
    """MyPaint's background: its tile repeated over the whole canvas."""
    archive.count_decoded(width * height * 4, archive.fail(
        f"has layers that together exceed the {archive.limits.max_decoded_bytes >> 20} MiB of pixels this "
        "program opens"))
    if not archive.pixels:
        return placeholder(height, width)
    reps_y, reps_x = -(-height // tile.shape[0]), -(-width // tile.shape[1])
    return np.ascontiguousarray(np.tile(tile, (reps_y, reps_x, 1))[:height, :width])


def _assemble(archive: _Archive, width: int, height: int, settings: GenerationSettings,
              layers: list[Layer]) -> Document:
    try:
        document = Document(width, height, settings=settings)
        for layer in layers:
            document.add_layer_untracked(layer)
        if archive.costs:  # a project that could not be shown or saved is refused when opened
            check_cost(document, warp_budget=warp_budget(archive.limits, archive.file_bytes))
    except CostlyDocumentError as exc:  # only what a file of its size may ask for
        raise CostlyFileError(archive.path, str(exc)) from None
    except DocumentError as exc:
        raise archive.fail(str(exc)) from None
    return document


# ---- project.json -----------------------------------------------------------------------------


class _ProjectReader:
    """Builds a Document from project.json, checking every value's type and range."""

    def __init__(self, archive: _Archive):
        self.archive = archive
        self.where = "project.json"
        self.digest: str | None = None  # the stack.xml digest the project was saved with
        self.notes: list[str] = []  # what was left out without refusing the project (one sentence each)

    def fail(self, reason: str) -> ProjectError:
        return self.archive.fail(f"has {reason} in {self.where}")

    def document(self) -> Document:
        try:
            project = self.archive.parsed(PROJECT_MEMBER, lambda: json.loads(
                self.archive.read(PROJECT_MEMBER, text_caps(self.archive.limits, self.archive.file_bytes)[1],
                                  "its project data", sized=True)))
        except RecursionError:
            raise self.archive.fail("has project data (project.json) nested too deeply") from None
        except ValueError as exc:
            raise self.archive.fail(f"has project data (project.json) that is not valid JSON ({_brief(exc)})") from None
        if not isinstance(project, dict):
            raise self.fail("a top level that is not an object")
        version = project.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self.fail("a missing or invalid format_version")
        if version > FORMAT_VERSION:
            raise self.archive.fail(f"was saved by a newer Collagen (project format {version}); "
                                    f"this version reads format {FORMAT_VERSION} and older")
        width, height = self.integer(project, "width"), self.integer(project, "height")
        _check_canvas_size(self.archive, width, height)
        if "stack_digest" in project:
            self.digest = self.text(project, "stack_digest", max_chars=128)
        settings = project.get("settings", {})
        if not isinstance(settings, dict):
            raise self.fail("settings that are not an object")
        records = project.get("layers")
        if not isinstance(records, list):
            raise self.fail("no layer list")
        if len(records) > self.archive.limits.max_layers:
            raise self.archive.fail(f"has more than {self.archive.limits.max_layers} layers")
        layers, ids = [], set()
        for number, record in enumerate(records, 1):
            self.where = f"layer {number} of project.json"
            layer = self.layer(record)
            if layer.id in ids:
                raise self.fail(f"the layer id {layer.id!r} a second time")
            ids.add(layer.id)
            layers.append(layer)
        return _assemble(self.archive, width, height, GenerationSettings.from_dict(settings), layers)

    def layer(self, record: Any) -> Layer:
        if not isinstance(record, dict):
            raise self.fail("a layer that is not an object")
        kind = record.get("kind")
        common = dict(
            id=self.text(record, "id", max_chars=MAX_ID_CHARS, non_empty=True),
            name=self.text(record, "name")[:MAX_NAME_CHARS],
            visible=self.flag(record, "visible"),
            opacity=self.number(record, "opacity", 0.0, 1.0),
            locked=self.flag(record, "locked"),
            blend=self.choice(record, "blend", BLEND_MODES, "normal"),
            group=self.text(record, "group", max_chars=MAX_ID_CHARS) if "group" in record else "",
            foreign=self.foreign(record),
        )
        if kind == "group":
            return GroupLayer(**common, isolated=self.flag(record, "isolated"))
        if kind == "image":
            source = "source" if "source" in record else "src"  # a transformed layer's untransformed pixels
            return ImageLayer(
                **common, pixels=self.png(record, "image", source),
                x=self.number(record, "x", -MAX_COORDINATE, MAX_COORDINATE),
                y=self.number(record, "y", -MAX_COORDINATE, MAX_COORDINATE),
                scale=self.number(record, "scale", 0.0, MAX_SCALE, open_low=True),
                rotation=self.number(record, "rotation", -MAX_COORDINATE, MAX_COORDINATE),
                collage=self.flag(record, "collage"), reference=self.flag(record, "reference"),
                generation=self.generation(record))
        if kind == "mask":
            return MaskLayer(**common, pixels=self.alpha(record, "mask"))
        if kind == "region":
            rect = record.get("rect")
            if not (isinstance(rect, list) and len(rect) == 4):
                raise self.fail("a region rectangle that is not four numbers")
            x, y, w, h = (self.integer({"rect": v}, "rect") for v in rect)
            if w < 0 or h < 0:
                raise self.fail("a region rectangle of negative size")
            return RegionLayer(
                **common, rect=(x, y, w, h),
                mask=self.alpha(record, "region mask") if self.flag(record, "painted") else None,
                prompt=self.text(record, "prompt"), negative=self.text(record, "negative"),
                strength=self.number(record, "strength", *RegionLayer.STRENGTH_RANGE),
                loras=self.loras(record), color=self.color(record, "color"))
        if kind == "scribble":
            mode = record.get("mode")
            if mode not in ("sketch", "annotation"):
                raise self.fail("a scribble mode that is neither 'sketch' nor 'annotation'")
            return ScribbleLayer(**common, mode=mode, strokes=self.strokes(record))
        raise self.fail(f"an unknown layer kind {str(kind)[:40]!r}")

    def generation(self, record: dict) -> dict | None:
        """The layer's generation record; one that is not an object is dropped with a note (the
        layer itself is fine: only Export PNG's parameters for it are lost)."""
        value = record.get("generation")
        if value is None or _storable_record(value):
            return value
        self.notes.append(f"The generation record of {self.where_layer()} is damaged and was left out.")
        return None

    # -- typed fields ----------------------------------------------------------------------
    def choice(self, record: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = record.get(key, default)
        if value not in allowed:
            raise self.fail(f"an unknown {key} {str(value)[:40]!r}")
        return value

    def foreign(self, record: dict) -> dict[str, str]:
        value = record.get("foreign", {})
        if not isinstance(value, dict):
            raise self.fail("other programs' attributes that are not an object")
        return _foreign(value, _OWN_IN_RECORDS)

    def text(self, record: dict, key: str, *, max_chars: int | None = None, non_empty: bool = False) -> str:
        value = record.get(key)
        if not isinstance(value, str) or (non_empty and not value) or (max_chars and len(value) > max_chars):
            raise self.fail(f"a missing or invalid {key}")
        return value

    def flag(self, record: dict, key: str) -> bool:
        value = record.get(key)
        if not isinstance(value, bool):
            raise self.fail(f"a missing or invalid {key} (true or false expected)")
        return value

    def number(self, record: dict, key: str, low: float, high: float, *, open_low: bool = False) -> float:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"a missing or invalid {key}")
        value = float(value)
        if not math.isfinite(value) or value > high or value < low or (open_low and value == low):
            raise self.fail(f"an out-of-range {key} ({value!r})")
        return value

    def integer(self, record: dict, key: str) -> int:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_COORDINATE:
            raise self.fail(f"a missing or invalid {key} (a whole number expected)")
        return value

    def color(self, record: dict, key: str) -> str:
        value = record.get(key)
        try:
            parse_color(value)
        except ValueError:
            raise self.fail(f"an invalid {key} (#rrggbb expected)") from None
        return value

    def src(self, record: dict, key: str = "src") -> str:
        src = self.text(record, key, non_empty=True)
        _check_member_name(self.archive, src)
        return src

    def png(self, record: dict, what: str, key: str = "src") -> np.ndarray:
        return self.archive.read_png(self.src(record, key), f"the {what} of {self.where_layer()}")

    def alpha(self, record: dict, what: str) -> np.ndarray:
        rgba = self.png(record, what)
        return rgba[..., 3] if not self.archive.pixels else np.ascontiguousarray(rgba[..., 3])

    def where_layer(self) -> str:
        return self.where.replace(" of project.json", "")

    def loras(self, record: dict) -> tuple[LoraRef, ...]:
        items = record.get("loras", [])
        if not isinstance(items, list):
            raise self.fail("a LoRA list that is not a list")
        out = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise self.fail("a LoRA that is not [name, weight]")
            out.append(LoraRef(item[0], self.number({"LoRA weight": item[1]}, "LoRA weight",
                                                    -MAX_SCALE, MAX_SCALE)))
        return tuple(out)

    def strokes(self, record: dict) -> tuple[Stroke, ...]:
        items = record.get("strokes")
        if not isinstance(items, list):
            raise self.fail("a stroke list that is not a list")
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("points"), list) or not item["points"]:
                raise self.fail("a stroke without points")
            points = []
            for point in item["points"]:
                if not (isinstance(point, list) and len(point) == 2):
                    raise self.fail("a stroke point that is not [x, y]")
                pair = {"x": point[0], "y": point[1]}
                points.append((self.number(pair, "x", -MAX_COORDINATE, MAX_COORDINATE),
                               self.number(pair, "y", -MAX_COORDINATE, MAX_COORDINATE)))
            out.append(Stroke(points=tuple(points), color=self.color(item, "color"),
                              width=self.number(item, "width", 0.0, MAX_STROKE_WIDTH, open_low=True)))
        return tuple(out)
