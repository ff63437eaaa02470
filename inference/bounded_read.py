"""Reading model files that may be hostile: regular files only, and never more than a cap.

A models folder is the user's, but what lies in it came from anywhere: a FIFO named
`x.safetensors` (opening it for reading waits for a writer forever), a link to a device, a
3 GiB sparse `model_index.json` that costs nothing on disk. Every model file Collagen opens to
look at goes through `open_regular`, and every JSON config through `read_json`, so such a file is
one sentence, not a hang or a gigabyte. (canvas.io has the same guard for projects; the two
packages never import each other.)
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from inference.api import ModelError

MIB = 1024 * 1024
MAX_JSON_BYTES = 1 * MIB  # the largest real config (a tokenizer's) is ~100 KB; model_index.json ~1 KB
# Opening a FIFO without O_NONBLOCK waits for a writer; with it, open returns and fstat tells.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def describe_kind(mode: int) -> str:
    """What a non-regular file is, in words a user knows."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def size_text(size: int) -> str:
    return f"{size / MIB:.0f} MiB" if size >= MIB else f"{size} bytes"


def open_regular(path: str | os.PathLike, max_bytes: int | None = None, *, what: str = "model file") -> BinaryIO:
    """`path` opened for binary reading, or ModelError naming it: not a regular file once links are
    followed, unreadable, or (with `max_bytes`) larger than that. Callers still read bounded amounts."""
    path = Path(path)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise ModelError(f"{path}: does not exist (a broken link?).") from None
    except PermissionError:
        raise ModelError(f"{path}: cannot be read (permission denied).") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror or type(error).__name__}).") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"{path}: is {describe_kind(info.st_mode)}, not a regular file; only regular "
                             f"files are read as a {what}.")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ModelError(f"{path}: a {what} of {size_text(info.st_size)} is larger than any real one "
                             f"(at most {size_text(max_bytes)} is read).")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_json(path: str | os.PathLike, *, what: str = "JSON config", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON document in `path`, read with a cap; ModelError naming the file for anything else."""
    path = Path(path)
    with open_regular(path, max_bytes, what=what) as handle:
        try:
            raw = handle.read(max_bytes + 1)
        except OSError as error:
            raise ModelError(f"{path}: cannot be read ({error.strerror or error}).") from None
    if len(raw) > max_bytes:
        raise ModelError(f"{path}: grew past the {size_text(max_bytes)} a {what} may have while it was read.")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ModelError(f"{path}: cannot be read as JSON (nested too deeply).") from None
    except ValueError as error:  # UnicodeDecodeError, JSONDecodeError, integers over 4300 digits
        raise ModelError(f"{path}: cannot be read as JSON ({_first_line(error)}).") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."
