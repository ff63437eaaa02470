"""read_png_parameters under fuzzing, and its text limits enforced before allocation.

The long runs are `python -m fuzz.png --cases 10000`; here a few hundred seeded cases.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from canvas.io.errors import ProjectError
from canvas.io.limits import DEFAULT_LIMITS
from canvas.io.png_info import read_png_parameters
from fuzz import png
from fuzz.harness import run_case, run_mutation
from fuzz.mutator import png_chunk as chunk
from tests.reliability.allocation import peak_allocation, sparse_file

MIB = 1 << 20
TEXT_LIMIT = DEFAULT_LIMITS.max_text_chunk


def test_seeded_mutations_give_parameters_or_one_clear_project_error():
    report = run_mutation(png.target(), cases=300, seed=2024)
    assert report.failures == [], [f"{f.kind}: {f.summary}" for f in report.failures]
    assert report.accepted >= 30 and report.rejected >= 50


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(png.strategy())
def test_generated_pngs_give_parameters_or_one_clear_project_error(data):
    with tempfile.TemporaryDirectory() as folder:
        outcome, summary, _ = run_case(png.target(), data, Path(folder) / "generated.png", time_limit=20)
    assert outcome in ("accepted", "rejected"), summary


# ---- hostile chunks ----------------------------------------------------------------------------------


IHDR = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
IDAT = chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
IEND = chunk(b"IEND", b"")
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_with(path: Path, *chunks: bytes) -> Path:
    path.write_bytes(SIGNATURE + IHDR + b"".join(chunks) + IDAT + IEND)
    return path


def test_a_compressed_text_bomb_inflates_no_further_than_the_text_limit(tmp_path):
    bomb = zlib.compress(b"A" * (64 * MIB), 6)  # 64 MiB of text in ~65 KiB
    path = png_with(tmp_path / "bomb.png", chunk(b"zTXt", b"parameters\0\0" + bomb))
    del bomb
    peak = peak_allocation(lambda: read_png_parameters(path), ProjectError,
                           rf"bomb\.png: .*text chunk longer than the {TEXT_LIMIT} bytes")
    assert peak < 8 * MIB  # the inflater's window and one chunk's worth of text, not 64 MiB


def test_an_international_text_bomb_is_capped_the_same_way(tmp_path):
    bomb = zlib.compress(b"{" * (64 * MIB), 9)
    path = png_with(tmp_path / "bomb.png", chunk(b"iTXt", b"workflow\0\x01\0en\0\0" + bomb))
    peak = peak_allocation(lambda: read_png_parameters(path), ProjectError, "text chunk longer than")
    assert peak < 8 * MIB


def test_a_text_chunk_declaring_half_a_gigabyte_is_refused_before_reading_it(tmp_path):
    length = 512 * MIB
    head = SIGNATURE + IHDR + struct.pack(">I", length) + b"tEXt" + b"parameters\0"
    path = sparse_file(tmp_path / "long.png", head, len(head) - len(b"parameters\0") + length + 4 + len(IEND))
    peak = peak_allocation(lambda: read_png_parameters(path), ProjectError, rf"long\.png: .*text chunk of {length}")
    assert peak < MIB


def test_a_chunk_longer_than_the_file_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "short.png"
    path.write_bytes(SIGNATURE + IHDR + struct.pack(">I", 2**31 - 1) + b"tEXt" + b"parameters\0abc")
    assert peak_allocation(lambda: read_png_parameters(path), ProjectError, r"short\.png: .*truncated") < MIB


def test_many_text_chunks_stop_at_the_total_text_limit(tmp_path):
    piece = b"x" * (TEXT_LIMIT - 16)
    chunks = [chunk(b"tEXt", f"k{i}\0".encode() + piece) for i in range(DEFAULT_LIMITS.max_text_total // len(piece) + 2)]
    path = png_with(tmp_path / "texts.png", *chunks)
    del chunks
    peak = peak_allocation(lambda: read_png_parameters(path), ProjectError, "text chunks together are larger")
    assert peak < DEFAULT_LIMITS.max_text_total + 8 * MIB  # the texts kept so far, and the chunk over the line


def test_image_data_is_checked_and_skipped_without_holding_it(tmp_path):
    big = chunk(b"IDAT", bytes(48 * MIB))
    path = tmp_path / "big.png"
    path.write_bytes(SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 16384, 16384, 8, 6, 0, 0, 0)) + big
                     + chunk(b"tEXt", b"parameters\0a fox\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1") + IEND)
    del big
    import tracemalloc

    tracemalloc.start()
    try:
        found = read_png_parameters(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found["prompt"] == "a fox" and found["steps"] == 2
    assert peak < 4 * MIB  # read in 1 MiB blocks for the CRC, never 48 MiB at once, never 1 GiB of pixels
