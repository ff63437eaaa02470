"""The safetensors header reader (and the weights-only pickle reader) under fuzzing, and absurd
sizes and offsets refused without allocating.

The long runs are `python -m fuzz.safetensors --cases 10000` and `python -m fuzz.checkpoint`.
"""

from __future__ import annotations

import json
import struct
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz import checkpoint, safetensors
from fuzz.harness import run_case, run_mutation
from inference.api import ModelError
from inference.models import ModelManager
from inference.safetensors_header import MAX_HEADER_BYTES, read_safetensors_header
from tests.reliability.allocation import peak_allocation, sparse_file

KIB, MIB = 1 << 10, 1 << 20


def test_seeded_mutations_give_a_header_or_one_clear_model_error():
    report = run_mutation(safetensors.target(), cases=400, seed=2024)
    assert report.failures == [], [f"{f.kind}: {f.summary}" for f in report.failures]
    assert report.accepted >= 50 and report.rejected >= 100


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(safetensors.strategy())
def test_generated_headers_give_a_header_or_one_clear_model_error(data):
    with tempfile.TemporaryDirectory() as folder:
        outcome, summary, _ = run_case(safetensors.target(), data, Path(folder) / "generated.safetensors", 20)
    assert outcome in ("accepted", "rejected"), summary


def test_seeded_mutations_of_pickled_checkpoints_give_weights_or_one_clear_model_error():
    report = run_mutation(checkpoint.target(), cases=120, seed=2024)
    assert report.failures == [], [f"{f.kind}: {f.summary}" for f in report.failures]
    assert report.accepted >= 5 and report.rejected >= 30


# ---- absurd sizes and offsets -------------------------------------------------------------------------


def header_file(path: Path, header: dict | bytes, data: bytes = b"", *, declared: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + data)
    return path


@pytest.mark.parametrize("declared", [2**64 - 1, 2**63, MAX_HEADER_BYTES + 1])
def test_a_header_length_past_the_cap_is_refused_without_reading(tmp_path, declared):
    path = header_file(tmp_path / "huge.safetensors", b"{}", declared=declared)
    assert peak_allocation(lambda: read_safetensors_header(path), ModelError, r"huge\.safetensors: refused before reading it") < KIB * 64


def test_a_header_length_past_the_end_of_the_file_is_refused_without_reading(tmp_path):
    path = header_file(tmp_path / "cut.safetensors", b"{}", declared=12 * MIB)
    assert peak_allocation(lambda: read_safetensors_header(path), ModelError, "runs past the end") < KIB * 64


def test_a_header_at_the_cap_in_a_sparse_file_is_read_once_and_refused_as_not_json(tmp_path):
    path = sparse_file(tmp_path / "sparse.safetensors", struct.pack("<Q", MAX_HEADER_BYTES) + b"{", 8 + MAX_HEADER_BYTES)
    peak = peak_allocation(lambda: read_safetensors_header(path), ModelError, "not JSON")
    assert peak < 3 * MAX_HEADER_BYTES  # the header itself (and its decoded text), nothing the header asked for


@pytest.mark.parametrize("entry, message", [
    ({"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}, "does not match its shape"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 2**62]}, "beyond the end of the file"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [2**64 + 7, 2**64 + 23]}, "beyond the end of the file"),
    ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, "malformed"),
    ({"dtype": "F32", "shape": [1e30], "data_offsets": [0, 16]}, "malformed"),
])
def test_absurd_shapes_and_offsets_are_refused_without_allocating(tmp_path, entry, message):
    path = header_file(tmp_path / "absurd.safetensors", {"w": entry}, bytes(16))
    assert peak_allocation(lambda: read_safetensors_header(path), ModelError, message) < KIB * 64


def test_a_shape_of_a_hundred_thousand_huge_dimensions_is_refused_in_linear_time(tmp_path):
    raw = b'{"w":{"dtype":"F32","shape":[' + b",".join([str(2**62).encode()] * 100_000) + b'],"data_offsets":[0,4]}}'
    path = header_file(tmp_path / "dims.safetensors", raw, bytes(4))
    started = time.perf_counter()
    with pytest.raises(ModelError, match="does not match its shape"):
        read_safetensors_header(path)
    assert time.perf_counter() - started < 2.0  # was 35 s for 50 000 dimensions (big-integer products)


@pytest.mark.parametrize("raw, message", [
    (b'{"w":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"w":{"dtype":"F32","shape":[1' + b"0" * 5000 + b'],"data_offsets":[0,4]}}', "not JSON"),
    (b'\xff\xfe{"w":1}', "not JSON"),
])
def test_headers_that_break_the_json_parser_are_model_errors(tmp_path, raw, message):
    with pytest.raises(ModelError, match=rf"odd\.safetensors: .*{message}"):
        read_safetensors_header(header_file(tmp_path / "odd.safetensors", raw, bytes(4)))


def test_discovery_skips_hostile_files_with_a_note_and_never_raises(tmp_path):
    folder = tmp_path / "models" / "checkpoints"
    folder.mkdir(parents=True)
    header_file(folder / "length.safetensors", b"{}", declared=2**63)
    header_file(folder / "nested.safetensors", b'{"w":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    header_file(folder / "offsets.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 2**62]}})
    (folder / "garbage.ckpt").write_bytes(b"\x80\x02garbage")
    manager = ModelManager([tmp_path / "models"], device="cpu")
    names = [info.name for info in manager.discover()]
    assert all(name.startswith("builtin:") for name in names)
    problems = " ".join(manager.catalog.problems)
    for name in ("length.safetensors", "nested.safetensors", "offsets.safetensors", "garbage.ckpt"):
        assert name in problems
