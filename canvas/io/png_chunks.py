"""PNG structure, read defensively: signature, IHDR, every chunk's length and CRC, text chunks.

Both readers (OpenRaster layers and PNG parameters) walk a PNG here before anything decodes
it, so sizes are known and checked before a single pixel is allocated and a damaged file
fails with one sentence instead of an exception from deep inside a decoder.
Failures raise `PngFormatError(reason)`; callers turn it into a ProjectError naming their file.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from canvas.io.limits import ReadLimits

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KNOWN_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_TEXT_TYPES = {b"tEXt", b"zTXt", b"iTXt"}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_MAX_CHUNK = (1 << 31) - 1
_BLOCK = 1 << 20


class PngFormatError(ValueError):
    """The bytes are not a PNG this program accepts; the message is a sentence fragment."""


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool

    @property
    def raw_bytes(self) -> int:
        """Bytes of the unfiltered image data (without per-row filter bytes or interlacing)."""
        return self.height * ((self.width * _CHANNELS[self.color_type] * self.bit_depth + 7) // 8)


@dataclass
class PngInfo:
    header: PngHeader
    texts: dict[str, str] = field(default_factory=dict)  # keyword -> text (first of each keyword)
    file_bytes: int = 0


def parse_header(data: bytes) -> PngHeader:
    """Decode the 13 bytes of an IHDR chunk, checking every field."""
    if len(data) != 13:
        raise PngFormatError("its IHDR header chunk has the wrong length")
    width, height, depth, color, compression, filtering, interlace = struct.unpack(">IIBBBBB", data)
    if width == 0 or height == 0 or width > _MAX_CHUNK or height > _MAX_CHUNK:
        raise PngFormatError(f"its header declares an impossible size of {width}x{height} px")
    if color not in _DEPTHS or depth not in _DEPTHS[color]:
        raise PngFormatError(f"its header declares an invalid colour type {color} with bit depth {depth}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise PngFormatError("its header declares an unknown compression, filter or interlace method")
    return PngHeader(width, height, depth, color, bool(interlace))


def check_dimensions(header: PngHeader, limits: ReadLimits) -> None:
    if header.width > limits.max_side or header.height > limits.max_side:
        raise PngFormatError(
            f"it is {header.width}x{header.height} px, larger than the {limits.max_side} px per side allowed")
    if header.width * header.height > limits.max_pixels:
        raise PngFormatError(
            f"it is {header.width}x{header.height} px, more than the {limits.max_pixels} pixels allowed")


def read_png_info(stream: BinaryIO, limits: ReadLimits, *, want_text: bool = True) -> PngInfo:
    """Walk every chunk of a PNG stream up to IEND, verifying lengths and CRCs.

    Keeps the header and (when `want_text`) the decoded text chunks; pixel data is checked and
    skipped in blocks, never held. Raises PngFormatError for anything malformed or over the limits.
    """
    size = _stream_size(stream)
    if stream.read(8) != SIGNATURE:
        raise PngFormatError("it is not a PNG image (the PNG signature is missing)")
    info: PngInfo | None = None
    total = 8
    text_total = 0
    seen_idat = False
    while True:
        head = stream.read(8)
        if len(head) < 8:
            raise PngFormatError("it is truncated (the image ends before its last chunk)")
        length, ctype = struct.unpack(">I4s", head)
        total += 12 + length
        if size is not None and total > size:
            raise PngFormatError("it is truncated (a chunk ends early)")
        if length > _MAX_CHUNK or total > limits.max_png_bytes:
            raise PngFormatError("it declares a chunk larger than this program reads")
        if not all(65 <= c <= 90 or 97 <= c <= 122 for c in ctype):
            raise PngFormatError("it has a damaged chunk (invalid chunk type)")
        if info is None and ctype != b"IHDR":
            raise PngFormatError("it does not start with an IHDR header chunk")
        is_text = want_text and ctype in _TEXT_TYPES
        if is_text and length > limits.max_text_chunk + 65536:
            raise PngFormatError(f"it has a text chunk of {length} bytes, more than the "
                                 f"{limits.max_text_chunk} bytes allowed")
        keep = ctype in (b"IHDR", b"IEND") or is_text
        crc = zlib.crc32(ctype)
        body = bytearray() if keep else None
        left = length
        while left:
            block = stream.read(min(left, _BLOCK))
            if not block:
                raise PngFormatError("it is truncated (a chunk ends early)")
            crc = zlib.crc32(block, crc)
            if body is not None:
                body += block
            left -= len(block)
        stored = stream.read(4)
        if len(stored) < 4:
            raise PngFormatError("it is truncated (a chunk ends early)")
        if struct.unpack(">I", stored)[0] != crc & 0xFFFFFFFF:
            raise PngFormatError(f"its {ctype.decode('ascii')} chunk is damaged (checksum mismatch)")
        if ctype == b"IHDR":
            if info is not None:
                raise PngFormatError("it has two IHDR header chunks")
            info = PngInfo(parse_header(bytes(body)))
        elif ctype == b"IDAT":
            seen_idat = True
        elif ctype == b"IEND":
            if not seen_idat:
                raise PngFormatError("it has no image data")
            info.file_bytes = total
            return info
        elif is_text:
            keyword, text = decode_text_chunk(ctype, bytes(body), limits)
            text_total += len(text)
            if text_total > limits.max_text_total:
                raise PngFormatError("its text chunks together are larger than this program reads")
            info.texts.setdefault(keyword, text)
        elif ctype[0] < 97 and ctype not in _KNOWN_CRITICAL:
            raise PngFormatError(f"it has an unknown critical chunk {ctype.decode('ascii')}")


def _stream_size(stream: BinaryIO) -> int | None:
    """Total bytes of a seekable stream (so a declared chunk length can be checked before reading)."""
    try:
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
        return end
    except (OSError, ValueError, AttributeError):
        return None


def decode_text_chunk(ctype: bytes, body: bytes, limits: ReadLimits) -> tuple[str, str]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk; compressed text is capped while inflating."""
    keyword_bytes, sep, rest = body.partition(b"\0")
    if not sep or not 1 <= len(keyword_bytes) <= 79:
        raise PngFormatError("it has a damaged text chunk (bad keyword)")
    keyword = keyword_bytes.decode("latin-1")
    if ctype == b"tEXt":
        raw, encoding = rest, "latin-1"
    elif ctype == b"zTXt":
        if not rest or rest[0] != 0:
            raise PngFormatError("it has a compressed text chunk with an unknown compression method")
        raw, encoding = _inflate(rest[1:], limits), "latin-1"
    else:
        if len(rest) < 2:
            raise PngFormatError("it has a damaged international text chunk")
        compressed, method = rest[0], rest[1]
        _language, sep1, rest = rest[2:].partition(b"\0")
        _translated, sep2, raw = rest.partition(b"\0")
        if not (sep1 and sep2) or compressed not in (0, 1) or (compressed and method != 0):
            raise PngFormatError("it has a damaged international text chunk")
        if compressed:
            raw = _inflate(raw, limits)
        encoding = "utf-8"
    if len(raw) > limits.max_text_chunk:
        raise PngFormatError(f"it has a text chunk longer than the {limits.max_text_chunk} bytes allowed")
    return keyword, raw.decode(encoding, errors="replace")


