"""Limits that readers enforce before they allocate anything a file asks for.

A project or image is hostile until proven otherwise: the sizes it declares (zip member
sizes, PNG IHDR, stack.xml width/height, JSON lengths) are checked against these numbers first,
and what is then actually read is capped at what was declared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from canvas.model.document import MAX_DOCUMENT_SIDE, MAX_LAYERS
from canvas.model.generations import MAX_GENERATIONS

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class ReadLimits:
    max_side: int = MAX_DOCUMENT_SIDE  # px per side of the document and of any one image
    max_pixels: int = 1 << 28  # pixels of any one image (16384 x 16384)
    max_layers: int = MAX_LAYERS
    max_generations: int = MAX_GENERATIONS  # kept generated images (one PNG member each)
    max_members: int = 4 * MAX_LAYERS + MAX_GENERATIONS + 64  # zip entries: layer and generation PNGs, fixed files
    # The zip's central directory, checked before zipfile makes an object for each of its entries:
    # 512 bytes per allowed entry on average is ten times what real layer names need.
    max_directory_bytes: int = (4 * MAX_LAYERS + MAX_GENERATIONS + 64) * 512
    max_total_unpacked: int = 4 * GiB  # sum of the declared sizes of the zip members
    max_decoded_bytes: int = 4 * GiB  # RGBA bytes of all layers decoded together
    # What a project may decode is also bounded by its own size, summed from the PNG headers before
    # any layer is decoded: at least `decode_floor`, else `decode_ratio` times the file's bytes (a
    # flat 16384² PNG packs 1 GiB of RGBA into ~1 MB; real pictures pack 2-10 times). The largest
    # layer counts twice (it is decoded beside the array it becomes) and the canvas 7 bytes a pixel
    # (the picture a save flattens and encodes). With this floor a file under 1 MiB opens and saves
    # within ~600 MiB and ~7 s of CPU on the 2 shared cores measured (docs/RELIABILITY.md).
    decode_floor: int = 512 * MiB
    decode_ratio: int = 512
    # Canvas pixels of scaled or turned layers (compose.warped_pixels), likewise bounded by the file's
    # size: resampling costs ~0.1 us a pixel to compose and ~0.3 us to save (composed, then each layer
    # rendered and encoded) on the 2 shared cores measured, so a file under 1 MiB may ask for about
    # one 4096² canvas of it (opening and saving that takes ~6 s of CPU there).
    warp_floor: int = 20_000_000
    warp_ratio: int = 20  # canvas pixels per byte of file
    # A member larger than `ratio_floor` may unpack to at most `max_ratio` times its packed size:
    # ORA members are PNGs (incompressible) and small XML/JSON, so a high ratio means a bomb.
    max_ratio: int = 200
    ratio_floor: int = 1 * MiB
    max_xml_bytes: int = 16 * MiB
    max_json_bytes: int = 64 * MiB  # parsed JSON takes ~10x its size in memory
    max_xml_depth: int = 64  # nested <stack> elements
    # stack.xml and project.json are parsed whole, and their parsed objects take far more than their
    # bytes (~25x for 16 MiB of `<a/>`, ~20x for 64 MiB of `[],`: 1.6 GB from a 64 KB file). What they
    # may unpack to also follows the file's size: genuine ones pack 3-5 times, so these ratios never
    # bind a real project, and a file under 1 MiB parses within ~0.4 GB.
    xml_floor: int = 2 * MiB
    xml_ratio: int = 4
    json_floor: int = 4 * MiB
    json_ratio: int = 16
    max_text_chunk: int = 1 * MiB  # a PNG text chunk, after decompression
    max_text_total: int = 16 * MiB  # all PNG text chunks of one file together
    max_png_bytes: int = 2 * GiB  # one PNG file (header walk only; pixels are capped above)
    # One project file: its members may unpack to max_total_unpacked, and PNG members are stored
    # (incompressible), so a genuine project is never much larger than that.
    max_project_bytes: int = 4 * GiB + 64 * MiB


def decode_need(layer_bytes: int, largest_layer: int, canvas_pixels: int) -> int:
    """The memory a file's pixels need decoded: every layer's RGBA, the largest once more (it is decoded
    beside the array it becomes) and the canvas, which a save flattens into an RGB picture that Pillow
    copies to encode (3 + 4 bytes a pixel)."""
    return layer_bytes + largest_layer + 7 * canvas_pixels


def decode_budget(limits: ReadLimits, file_bytes: int) -> int:
    """The RGBA bytes a project file of `file_bytes` may decode (see ReadLimits.decode_floor)."""
    return min(limits.max_decoded_bytes, max(limits.decode_floor, limits.decode_ratio * file_bytes))


def text_caps(limits: ReadLimits, file_bytes: int) -> tuple[int, int]:
    """(stack.xml, project.json) bytes a project file of `file_bytes` may unpack them to."""
    return (min(limits.max_xml_bytes, max(limits.xml_floor, limits.xml_ratio * file_bytes)),
            min(limits.max_json_bytes, max(limits.json_floor, limits.json_ratio * file_bytes)))


def warp_budget(limits: ReadLimits, file_bytes: int) -> int:
    """The warped canvas pixels a project file of `file_bytes` may ask for (ReadLimits.warp_floor)."""
    return max(limits.warp_floor, limits.warp_ratio * file_bytes)


def trusting(limits: ReadLimits) -> ReadLimits:
    """The limits for a file the user chose to open anyway (CostlyFileError): what it may decode and
    resample no longer follows its size; every absolute limit stays."""
    return replace(limits, decode_floor=limits.max_decoded_bytes, warp_floor=1 << 62)


DEFAULT_LIMITS = ReadLimits()
