"""Read a .safetensors header without trusting it: tensor names, dtypes and shapes, no weights.

Model discovery looks at hundreds of multi-gigabyte files, so it only ever reads the first
bytes of each. The header's length and offsets come from the file itself, so every number is
checked against the file size before anything is allocated from it.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from inference.api import ModelError
from inference.bounded_read import open_regular

MAX_HEADER_BYTES = 16 * 1024 * 1024  # real headers are < 2 MiB even for 3000-tensor SDXL files
_LENGTH_BYTES = 8
_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "C64": 8,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int  # byte offsets inside the data section
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def shape(self, key: str) -> tuple[int, ...] | None:
        info = self.tensors.get(key)
        return None if info is None else info.shape

    def has_prefix(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.tensors)


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """The validated header of `path`; `ModelError` naming the file when it is not a sound .safetensors."""
    path = Path(path)
    try:
        with open_regular(path, what="safetensors file") as handle:  # a FIFO or device: refused, not waited on
            file_size = os.fstat(handle.fileno()).st_size
            header_length = _read_header_length(path, handle.read(_LENGTH_BYTES), file_size)
            raw = handle.read(header_length)
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror or error}).") from error
    if len(raw) != header_length:
        raise ModelError(f"{path}: the file is truncated inside its safetensors header.")
    return _parse_header(path, raw, data_size=file_size - _LENGTH_BYTES - header_length)


def _read_header_length(path: Path, prefix: bytes, file_size: int) -> int:
    if len(prefix) < _LENGTH_BYTES:
        raise ModelError(f"{path}: too short to be a safetensors file ({file_size} bytes).")
    (header_length,) = struct.unpack("<Q", prefix)
    if header_length > MAX_HEADER_BYTES:
        raise ModelError(
            f"{path}: refused before reading it: a safetensors header of {header_length / (1024 * 1024):.0f} MiB "
            f"is larger than any real model's (at most {MAX_HEADER_BYTES // (1024 * 1024)} MiB is read)."
        )
    if _LENGTH_BYTES + header_length > file_size:
        raise ModelError(f"{path}: the safetensors header runs past the end of the file (truncated download?).")
    return header_length


def _parse_header(path: Path, raw: bytes, data_size: int) -> SafetensorsHeader:
    try:
        document = json.loads(raw.decode("utf-8"))
    except RecursionError:  # nesting deeper than the parser's stack: no real header does that
        raise ModelError(f"{path}: not a safetensors file (its header is nested too deeply).") from None
    except ValueError as error:  # UnicodeDecodeError, JSONDecodeError, and integers over 4300 digits
        raise ModelError(f"{path}: not a safetensors file (its header is not JSON).") from error
    if not isinstance(document, dict):
        raise ModelError(f"{path}: not a safetensors file (its header is not a JSON object).")
    metadata = document.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ModelError(f"{path}: the safetensors metadata is not a JSON object.")
    tensors = {name: _parse_tensor_entry(path, name, entry, data_size) for name, entry in document.items()}
    return SafetensorsHeader(path=path, tensors=tensors, metadata={str(k): str(v) for k, v in metadata.items()})


def _parse_tensor_entry(path: Path, name: str, entry: object, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise ModelError(f"{path}: the safetensors entry for {name!r} is malformed.")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    shape_is_valid = isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
    offsets_are_valid = (
        isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) and n >= 0 for n in offsets)
    )
    if not isinstance(dtype, str) or not shape_is_valid or not offsets_are_valid:
        raise ModelError(f"{path}: the safetensors entry for {name!r} is malformed.")
    start, end = offsets
    if start > end or end > data_size:
        raise ModelError(
            f"{path}: tensor {name!r} lies beyond the end of the file (the file is truncated or corrupt)."
        )
    element_size = _DTYPE_SIZES.get(dtype)
    if element_size is not None and dtype not in ("F4", "F6_E2M3", "F6_E3M2"):
        if _element_count(shape, (end - start) // element_size + 1) * element_size != end - start:
            raise ModelError(f"{path}: tensor {name!r} has a size that does not match its shape (corrupt file).")
    return TensorInfo(dtype=dtype, shape=tuple(shape), start=start, end=end)


def _element_count(shape: list[int], cap: int) -> int:
    """The product of `shape`, or `cap` once it is exceeded: a hostile header with a million huge
    dimensions would otherwise cost quadratic time in ever-growing big integers."""
    if 0 in shape:
        return 0
    count = 1
    for n in shape:
        count *= n
        if count > cap:
            return cap
    return count
