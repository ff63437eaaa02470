"""Layered Photoshop (.psd) export and import, through psd-tools.

Export writes what other programs must show, as the OpenRaster export does (canvas.io.ora):
every image layer as its rendered pixels at whole-pixel offsets, opacity, visibility, blend mode
and groups (pass-through groups as Photoshop's pass-through), and masks, regions and scribbles
as hidden layers. The merged image is psd-tools' rendering of those layers. Photoshop has no Porter-Duff
layer operators: a layer using dst-in, dst-out, src-atop or dst-atop is written as normal, and
`save_psd` returns a sentence saying so.

Import reads pixel layers and groups with their opacity, visibility and blend modes; adjustment,
text and smart-object layers come in as their rendered pixels. The file is hostile: its header
is checked against ReadLimits before psd-tools reads it, psd-tools runs under parse and
allocation limits, and any failure is one ProjectError naming the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from canvas.io.atomic import atomic_file
from canvas.io.errors import CostlyFileError, ProjectError
from canvas.io.limits import DEFAULT_LIMITS, MiB, ReadLimits, decode_budget, decode_need
from canvas.model.compose import flatten_layers
from canvas.model.document import Document, DocumentError, GenerationSettings
from canvas.model.layers import MAX_NAME_CHARS, GroupLayer, ImageLayer, Layer

# Collagen blend mode -> psd-tools BlendMode member name (and back).
PSD_BLEND = {
    "normal": "NORMAL", "multiply": "MULTIPLY", "screen": "SCREEN", "overlay": "OVERLAY",
    "darken": "DARKEN", "lighten": "LIGHTEN", "color-dodge": "COLOR_DODGE", "color-burn": "COLOR_BURN",
    "hard-light": "HARD_LIGHT", "soft-light": "SOFT_LIGHT", "difference": "DIFFERENCE", "color": "COLOR",
    "luminosity": "LUMINOSITY", "hue": "HUE", "saturation": "SATURATION", "plus": "LINEAR_DODGE",
}
_FROM_PSD = {value: key for key, value in PSD_BLEND.items()}
PSD_HEADER = struct.Struct(">4sH6xHIIHH")  # signature, version, channels, height, width, depth, mode
RGB_MODE = 3
PSD_NAME_CHARS = 255


def save_psd(document: Document, path: str | os.PathLike[str]) -> list[str]:
    """Write the document as a layered PSD, atomically. Returns notes on what PSD cannot hold."""
    from canvas.io.ora import prepare_layers

    target = Path(path)
    try:
        merged = flatten_layers(document)[0]
        plan = prepare_layers(document)
    except DocumentError as exc:
        raise ProjectError(target, f"cannot be saved: {exc}") from None
    notes: list[str] = []
    try:
        psd = _build(document, plan, merged, notes)
        with atomic_file(target) as fileobj:
            psd.save(fileobj)
    except OSError as exc:
        raise ProjectError(target, f"cannot be written: {exc.strerror or exc}") from None
    except (TypeError, ValueError, struct.error) as exc:
        raise ProjectError(target, f"cannot be saved as PSD: {exc}") from None
    return notes


def _build(document: Document, plan: list, merged: np.ndarray, notes: list[str]):
    from PIL import Image
    from psd_tools import PSDImage
    from psd_tools.api.layers import Group, PixelLayer
    from psd_tools.constants import BlendMode

    # psd-tools renders the merged image from the layers when it saves (PSDImage.save).
    psd = PSDImage.new("RGBA", (document.width, document.height))
    planned_of = {id(p.layer): p for p in plan}
    tree = document.tree()
    unsupported: list[str] = []

    def place(parent, group: GroupLayer | None) -> None:
        for layer in tree.get(group, []):  # psd-tools lists layers bottom first
            planned = planned_of[id(layer)]
            if isinstance(layer, GroupLayer):
                added = Group.new(parent, name="")
                place(added, layer)
            else:
                pixels = planned.rgba()
                added = PixelLayer.frompil(Image.fromarray(np.ascontiguousarray(pixels), "RGBA"), parent,
                                           name="", top=planned.y, left=planned.x)
            # The setter keeps any name in the Unicode block (the legacy one gets "?" where Mac Roman
            # has no character); Photoshop's names end at 255 characters.
            added.name = layer.name[:PSD_NAME_CHARS]
            added.opacity = int(round(min(max(layer.opacity, 0.0), 1.0) * 255))
            added.visible = bool(planned.shown_elsewhere)
            if isinstance(layer, GroupLayer) and not layer.isolated:
                added.blend_mode = BlendMode.PASS_THROUGH
            elif layer.blend in PSD_BLEND:
                added.blend_mode = BlendMode[PSD_BLEND[layer.blend]]
            else:
                unsupported.append(layer.name)

    place(psd, None)
    long_names = sum(len(layer.name) > PSD_NAME_CHARS for layer in document.layers)
    if long_names:
        notes.append(f"Photoshop layer names end at {PSD_NAME_CHARS} characters: {long_names} longer "
                     f"name{'s were' if long_names > 1 else ' was'} cut.")
    if unsupported:
        names = ", ".join(repr(n[:40]) for n in unsupported[:6])
        notes.append(f"Photoshop has no equivalent of the blend mode of {names}: written as normal.")
    return psd


# ---- import -----------------------------------------------------------------------------------


def load_psd(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Document:
    """Open a PSD as image layers and groups. Raises ProjectError; never returns a partial document."""
    source = Path(path)
    fail = lambda reason: ProjectError(source, reason)  # noqa: E731 - one-line helper
    width, height = _check_header(source, limits, fail)
    from psd_tools import PSDImage
    from psd_tools.psd.parse_limits import ParseLimits

    try:
        psd = PSDImage.open(source, parse_limits=ParseLimits(max_total_bytes=limits.max_total_unpacked,
                                                             max_nesting_depth=limits.max_xml_depth),
                            max_alloc_bytes=limits.max_decoded_bytes)
        _check_decode_budget(psd, source, width, height, limits, fail)
        layers: list[Layer] = []
        decoded = [0]
        _read_group(psd, "", layers, limits, decoded, fail, 0)
    except ProjectError:
        raise
    except MemoryError:
        raise fail("is too large to open with the memory available.") from None
    except Exception as exc:  # psd-tools fails in many ways on damaged data
        text = str(exc).strip().rstrip(".")[:120] or type(exc).__name__
        raise fail(f"is damaged or not a Photoshop file psd-tools can read ({text})") from None
    try:
        document = Document(width, height, settings=GenerationSettings())
        for layer in layers:
            document.add_layer_untracked(layer)
    except DocumentError as exc:
        raise fail(str(exc)) from None
    return document


def _check_decode_budget(psd, source: Path, width: int, height: int, limits: ReadLimits, fail) -> None:
    """As for projects (canvas.io.ora): the layers' RGBA from their records, the largest once more and
    the canvas, against what a file of this size may ask for, before any layer is decoded."""
    sizes = [max(item.width, 0) * max(item.height, 0) * 4 for item in psd.descendants() if not item.is_group()]
    need = decode_need(sum(sizes), max(sizes, default=0), width * height)
    budget = decode_budget(limits, source.stat().st_size)
    if need > budget:
        raise CostlyFileError(source, f"its layers and canvas would need {need / MiB:.0f} MiB of memory decoded, more than the "
                   f"{budget / MiB:.0f} MiB a file of its size may ask for (at least {limits.decode_floor >> 20} "
                   f"MiB, else {limits.decode_ratio} times the file's size); it is refused before any layer is decoded")


def _check_header(source: Path, limits: ReadLimits, fail) -> tuple[int, int]:
    try:
        with open(source, "rb") as probe:
            head = probe.read(PSD_HEADER.size)
    except FileNotFoundError:
        raise fail("does not exist") from None
    except IsADirectoryError:
        raise fail("is a folder, not a Photoshop file") from None
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(head) < PSD_HEADER.size or head[:4] != b"8BPS":
        raise fail("is not a Photoshop (.psd) file")
    _, version, channels, height, width, depth, mode = PSD_HEADER.unpack(head)
    if version not in (1, 2):
        raise fail(f"is a Photoshop file of unknown version {version}")
    if mode != RGB_MODE or depth != 8:
        raise fail("is not an 8-bit RGB Photoshop file (the only kind this version opens)")
    if not (0 < width <= limits.max_side and 0 < height <= limits.max_side) or width * height > limits.max_pixels:
        raise fail(f"declares a {width}x{height} px canvas; the limit is {limits.max_side} px per side")
    return width, height


def _read_group(parent, group_id: str, out: list[Layer], limits: ReadLimits, decoded: list[int], fail,
                depth: int) -> None:
    if depth > limits.max_xml_depth:
        raise fail("has groups nested too deeply")
    for item in parent:  # bottom first
        if len(out) >= limits.max_layers:
            raise fail(f"has more than {limits.max_layers} layers")
        mode = item.blend_mode.name if item.blend_mode is not None else "NORMAL"
        common = dict(name=str(item.name)[:MAX_NAME_CHARS], opacity=min(max(item.opacity / 255.0, 0.0), 1.0),
                      visible=bool(item.visible), blend=_FROM_PSD.get(mode, "normal"), group=group_id)
        if item.is_group():
            group = GroupLayer(isolated=mode != "PASS_THROUGH", **common)
            _read_group(item, group.id, out, limits, decoded, fail, depth + 1)
            out.append(group)  # right above its members, as Collagen keeps groups
            continue
        w, h = item.width, item.height
        if w <= 0 or h <= 0:
            continue  # an empty layer (or an adjustment without pixels): nothing to show
        if w > limits.max_side or h > limits.max_side:
            raise fail(f"has a layer of {w}x{h} px; the limit is {limits.max_side} px per side")
        decoded[0] += w * h * 4
        if decoded[0] > limits.max_decoded_bytes:
            raise fail(f"has layers that together exceed the {limits.max_decoded_bytes >> 20} MiB of pixels "
                       "this program opens")
        image = item.topil() if item.has_pixels() else item.composite()
        if image is None:
            continue
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGBA"), np.uint8))
        out.append(ImageLayer(pixels=pixels, x=float(item.left), y=float(item.top), **common))