def _inflate(data: bytes, limits: ReadLimits) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limits.max_text_chunk + 1)
    except zlib.error:
        raise PngFormatError("it has a compressed text chunk that cannot be decompressed") from None
    if len(out) > limits.max_text_chunk:
        raise PngFormatError(f"it has a text chunk longer than the {limits.max_text_chunk} bytes allowed")
    if not inflater.eof:
        raise PngFormatError("it has a compressed text chunk that is cut short")
    return out


# ---- decoding pixels, after the walk has vouched for the file ---------------------------------


# Deflate cannot pack more than ~1032 bytes into one; a PNG declaring far more pixel bytes than
# that per byte of file is truncated or hostile, and is refused before the decoder allocates.
_MAX_INFLATE_RATIO = 1100
_STRIP_PIXELS = 1 << 18


def check_inflate_ratio(header: PngHeader, file_bytes: int) -> None:
    """Refuse a PNG whose file is too small to hold the pixels its header declares."""
    if header.raw_bytes > _MAX_INFLATE_RATIO * max(file_bytes, 1):
        raise PngFormatError("its pixel data is far smaller than its declared size (truncated or forged)")


def decode_png(data: bytes, limits: ReadLimits, *, mode: str = "RGBA") -> np.ndarray:
    """Validate and decode PNG bytes to an HxWx4 (mode "RGBA") uint8 array."""
    info = read_png_info(io.BytesIO(data), limits, want_text=False)
    header = info.header
    check_dimensions(header, limits)
    check_inflate_ratio(header, len(data))
    # Imported here: Pillow is only needed once a project or image is actually opened.
    from PIL import Image, PngImagePlugin

    try:
        # PngImageFile directly, not Image.open: Pillow's own bomb guard would refuse legitimate
        # 16384 px layers; the limits above already did that job.
        image = PngImagePlugin.PngImageFile(io.BytesIO(data))
        image.load()
        # Converted a strip of rows at a time into the one array returned: converting the whole image
        # at once held the decoded image, its conversion, Pillow's bytes of it and a writable copy
        # together (13 bytes per pixel for a 1-bit PNG, 835 MiB for an 8192² layer of 256 MiB).
        width, height = image.size
        channels = len(mode) if mode not in ("1", "P", "I", "F") else 1
        array = np.empty((height, width, channels) if channels > 1 else (height, width), np.uint8)
        rows = max(1, _STRIP_PIXELS // max(width, 1))
        for top in range(0, height, rows):
            strip = image.crop((0, top, width, min(height, top + rows)))
            if strip.mode in ("I;16", "I;16B", "I;16L", "I"):
                strip = Image.fromarray((np.asarray(strip, dtype=np.uint32) >> 8).astype(np.uint8), "L")
            array[top:top + rows] = np.asarray(strip.convert(mode))
    except Exception as exc:  # a decoder can fail in many ways on crafted data; all mean "damaged"
        raise PngFormatError(f"its pixel data cannot be decoded ({type(exc).__name__})") from None
    if array.shape[:2] != (header.height, header.width):
        raise PngFormatError("its decoded size does not match its header")
    return array


PNG_HEADER_BYTES = 33  # signature and IHDR chunk: all peek_header needs
# Ancillary chunks (ICC profiles, text, EXIF) come on top of the pixel data; real files carry far less.
ANCILLARY_ALLOWANCE = 64 * 1024 * 1024


def plausible_file_bytes(header: PngHeader) -> int:
    """The most bytes a genuine PNG with this header can need: its filtered pixel data stored
    uncompressed, doubled for the most wasteful chunk and deflate-block framing, plus metadata."""
    return 2 * (header.raw_bytes + header.height) + ANCILLARY_ALLOWANCE


def peek_header(data: bytes) -> PngHeader:
    """The checked IHDR of PNG bytes, from their first 33 bytes only (before any budget is spent)."""
    if data[:8] != SIGNATURE:
        raise PngFormatError("it is not a PNG image (the PNG signature is missing)")
    if len(data) < PNG_HEADER_BYTES:
        raise PngFormatError("it is truncated (the image ends before its last chunk)")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise PngFormatError("it does not start with an IHDR header chunk")
    if struct.unpack(">I", data[29:33])[0] != zlib.crc32(data[12:29]) & 0xFFFFFFFF:
        raise PngFormatError("its IHDR chunk is damaged (checksum mismatch)")
    return parse_header(data[16:29])
