"""Reading weights safely: safetensors headers and tensors, and pickles only with `weights_only`.

A pickle (.ckpt/.pt/.pth/.bin) is read with torch's restricted unpickler: a file that names any
Python callable is refused, never run. Every failure is a ModelError naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from inference.api import ModelError
from inference.bounded_read import open_regular
from inference.safetensors_header import read_safetensors_header


def read_weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names -> shapes: the header of a .safetensors, or a weights-only (mmap) read of a pickle."""
    if path.suffix.lower() == ".safetensors":
        header = read_safetensors_header(path)
        return {name: info.shape for name, info in header.tensors.items()}
    state = load_pickled_weights(path)
    return {name: tuple(value.shape) for name, value in state.items()}


def load_pickled_weights(path: Path) -> dict[str, Any]:
    """A .ckpt/.pt/.pth/.bin read with weights_only=True (never a full unpickle); tensors only."""
    import torch

    open_regular(path, what="PyTorch weights file").close()  # a FIFO or device: refused, never waited on
    mmap = zipfile.is_zipfile(path)  # mmap needs the zip container; old pickles are read whole
    loaded = load_weights_only(path, "a PyTorch weights file", mmap=mmap)
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelError(f"{path}: does not contain a dictionary of weights.")
    weights = {str(key): value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    for key, value in loaded.items():  # one level of nesting, e.g. A1111 embeddings' string_to_param
        if isinstance(value, dict):
            weights.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, torch.Tensor)})
    return weights


def load_weights_only(path: Path, what: str, *, mmap: bool = False) -> Any:
    """`torch.load(weights_only=True)`: a pickle that names any Python callable is refused, never run.

    Every failure is a ModelError naming the file: a refused object, or a damaged file (torch's
    restricted unpickler fails on damaged bytes with many exception types, none of them ours).
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:  # a forbidden object, or damaged pickle bytes
        raise ModelError(
            f"{path}: refused to load: it is not a plain weights pickle ({last_line(error)}); Collagen never "
            "fully unpickles files (convert it to .safetensors)."
        ) from error
    except MemoryError as error:
        raise ModelError(f"{path}: not enough memory to read {what}.") from error
    except Exception as error:  # noqa: BLE001 - damaged bytes: IndexError, KeyError, struct.error, ...
        raise ModelError(f"{path}: cannot be read as {what} ({first_line(error)}).") from error


def last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip() and not line.startswith("Check the")]
    line = lines[-1].strip() if lines else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


class CheckpointWeights:
    """Reads one component's tensors at a time from a single file, so peak memory stays ~one component."""

    def __init__(self, path: Path):
        self.path = path
        self._pickled: dict[str, Any] | None = None
        if path.suffix.lower() != ".safetensors":
            self._pickled = load_pickled_weights(path)
            self.keys = list(self._pickled)
        else:
            self.keys = list(read_safetensors_header(path).tensors)

    def part(self, prefix: str) -> dict[str, Any]:
        wanted = [key for key in self.keys if key.startswith(prefix)]
        if self._pickled is not None:
            return {key: self._pickled[key] for key in wanted}
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as handle:
                return {key: handle.get_tensor(key) for key in wanted}
        except Exception as error:  # safetensors raises its own error types for corrupt data
            raise ModelError(f"{self.path}: the weights cannot be read ({first_line(error)}).") from error
