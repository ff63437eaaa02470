"""A seeded byte mutator, plus structure-aware mutators for zip, PNG, JSON and safetensors files.

Raw byte mutation mostly breaks checksums, so a reader rejects the input at its first CRC or zip
check. The structure-aware mutators change what is inside a container and then repair the
container (zip members are re-packed with correct CRCs, PNG chunks get correct CRCs, the
safetensors length prefix is recomputed), so the mutated values reach the deeper validators.
Every choice comes from the `random.Random` handed in: the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import json
import random
import struct
import warnings
import zipfile
import zlib
from typing import Any, Callable

# Integers that sit on the edges readers get wrong: sign, width and overflow boundaries.
INTERESTING_INTEGERS = (
    0, 1, 2, 7, 8, 16, 255, 256, 1000, 1024, 4096, 16384, 16385, 65535, 65536,
    0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 53) + 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
)
# Text that means something to a JSON, XML or A1111 parser.
TEXT_TOKENS = (
    b'"', b"'", b"\\", b"{", b"}", b"[", b"]", b",", b":", b"\x00", b"\n", b"\r\n", b"<", b">", b"&",
    b"&amp;", b"&#0;", b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]>", b"<![CDATA[", b"]]>", b"<stack>", b"</stack>",
    b"null", b"true", b"false", b"-1", b"0", b"1e999", b"-1e999", b"NaN", b"Infinity", b"1" * 5000,
    b"18446744073709551616", b"-9223372036854775809", b"\\u0000", b"\\ud800", b"\xff\xfe", b"\xc3\x28",
    b"Negative prompt: ", b"Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64",
    b"[" * 3000, b"{\"a\":" * 3000, b"../../etc/passwd", b"C:\\x", b"/abs/path",
)
# JSON values that probe a validator's type and range checks.
JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 0.5, -0.0, 1e308, -1e308,
    float("inf"), float("-inf"), float("nan"), "", "x", "x" * 70, "#zzzzzz", "#ff0000", "../x.png",
    "data/layer-0000.png", "mimetype", "image", "mask", "region", "scribble", "sketch", [], [0], [0, 0],
    [0, 0, 0, 0], [1e9, 1e9, 1e9, 1e9], [-5, -5, 10, 10], {}, {"points": [[0, 0]]}, [[0, 0]], ["a", 1],
)


class Mutator:
    """Byte-level mutations of one input, `rounds` at a time."""

    def __init__(self, rng: random.Random, *, donors: list[bytes] | None = None):
        self.rng = rng
        self.donors = donors or []
        self.operations: tuple[Callable[[bytearray], None], ...] = (
            self.flip_bit, self.set_byte, self.set_integer, self.insert_bytes, self.delete_span,
            self.duplicate_span, self.insert_token, self.splice_donor, self.truncate, self.swap_spans,
        )

    def mutate(self, data: bytes, rounds: int | None = None) -> bytes:
        out = bytearray(data)
        for _ in range(rounds if rounds is not None else self.rng.choice((1, 1, 1, 2, 3, 5, 8))):
            self.rng.choice(self.operations)(out)
        return bytes(out)

    # -- operations --------------------------------------------------------------------------
    def _position(self, data: bytearray) -> int:
        return self.rng.randrange(len(data) + 1)

    def flip_bit(self, data: bytearray) -> None:
        if data:
            i = self.rng.randrange(len(data))
            data[i] ^= 1 << self.rng.randrange(8)

    def set_byte(self, data: bytearray) -> None:
        if data:
            data[self.rng.randrange(len(data))] = self.rng.choice((0, 1, 0x7F, 0x80, 0xFF, self.rng.randrange(256)))

    def set_integer(self, data: bytearray) -> None:
        width = self.rng.choice((1, 2, 4, 8))
        if len(data) < width:
            return
        value = self.rng.choice(INTERESTING_INTEGERS + (self.rng.getrandbits(8 * width),)) % (1 << (8 * width))
        i = self.rng.randrange(len(data) - width + 1)
        data[i:i + width] = value.to_bytes(width, self.rng.choice(("big", "little")))

    def insert_bytes(self, data: bytearray) -> None:
        i = self._position(data)
        data[i:i] = self.rng.randbytes(self.rng.choice((1, 2, 4, 16, 256)))

    def delete_span(self, data: bytearray) -> None:
        if data:
            i = self.rng.randrange(len(data))
            del data[i:i + self.rng.choice((1, 2, 4, 16, 256, 4096))]

    def duplicate_span(self, data: bytearray) -> None:
        if data:
            i = self.rng.randrange(len(data))
            span = data[i:i + self.rng.choice((1, 4, 16, 256, 4096))]
            j = self._position(data)
            data[j:j] = span * self.rng.choice((1, 2, 16))

    def insert_token(self, data: bytearray) -> None:
        token = self.rng.choice(TEXT_TOKENS)
        i = self._position(data)
        if self.rng.random() < 0.5:
            data[i:i + len(token)] = token
        else:
            data[i:i] = token

    def splice_donor(self, data: bytearray) -> None:
        if not self.donors:
            return self.insert_bytes(data)
        donor = self.rng.choice(self.donors)
        if donor:
            a = self.rng.randrange(len(donor))
            piece = donor[a:a + self.rng.choice((4, 64, 1024, 1 << 20))]
            i = self._position(data)
            data[i:i + (len(piece) if self.rng.random() < 0.5 else 0)] = piece

    def truncate(self, data: bytearray) -> None:
        if data:
            del data[self.rng.randrange(len(data)):]

    def swap_spans(self, data: bytearray) -> None:
        n = self.rng.choice((1, 4, 16))
        if len(data) > n:
            i, j = self.rng.randrange(len(data) - n), self.rng.randrange(len(data) - n)
            data[i:i + n], data[j:j + n] = data[j:j + n], data[i:i + n]


# ---- JSON ---------------------------------------------------------------------------------------


def mutate_json_value(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """The same JSON document with one node replaced, removed or added somewhere inside it."""
    containers = isinstance(value, (dict, list)) and value
    if containers and depth < 12 and rng.random() < 0.8:
        if isinstance(value, dict):
            key = rng.choice(list(value))
            out = dict(value)
            roll = rng.random()
            if roll < 0.12:
                del out[key]
            elif roll < 0.2:
                out[rng.choice(("extra", "format_version", "__metadata__", "kind", "src", key + "_"))] = \
                    rng.choice(JSON_VALUES)
            else:
                out[key] = mutate_json_value(rng, value[key], depth + 1)
            return out
        index = rng.randrange(len(value))
        out = list(value)
        roll = rng.random()
        if roll < 0.1:
            del out[index]
        elif roll < 0.2:
            out.insert(index, rng.choice(out))
        elif roll < 0.25:
            out = out * rng.choice((2, 50))
        else:
            out[index] = mutate_json_value(rng, value[index], depth + 1)
        return out
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(JSON_VALUES)
    if roll < 0.7:
        return _nested(rng.choice((10, 200, 5000)))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * rng.choice((-1, 2, 1000, 10**12)) + rng.choice((0, 1, 0.5))
    if isinstance(value, str):
        return value * rng.choice((2, 1000)) if value else "\u0000" * 3
    return rng.choice(JSON_VALUES)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def dump_json(rng: random.Random, value: Any) -> bytes:
    """JSON text of `value`, sometimes with the formatting choices a foreign writer makes."""
    try:
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    except (RecursionError, ValueError):
        text = "[" * 5000
    return text.encode("utf-8", "surrogatepass")


def mutate_json_bytes(rng: random.Random, data: bytes) -> bytes:
    """Structured mutation when `data` parses as JSON, byte mutation otherwise (or sometimes anyway)."""
    if rng.random() < 0.8:
        try:
            return dump_json(rng, mutate_json_value(rng, json.loads(data)))
        except (ValueError, RecursionError):
            pass
    return Mutator(rng).mutate(data)


# ---- PNG ----------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNK_TYPES = (b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tEXt", b"zTXt", b"iTXt", b"gAMA", b"iCCP", b"eXIf",
               b"acTL", b"cHRM", b"sRGB", b"tIME", b"zzZz", b"ABCD", b"pHYs")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, body) of every chunk, or None when the bytes do not split cleanly into chunks."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    chunks, i = [], 8
    while i + 12 <= len(data):
        length, ctype = struct.unpack(">I4s", data[i:i + 8])
        if i + 12 + length > len(data):
            return None
        chunks.append((ctype, data[i + 8:i + 8 + length]))
        i += 12 + length
    return chunks if i == len(data) else None


def png_chunk(ctype: bytes, body: bytes, *, damaged_crc: bool = False) -> bytes:
    """One PNG chunk: length, type, body and its CRC (flipped in one bit when `damaged_crc`)."""
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    if damaged_crc:
        crc ^= 1
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def png_bytes(chunks: list[tuple[bytes, bytes]], *, signature: bytes = PNG_SIGNATURE,
              damaged_crc: int | None = None) -> bytes:
    out = bytearray(signature)
    for index, (ctype, body) in enumerate(chunks):
        out += png_chunk(ctype, body, damaged_crc=index == damaged_crc)
    return bytes(out)


def text_chunk(rng: random.Random, keyword: bytes, text: bytes) -> tuple[bytes, bytes]:
    kind = rng.choice((b"tEXt", b"zTXt", b"iTXt", b"iTXt"))
    if kind == b"tEXt":
        return kind, keyword + b"\0" + text
    if kind == b"zTXt":
        return kind, keyword + b"\0\0" + zlib.compress(text)
    compressed = rng.random() < 0.5
    body = zlib.compress(text) if compressed else text
    return kind, keyword + b"\0" + bytes((int(compressed), 0)) + b"en\0\0" + body


def mutate_png(rng: random.Random, data: bytes) -> bytes:
    """Chunk-level mutation with correct CRCs (mostly), so checks past the CRC see the damage."""
    chunks = png_chunks(data)
    if chunks is None or rng.random() < 0.15:
        return Mutator(rng).mutate(data)
    chunks = list(chunks)
    for _ in range(rng.choice((1, 1, 2, 3))):
        roll = rng.random()
        index = rng.randrange(len(chunks)) if chunks else 0
        if not chunks or roll < 0.1:
            chunks.insert(index, (rng.choice(CHUNK_TYPES), rng.randbytes(rng.choice((0, 1, 13, 100)))))
        elif roll < 0.35:  # the body of a chunk (IHDR fields, compressed text, pixel data)
            ctype, body = chunks[index]
            chunks[index] = (ctype, _mutate_chunk_body(rng, ctype, body))
        elif roll < 0.45:
            del chunks[index]
        elif roll < 0.55:
            chunks.insert(rng.randrange(len(chunks) + 1), chunks[index])
        elif roll < 0.62:
            chunks[index] = (rng.choice(CHUNK_TYPES), chunks[index][1])
        elif roll < 0.72:
            chunks.insert(index, text_chunk(rng, rng.choice((b"parameters", b"collagen", b"prompt", b"workflow",
                                                               b"invokeai_metadata", b"sd-metadata", b"x" * 80)),
                                            rng.choice(TEXT_TOKENS) * rng.choice((1, 10, 1000))))
        elif roll < 0.8:
            j = rng.randrange(len(chunks))
            chunks[index], chunks[j] = chunks[j], chunks[index]
        else:
            ctype, body = chunks[index]
            if ctype == b"IHDR" and len(body) == 13:  # declared sizes are what allocations follow
                width = rng.choice(INTERESTING_INTEGERS) & 0xFFFFFFFF
                height = rng.choice(INTERESTING_INTEGERS) & 0xFFFFFFFF
                chunks[index] = (ctype, struct.pack(">II", width, height) + body[8:])
            else:
                chunks[index] = (ctype, Mutator(rng).mutate(body))
    damaged = rng.randrange(len(chunks)) if chunks and rng.random() < 0.05 else None
    return png_bytes(chunks, damaged_crc=damaged)


def _mutate_chunk_body(rng: random.Random, ctype: bytes, body: bytes) -> bytes:
    if ctype in (b"tEXt", b"zTXt", b"iTXt"):
        keyword, _, rest = body.partition(b"\0")
        text = _text_of_chunk(ctype, rest)
        if text is not None and rng.random() < 0.8:
            mutated = mutate_json_bytes(rng, text) if text[:1] in (b"{", b"[") else Mutator(rng).mutate(text)
            return text_chunk(rng, keyword, mutated)[1]
    if ctype == b"IDAT" and rng.random() < 0.5:
        try:
            raw = zlib.decompress(body)
            return zlib.compress(Mutator(rng).mutate(raw))
        except zlib.error:
            pass
    return Mutator(rng).mutate(body)


def _text_of_chunk(ctype: bytes, rest: bytes) -> bytes | None:
    try:
        if ctype == b"tEXt":
            return rest
        if ctype == b"zTXt":
            return zlib.decompress(rest[1:])
        flag = rest[0]
        _lang, _, rest = rest[2:].partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return zlib.decompress(text) if flag else text
    except (zlib.error, IndexError):
        return None


# ---- zip (OpenRaster) ---------------------------------------------------------------------------


def zip_members(data: bytes) -> list[tuple[str, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [(info.filename, archive.read(info)) for info in archive.infolist()]
    except Exception:  # noqa: BLE001 - zipfile, zlib and friends each fail their own way on damaged data
        return None


def zip_bytes(members: list[tuple[str, bytes]], rng: random.Random | None = None) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate names are one of the mutations
        for name, body in members:
            method = zipfile.ZIP_STORED
            if rng is not None and rng.random() < 0.3:
                method = zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            archive.writestr(info, body)
    return buffer.getvalue()


def mutate_zip(rng: random.Random, data: bytes, member_mutators: dict[str, Callable[[random.Random, bytes], bytes]]
               ) -> bytes:
    """Mutate the members of a zip (by file suffix) and re-pack it; sometimes mutate the raw bytes."""
    members = zip_members(data)
    if members is None or rng.random() < 0.15:
        return Mutator(rng).mutate(data)
    members = list(members)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        roll = rng.random()
        index = rng.randrange(len(members)) if members else 0
        if not members or roll < 0.05:
            members.insert(index, (rng.choice(("data/extra.png", "mimetype", "stack.xml", "x" * 300)),
                                   rng.randbytes(rng.choice((0, 10, 1000)))))
        elif roll < 0.8:
            name, body = members[index]
            suffix = name.rsplit(".", 1)[-1] if "." in name else ""
            mutate = member_mutators.get(suffix) or (lambda r, b: Mutator(r).mutate(b))
            members[index] = (name, mutate(rng, body))
        elif roll < 0.87:
            del members[index]
        elif roll < 0.93:
            name, body = members[index]
            new_name = rng.choice(("../evil.png", "/abs.png", "data\\x.png", name + "x", name.upper(), "",
                                   "data/layer-0000.png", "data/collagen/project.json"))
            members[index] = (new_name, body)
        else:
            j = rng.randrange(len(members))
            members[index], members[j] = members[j], members[index]
    try:
        packed = zip_bytes(members, rng)
    except (ValueError, OSError):  # an unpackable name (for example an empty one)
        return Mutator(rng).mutate(data)
    return Mutator(rng).mutate(packed, 1) if rng.random() < 0.05 else packed


def mutate_xml(rng: random.Random, data: bytes) -> bytes:
    """Attribute-level XML mutation: a value replaced with an interesting one, or bytes mutated."""
    text = data
    quotes = [i for i in range(len(text)) if text[i:i + 1] == b'"']
    if len(quotes) >= 2 and rng.random() < 0.75:
        k = rng.randrange(len(quotes) // 2) * 2
        start, end = quotes[k] + 1, quotes[k + 1]
        value = rng.choice((b"", b"-1", b"0", b"1e999", b"nan", b"16385", b"99999999999999999999", b"hidden",
                            b"../../x.png", b"/etc/passwd", b"data/layer-0000.png", b"&amp;", b"1" * 5000,
                            str(rng.choice(INTERESTING_INTEGERS)).encode()))
        return text[:start] + value + text[end:]
    return Mutator(rng).mutate(data)


# ---- safetensors --------------------------------------------------------------------------------


def split_safetensors(data: bytes) -> tuple[bytes, bytes] | None:
    if len(data) < 8:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    if 8 + length > len(data):
        return None
    return data[8:8 + length], data[8 + length:]


def mutate_safetensors(rng: random.Random, data: bytes) -> bytes:
    """Header mutation with the length prefix recomputed (mostly), or raw byte mutation."""
    parts = split_safetensors(data)
    if parts is None or rng.random() < 0.15:
        return Mutator(rng).mutate(data)
    header, body = parts
    roll = rng.random()
    if roll < 0.6:
        header = mutate_json_bytes(rng, header)
    elif roll < 0.75:
        header = Mutator(rng).mutate(header)
    elif roll < 0.85:
        body = Mutator(rng).mutate(body)
    length = len(header)
    if rng.random() < 0.1:
        length = rng.choice(INTERESTING_INTEGERS + (length + 1, length - 1)) % (1 << 64)
    return struct.pack("<Q", length) + header + body
