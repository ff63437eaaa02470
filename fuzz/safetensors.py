"""Fuzz `inference.safetensors_header.read_safetensors_header`: `python -m fuzz.safetensors --cases 10000`.

Mutations change the JSON header (dtypes, shapes, offsets, metadata, nesting) and recompute the
length prefix, or damage the raw bytes and the prefix itself. The hypothesis strategy builds
headers from drawn entries: real and unknown dtypes, shapes with huge or negative dimensions,
offsets past the end, deep nesting and odd metadata. An accepted header must describe tensors
that lie inside the file with sizes that match their shapes.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

from fuzz.harness import Target
from fuzz.mutator import mutate_safetensors

_KNOWN_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def read(path: Path):
    from inference.safetensors_header import read_safetensors_header

    return read_safetensors_header(path)


def check_result(header, path: Path) -> None:
    from inference.safetensors_header import SafetensorsHeader

    assert isinstance(header, SafetensorsHeader), f"returned {type(header).__name__}"
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    data_size = path.stat().st_size - 8 - length
    for name, info in header.tensors.items():
        assert isinstance(name, str)
        assert 0 <= info.start <= info.end <= data_size, f"{name} lies outside the data ({info})"
        assert all(isinstance(n, int) and n >= 0 for n in info.shape), f"{name} has shape {info.shape}"
        size = _KNOWN_SIZES.get(info.dtype)
        if size is not None:
            count = 1
            for n in info.shape:
                count *= n
            assert count * size == info.end - info.start, f"{name}: shape and byte range disagree"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in header.metadata.items())


def mutate(rng: random.Random, data: bytes) -> bytes:
    return mutate_safetensors(rng, data)


def seeds() -> list[bytes]:
    from fuzz.corpus import safetensors_seeds

    return safetensors_seeds()


def target() -> Target:
    from inference.api import ModelError

    return Target(name="safetensors", suffix=".safetensors", errors=(ModelError,), read=read,
                  check_result=check_result, seeds=seeds, mutate=mutate)


# ---- hypothesis: headers built from entries --------------------------------------------------------


def strategy():
    from hypothesis import strategies as st

    rare = st.sampled_from([False] * 9 + [True])
    dims = st.integers(0, 6) | st.sampled_from([2**31, 2**62, 2**64 + 1, -1, 10**40])
    dtypes = st.sampled_from(list(_KNOWN_SIZES) + ["F4", "C64", "f32", "", "F8_E8M0"]) | st.text(max_size=5)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    )

    @st.composite
    def safetensors_file(draw) -> bytes:
        header: dict = {}
        offset = 0
        for index in range(draw(st.integers(0, 5))):
            dtype = draw(dtypes)
            shape = draw(st.lists(dims, max_size=4))
            count = 1
            for n in shape:
                count *= max(n, 0)
            size = count * _KNOWN_SIZES.get(dtype, 1) if count < 4096 else 16
            start, end = offset, offset + size
            if draw(rare):
                start, end = draw(st.sampled_from([(end, start), (0, 2**64), (-1, 4), (0, 10**30), (3, 3)]))
            entry = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
            if draw(rare):
                entry = draw(json_values) if draw(st.booleans()) else {**entry, draw(st.sampled_from(
                    ["dtype", "shape", "data_offsets"])): draw(json_values)}
            header[draw(st.text(max_size=6)) or f"t{index}"] = entry
            offset = max(offset, end if isinstance(end, int) and 0 <= end < 2**20 else offset)
        if draw(st.booleans()):
            header["__metadata__"] = draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)
                                          | json_values) if draw(rare) else {"format": "pt"}
        raw = json.dumps(header, allow_nan=True).encode("utf-8", "surrogatepass")
        if draw(rare):
            raw = raw[:draw(st.integers(0, len(raw)))]
        length = len(raw)
        if draw(rare):
            length = draw(st.sampled_from([0, len(raw) + 1, len(raw) - 1, 2**63, 2**64 - 1, 100 * 2**20 + 1]))
        data = bytes(max(0, min(offset, 1 << 16) + (draw(st.integers(-4, 4)) if draw(rare) else 0)))
        return struct.pack("<Q", length % 2**64) + raw + data

    return safetensors_file()


if __name__ == "__main__":
    from fuzz.cli import main

    sys.exit(main(target(), strategy))
