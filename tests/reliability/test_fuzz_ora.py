"""load_ora under fuzzing, and its limits enforced before anything a hostile header asks for is allocated.

The long runs are `python -m fuzz.ora --cases 10000`; here a few hundred seeded cases keep the
property in the regular suite: a ProjectError with one sentence, or a sound project that saves again.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from canvas.io.errors import ProjectError
from canvas.io.limits import DEFAULT_LIMITS, ReadLimits
from canvas.io.ora import load_ora
from fuzz import ora
from fuzz.corpus import _png_of
from fuzz.harness import run_case, run_mutation
from fuzz.mutator import png_chunk as chunk
from tests.reliability.allocation import peak_allocation

MIB = 1 << 20
SMALL = 2 * MIB  # what refusing a hostile header may cost: a few small objects, never the request


def test_seeded_mutations_give_a_project_or_one_clear_project_error():
    report = run_mutation(ora.target(), cases=120, seed=2024)
    assert report.failures == [], [f"{f.kind}: {f.summary}" for f in report.failures]
    assert report.accepted >= 10 and report.rejected >= 30  # the mutations reach both outcomes


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(ora.strategy())
def test_generated_archives_give_a_project_or_one_clear_project_error(archive):
    with tempfile.TemporaryDirectory() as folder:
        outcome, summary, _ = run_case(ora.target(), archive, Path(folder) / "generated.ora", time_limit=20)
    assert outcome in ("accepted", "rejected"), summary


# ---- hostile archives ------------------------------------------------------------------------------


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG whose header declares width x height RGBA but whose data is a few bytes."""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def stack_xml(width: int, height: int, sources: list[str]) -> bytes:
    layers = "".join(f'<layer src="{src}" name="l{i}"/>' for i, src in enumerate(sources))
    return f'<?xml version="1.0"?><image w="{width}" h="{height}"><stack>{layers}</stack></image>'.encode()


