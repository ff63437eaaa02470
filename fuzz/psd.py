"""Fuzz `canvas.io.psd.load_psd`: `python -m fuzz.psd --cases 10000 [--seed 0]`.

Mutations: seeded byte edits of PSDs Collagen wrote (layers, groups, blend modes), with the
header's sizes and section lengths edited now and then. The hypothesis strategy builds files from
a header of drawn fields and section lengths followed by drawn bytes. Accepted documents must be
within the limits, hold sound pixels, and compose.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import numpy as np

from fuzz.harness import Target

HEADER = struct.Struct(">4sH6xHIIHH")


def read(path: Path):
    from canvas.io.psd import load_psd

    return load_psd(path)


def check_result(document, path: Path) -> None:
    from canvas.io.limits import DEFAULT_LIMITS
    from canvas.model.compose import compose
    from canvas.model.document import Document, DocumentError
    from canvas.model.layers import BLEND_MODES, ImageLayer

    assert isinstance(document, Document), f"load_psd returned {type(document).__name__}"
    assert 0 < document.width <= DEFAULT_LIMITS.max_side and 0 < document.height <= DEFAULT_LIMITS.max_side
    assert len(document.layers) <= DEFAULT_LIMITS.max_layers
    for layer in document.layers:
        assert layer.blend in BLEND_MODES and 0 <= layer.opacity <= 1
        if isinstance(layer, ImageLayer):
            assert layer.pixels.dtype == np.uint8 and layer.pixels.ndim == 3 and layer.pixels.shape[2] == 4
    if document.width * document.height <= 256 * 256:
        try:
            compose(document)
        except DocumentError:
            pass


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    if rng.random() < 0.3 and len(out) >= HEADER.size:  # the header's declared sizes and kinds
        field = rng.choice([(12, ">H"), (14, ">I"), (18, ">I"), (22, ">H"), (24, ">H"), (4, ">H")])
        at, fmt = field
        value = rng.choice([0, 1, 2, 3, 8, 16, 255, 65535, 30001, 2**31, 2**32 - 1])
        struct.pack_into(fmt, out, at, value & (0xFFFF if fmt == ">H" else 0xFFFFFFFF))
    for _ in range(rng.randint(1, 8)):
        if not out:
            break
        at = rng.randrange(len(out))
        roll = rng.random()
        if roll < 0.5:
            out[at] = rng.randrange(256)
        elif roll < 0.7:  # a length field: four bytes of an extreme value
            out[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
        elif roll < 0.85:
            del out[at:at + rng.randint(1, 64)]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    if rng.random() < 0.05:
        del out[rng.randrange(max(len(out), 1)):]
    return bytes(out)


def seeds() -> list[bytes]:
    from fuzz.corpus import psd_seeds

    return psd_seeds()


def target() -> Target:
    from canvas.io.errors import ProjectError

    return Target(name="psd", suffix=".psd", errors=(ProjectError,), read=read, check_result=check_result,
                  seeds=seeds, mutate=mutate)


def strategy():
    from hypothesis import strategies as st

    @st.composite
    def psd(draw) -> bytes:
        header = HEADER.pack(draw(st.sampled_from([b"8BPS", b"8BPS", b"8BPX"])), draw(st.sampled_from([1, 1, 2, 3])),
                             draw(st.integers(0, 60)), draw(st.integers(0, 40)), draw(st.integers(0, 40)),
                             draw(st.sampled_from([8, 8, 16, 1])), draw(st.sampled_from([3, 3, 1, 4])))
        sections = b"".join(struct.pack(">I", draw(st.sampled_from([0, 4, 12, 2**31, 2**32 - 1])))
                            + draw(st.binary(max_size=24)) for _ in range(draw(st.integers(0, 4))))
        return header + sections + draw(st.binary(max_size=64))

    return psd()


if __name__ == "__main__":
    from fuzz.cli import main

    sys.exit(main(target(), strategy))
