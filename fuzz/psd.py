"""Fuzz `canvas.io.psd.load_psd`: `python -m fuzz.psd --cases 10000 [--seed 0]`.

Mutations: seeded byte edits of PSDs Collagen wrote (layers, groups, blend modes), with the
header's sizes and section lengths edited now and then. The hypothesis strategy writes layered
PSDs from drawn documents and then lies in their header or layer records half the time. Accepted documents must be
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
    """Layered PSDs written from drawn documents (image layers and nested groups with drawn blend
    modes, opacities, visibility and offsets), then, half the time, one header field or a length in
    the layer records replaced by a drawn lie and the tail cut or padded: the reader meets real
    layer records, not only random bytes."""
    from hypothesis import strategies as st

    from canvas.io.psd import PSD_BLEND

    @st.composite
    def document(draw):
        from canvas.model.document import Document
        from canvas.model.layers import GroupLayer, ImageLayer

        doc = Document(draw(st.integers(1, 48)), draw(st.integers(1, 48)))
        groups = [""]
        for index in range(draw(st.integers(0, 5))):
            common = dict(id=f"l{index}", name=draw(st.text(max_size=12)), group=draw(st.sampled_from(groups)),
                          opacity=draw(st.floats(0, 1)), visible=draw(st.booleans()),
                          blend=draw(st.sampled_from(sorted(PSD_BLEND))))
            if draw(st.integers(0, 3)) == 0:
                doc.add_layer_untracked(GroupLayer(isolated=draw(st.booleans()), **common))
                groups.append(f"l{index}")
                continue
            w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
            pixels = np.frombuffer(draw(st.binary(min_size=w * h * 4, max_size=w * h * 4)), np.uint8)
            doc.add_layer_untracked(ImageLayer(pixels=pixels.reshape(h, w, 4).copy(),
                                               x=float(draw(st.integers(-8, 40))), y=float(draw(st.integers(-8, 40))),
                                               **common))
        return doc

    @st.composite
    def psd(draw) -> bytes:
        import tempfile

        from canvas.io.psd import save_psd

        with tempfile.TemporaryDirectory(prefix="collagen-fuzz-psd-") as folder:
            path = Path(folder) / "drawn.psd"
            save_psd(draw(document()), path)
            data = bytearray(path.read_bytes())
        if draw(st.booleans()):
            at, fmt = draw(st.sampled_from([(4, ">H"), (12, ">H"), (14, ">I"), (18, ">I"), (22, ">H"), (24, ">H"),
                                            (26, ">I")]))
            lie = draw(st.sampled_from([0, 1, 2, 3, 16, 30001, 65535, 2**31, 2**32 - 1]))
            struct.pack_into(fmt, data, at, lie & (0xFFFF if fmt == ">H" else 0xFFFFFFFF))
        if draw(st.booleans()) and len(data) > 30:  # somewhere in the layer records: a length of extremes
            at = draw(st.integers(26, len(data) - 4))
            data[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                                    b"\x7f\xff\xff\xff"]))
        cut = draw(st.sampled_from([None, None, None, 0.5, 0.9]))
        if cut is not None:
            del data[int(len(data) * cut):]
        return bytes(data) + draw(st.binary(max_size=16))

    return psd()


if __name__ == "__main__":
    from fuzz.cli import main

    sys.exit(main(target(), strategy))
