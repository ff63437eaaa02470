"""Limits that readers enforce before they allocate anything a file asks for.

A project or image is hostile until proven otherwise: the sizes it declares (zip member
sizes, PNG IHDR, stack.xml width/height, JSON lengths) are checked against these numbers first,
and what is then actually read is capped at what was declared.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    # A member larger than `ratio_floor` may unpack to at most `max_ratio` times its packed size:
    # ORA members are PNGs (incompressible) and small XML/JSON, so a high ratio means a bomb.
    max_ratio: int = 200
    ratio_floor: int = 1 * MiB
    max_xml_bytes: int = 16 * MiB
    max_json_bytes: int = 64 * MiB  # parsed JSON takes ~10x its size in memory
    max_xml_depth: int = 64  # nested <stack> elements
    max_text_chunk: int = 1 * MiB  # a PNG text chunk, after decompression
    max_text_total: int = 16 * MiB  # all PNG text chunks of one file together
    max_png_bytes: int = 2 * GiB  # one PNG file (header walk only; pixels are capped above)
    # One project file: its members may unpack to max_total_unpacked, and PNG members are stored
    # (incompressible), so a genuine project is never much larger than that.
    max_project_bytes: int = 4 * GiB + 64 * MiB


DEFAULT_LIMITS = ReadLimits()
