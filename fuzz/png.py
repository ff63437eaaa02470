"""Fuzz `canvas.io.png_info.read_png_parameters`: `python -m fuzz.png --cases 10000 [--seed 0]`.

Mutations work chunk by chunk with correct CRCs (IHDR sizes, text chunk keywords, the JSON and
A1111 text inside tEXt/zTXt/iTXt, compressed text), or on the raw bytes. The hypothesis strategy
builds PNGs from an IHDR of drawn fields and text chunks of drawn keywords and contents.
Accepted results must have the documented shape and types.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import zlib
from pathlib import Path

from fuzz.harness import Target
from fuzz.mutator import PNG_SIGNATURE, mutate_png, png_bytes

RESULT_TYPES = {
    "source": (str,), "prompt": (str,), "negative": (str,), "steps": (int, type(None)),
    "sampler": (str, type(None)), "cfg": (float, type(None)), "seed": (int, type(None)),
    "width": (int, type(None)), "height": (int, type(None)), "model": (str, type(None)),
    "model_hash": (str, type(None)), "extra": (dict,),
}


def read(path: Path):
    from canvas.io.png_info import read_png_parameters

    return read_png_parameters(path)


def check_result(result, path: Path) -> None:
    assert isinstance(result, dict), f"read_png_parameters returned {type(result).__name__}"
    if not result:
        return
    for key, types in RESULT_TYPES.items():
        assert key in result, f"the result has no {key!r}"
        value = result[key]
        assert isinstance(value, types) and not isinstance(value, bool), f"{key} is {type(value).__name__}"
    assert result["source"] in ("collagen", "a1111", "comfyui", "invokeai"), result["source"]
    json.dumps(result["extra"], default=str)  # what the info panel and the CLI print


def mutate(rng: random.Random, data: bytes) -> bytes:
    return mutate_png(rng, data)


def seeds() -> list[bytes]:
    from fuzz.corpus import png_seeds

    return png_seeds()


def target() -> Target:
    from canvas.io.errors import ProjectError

    return Target(name="png", suffix=".png", errors=(ProjectError,), read=read, check_result=check_result,
                  seeds=seeds, mutate=mutate)


# ---- hypothesis: PNGs built from chunks -----------------------------------------------------------


def strategy():
    from hypothesis import strategies as st

    from fuzz.corpus import COMFY_PROMPT, COMFY_WORKFLOW, INVOKE_METADATA, SD_METADATA

    rare = st.sampled_from([False] * 9 + [True])  # hypothesis favours the first choice: the normal case
    known_keywords = st.sampled_from([b"parameters", b"collagen", b"prompt", b"workflow", b"invokeai_metadata",
                                      b"sd-metadata", b"Comment", b"x" * 80, b""])
    keywords = st.one_of(known_keywords, known_keywords, known_keywords, st.binary(max_size=8))
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )
    templates = st.sampled_from([COMFY_PROMPT, COMFY_WORKFLOW, INVOKE_METADATA, SD_METADATA,
                                 {"format_version": 1, "parameters": {"prompt": "x", "steps": 3}}])

    @st.composite
    def json_text(draw) -> bytes:
        if draw(st.booleans()):
            value = draw(templates)
            path_keys = draw(st.lists(st.text(max_size=6), max_size=3))
            node = value = json.loads(json.dumps(value))
            for key in path_keys:  # replace one nested value somewhere with a drawn one
                if isinstance(node, dict) and node:
                    key = sorted(node)[hash(key) % len(node)]
                    if isinstance(node[key], (dict, list)):
                        node = node[key]
                        continue
                    node[key] = draw(json_values)
                    break
        else:
            value = draw(json_values)
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")

    a1111_lines = st.lists(st.sampled_from(["a fox", "Negative prompt: blurry", "Steps: 20, Sampler: Euler a, "
                                            "CFG scale: 7, Seed: 1, Size: 64x64", 'Lora: "a, b", Model: x',
                                            "Steps: 99999999999999999999999, Size: 0x0, Seed: -1", ":" * 50,
                                            '"' * 9, ", , ,:"]) | st.text(max_size=30), max_size=4)
    texts = json_text() | a1111_lines.map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")) \
        | st.binary(max_size=64)

    @st.composite
    def text_chunk(draw) -> tuple[bytes, bytes]:
        keyword, text = draw(keywords), draw(texts)
        kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt"]))
        if kind == b"tEXt":
            return kind, keyword + b"\0" + text
        if kind == b"zTXt":
            method = b"\x01" if draw(rare) else b"\0"
            body = zlib.compress(text)
            if draw(rare):  # cut short inside the compressed stream
                body = body[:draw(st.integers(0, len(body)))]
            return kind, keyword + b"\0" + method + body
        flag = 2 if draw(rare) else draw(st.sampled_from([0, 1]))
        body = zlib.compress(text) if flag == 1 else text
        return kind, keyword + b"\0" + bytes((flag, 0)) + draw(st.sampled_from([b"en\0\0", b"\0\0", b"en"])) + body

    @st.composite
    def png(draw) -> bytes:
        odd_sides = st.sampled_from([16385, 0, 2**31 - 1, 2**32 - 1])
        width = draw(odd_sides) if draw(rare) else draw(st.integers(1, 4))
        height = draw(odd_sides) if draw(rare) else draw(st.integers(1, 4))
        color, depth = draw(st.sampled_from([(2, 8), (6, 8), (0, 8), (0, 1), (3, 8), (4, 16), (2, 3), (9, 8)]))
        interlace = draw(st.sampled_from([0, 1, 2])) if draw(rare) else 0
        ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 3)
        row = 1 + (max(width, 1) * channels * depth + 7) // 8 if width < 64 else 8
        pixels = zlib.compress(b"\0" * row * min(height, 64))
        chunks = [(b"IHDR", ihdr)]
        chunks += draw(st.lists(text_chunk(), max_size=4))
        if color == 3:
            chunks.append((b"PLTE", b"\0\0\0" * 4))
        chunks.append((b"IDAT", pixels))
        chunks += draw(st.lists(text_chunk(), max_size=2))
        chunks.append((b"IEND", b""))
        order = draw(st.permutations(range(len(chunks)))) if draw(rare) else range(len(chunks))
        chunks = [chunks[i] for i in order]
        damaged = draw(st.integers(0, len(chunks) - 1)) if draw(rare) else None
        signature = draw(st.binary(min_size=8, max_size=8)) if draw(rare) and draw(rare) else PNG_SIGNATURE
        return png_bytes(chunks, signature=signature, damaged_crc=damaged)

    return png()


if __name__ == "__main__":
    from fuzz.cli import main

    sys.exit(main(target(), strategy))