def archive(members: list[tuple[str, bytes]], *, deflate: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("mimetype"), b"image/openraster")
        for name, data in members:
            zipped.writestr(name, data, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    return buffer.getvalue()


def declare_size(data: bytes, name: str, size: int, *, packed: int | None = None) -> bytes:
    """The archive with `name`'s central directory entry claiming `size` bytes unpacked (and `packed` packed)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack("<H", out[at + 28:at + 30])[0]
        if out[at + 46:at + 46 + name_length] == name.encode():
            out[at + 24:at + 28] = struct.pack("<I", size)
            if packed is not None:
                out[at + 20:at + 24] = struct.pack("<I", packed)
            return bytes(out)
        at = out.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} is not in the archive")


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "hostile.ora"
    path.write_bytes(data)
    return path


def test_a_member_claiming_gigabytes_is_a_zip_bomb_refused_before_reading(tmp_path):
    data = archive([("stack.xml", stack_xml(8, 8, ["data/a.png"])), ("data/a.png", bytes(4096))], deflate=True)
    path = write(tmp_path, declare_size(data, "data/a.png", 3_900_000_000))
    assert peak_allocation(lambda: load_ora(path), ProjectError, r"hostile\.ora: looks like a zip bomb") < SMALL


def test_members_claiming_more_than_the_unpacked_total_are_refused_before_reading(tmp_path):
    data = archive([("stack.xml", stack_xml(8, 8, [])), ("a.bin", bytes(16)), ("b.bin", bytes(16))])
    data = declare_size(declare_size(data, "a.bin", 3_000_000_000, packed=3_000_000_000), "b.bin",
                        3_000_000_000, packed=3_000_000_000)
    peak = peak_allocation(lambda: load_ora(write(tmp_path, data)), ProjectError, "unpacks to more than 4096 MiB")
    assert peak < SMALL


def test_project_data_larger_than_its_cap_is_refused_before_reading(tmp_path):
    data = archive([("stack.xml", stack_xml(8, 8, [])), ("data/collagen/project.json", b"{}")])
    data = declare_size(data, "data/collagen/project.json", DEFAULT_LIMITS.max_json_bytes + 1)
    peak = peak_allocation(lambda: load_ora(write(tmp_path, data)), ProjectError, "project data .* more than")
    assert peak < SMALL


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (16_385, 8), (2**31, 1)])
def test_a_canvas_over_the_pixel_limits_is_refused_before_allocating(tmp_path, width, height):
    path = write(tmp_path, archive([("stack.xml", stack_xml(width, height, []))]))
    assert peak_allocation(lambda: load_ora(path), ProjectError, rf"declares a {width}x{height} px canvas") < SMALL


@pytest.mark.parametrize("width, height, message", [
    (16_385, 16_385, "larger than the 16384 px per side"),
    (16_384, 16_384, "far smaller than its declared size"),  # within the limits: 1 GiB of RGBA, never decoded
    (1_000_000, 1, "larger than the 16384 px per side"),
])
def test_a_layer_declaring_huge_pixels_is_refused_without_decoding(tmp_path, width, height, message):
    data = archive([("stack.xml", stack_xml(64, 64, ["data/a.png"])), ("data/a.png", png_declaring(width, height))])
    assert peak_allocation(lambda: load_ora(write(tmp_path, data)), ProjectError, message) < SMALL


def test_a_layer_padded_far_beyond_its_pixels_is_refused_before_it_is_unpacked(tmp_path):
    padding = np.zeros(66 * MIB, np.uint8)  # more than a 4x4 image's pixels plus 64 MiB of metadata
    padding[np.random.default_rng(0).integers(0, padding.size, padding.size // 200)] = 1  # packs ~100x
    padding = padding.tobytes()
    png = png_declaring(4, 4)
    png = png[:33] + chunk(b"zzPd", padding) + png[33:]
    path = write(tmp_path, archive([("stack.xml", stack_xml(4, 4, ["data/a.png"])), ("data/a.png", png)], deflate=True))
    del padding, png
    assert path.stat().st_size < 4 * MIB
    assert peak_allocation(lambda: load_ora(path), ProjectError, "far more than a 4x4 px image needs") < SMALL


def test_the_decoded_pixel_budget_stops_before_the_layer_that_would_exceed_it(tmp_path):
    layer = _png_of(np.zeros((512, 512, 4), np.uint8))  # 1 MiB of RGBA each, a few hundred bytes packed
    names = [f"data/{i}.png" for i in range(6)]
    path = write(tmp_path, archive([("stack.xml", stack_xml(512, 512, names))] + [(n, layer) for n in names]))
    limits = ReadLimits(max_decoded_bytes=3 * MIB)
    peak = peak_allocation(lambda: load_ora(path, limits), ProjectError, "layers together exceed the 3 MiB")
    assert peak < 3 * MIB + SMALL  # three layers decoded, never the fourth


def test_more_layers_than_allowed_are_refused_before_any_is_read(tmp_path):
    names = [f"data/{i}.png" for i in range(DEFAULT_LIMITS.max_layers + 1)]
    path = write(tmp_path, archive([("stack.xml", stack_xml(8, 8, names))]))  # no PNG exists: none is read
    assert peak_allocation(lambda: load_ora(path), ProjectError, "more than 1000 layers") < 4 * MIB


def test_a_zip_directory_of_too_many_entries_is_refused_before_zipfile_parses_it(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("mimetype", b"image/openraster")
        for index in range(DEFAULT_LIMITS.max_members):
            zipped.writestr(f"d/{index}", b"")
    path = write(tmp_path, buffer.getvalue())
    entries = f"{DEFAULT_LIMITS.max_members + 1} entries, more than the {DEFAULT_LIMITS.max_members}"
    assert peak_allocation(lambda: load_ora(path), ProjectError, entries) < SMALL


def test_the_files_decode_budget_is_checked_from_the_headers_before_any_layer_is_decoded(tmp_path):
    """Issue 17: layers that all use one flat PNG (a few KB decoding to 16 MiB each) are refused as a
    whole before the first is decoded, by a budget that follows the file's size."""
    from tests.reliability.crafted import sparse_png

    path = write(tmp_path, archive([("stack.xml", stack_xml(2048, 2048, ["data/flat.png"] * 8))]
                                   + [("data/flat.png", sparse_png(2048))]))
    assert path.stat().st_size < 64 * 1024
    limits = ReadLimits(decode_floor=64 * MIB, decode_ratio=100)  # 8 x 16 MiB + the largest twice
    peak = peak_allocation(lambda: load_ora(path, limits), ProjectError,
                           r"its layers and canvas would need 172\.0 MiB of memory decoded, more than the 64\.0 MiB a file "
                           r"of \d+ KiB may ask for .*before any layer is decoded\.$")
    assert peak < SMALL
    assert len(load_ora(path, ReadLimits(decode_floor=192 * MIB))) == 8  # 172 MiB with the canvas: within
    assert len(load_ora(path, limits, pixels=False)) == 8  # headers only: nothing is decoded


def test_the_decode_budget_grows_with_the_file(tmp_path):
    from canvas.io.limits import decode_budget

    limits = ReadLimits()
    assert decode_budget(limits, 1000) == 512 * MIB
    assert decode_budget(limits, 1 * MIB) == 512 * MIB  # a file under 1 MiB decodes within 512 MiB
    assert decode_budget(limits, 4 * MIB) == 2 * 1024 * MIB
    assert decode_budget(limits, 100 * MIB) == limits.max_decoded_bytes


def test_decoding_holds_the_source_image_and_the_array_only(tmp_path):
    """A 1-bit 2048² PNG decodes to 16 MiB of RGBA; converted whole it peaked at ~13 bytes a pixel
    (tracemalloc sees only numpy's share of that: Pillow's bytes of the image and the writable copy)."""
    from canvas.io.png_chunks import decode_png
    from tests.reliability.crafted import sparse_png

    data = sparse_png(2048)
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        array = decode_png(data, DEFAULT_LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert array.shape == (2048, 2048, 4) and array.flags.writeable and not array[..., :3].any()
    assert peak < 16 * MIB + 8 * MIB, peak / MIB
