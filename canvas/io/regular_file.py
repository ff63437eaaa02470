"""Opening files a user named: regular files only, with a size cap, for reading and for writing.

A path on a command line or in a file dialog may name a FIFO (opening it for reading blocks until
someone writes), a device (`/dev/zero` never ends, `/dev/null` must never be replaced), a folder,
or a symlink to any of these. Every reader of projects and PNGs opens through
`open_regular_file`, and every writer checks its target with `output_target` first, so such a path
costs one sentence, not a hang, a gigabyte of memory or a destroyed device node.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from canvas.io.errors import ProjectError

# Opening a FIFO for reading without O_NONBLOCK waits for a writer; with it, open returns at once
# and fstat says what the path is. Neither flag exists on Windows, where FIFOs are no paths.
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


def open_regular_file(path: str | os.PathLike[str], max_bytes: int, *, what: str = "file") -> BinaryIO:
    """The file at `path` opened for binary reading, or ProjectError naming it.

    Refused before anything is read: a path that is not a regular file once symlinks are followed
    (FIFO, device, socket, folder), and a file larger than `max_bytes`. The caller still reads
    with bounded reads: a file may grow after it was opened.
    """
    source = Path(path)
    try:
        fd = os.open(source, _OPEN_FLAGS)
    except FileNotFoundError:
        raise ProjectError(source, "does not exist") from None
    except IsADirectoryError:
        raise ProjectError(source, "is a folder, not a file") from None
    except PermissionError:
        raise ProjectError(source, "cannot be read (permission denied)") from None
    except OSError as exc:
        raise ProjectError(source, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ProjectError(source, f"is {describe_kind(info.st_mode)}, not a regular file; only "
                                       f"regular files are opened as a {what}")
        if info.st_size > max_bytes:
            raise ProjectError(source, f"is {info.st_size} bytes, more than the {max_bytes} bytes a {what} "
                                       "may have here")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, *, what: str = "file") -> bytes:
    """The whole file (at most `max_bytes`, checked before and while reading)."""
    with open_regular_file(path, max_bytes, what=what) as stream:
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ProjectError(path, f"grew past the {max_bytes} bytes a {what} may have here while it was read")
    return data


def output_target(path: str | os.PathLike[str]) -> Path:
    """The file a save to `path` really writes, checked before any work is done: raises
    ProjectError naming `path` when the save could not succeed or would destroy something.

    Symlinks are followed (a save through a link writes the file it points to, as editors do);
    the result must be a regular file or a new name in an existing, writable folder. A device,
    FIFO, socket or folder is refused, never replaced.
    """
    given = Path(path)
    if not given.name or given.name in (".", ".."):
        raise ProjectError(given, "is not a file name")
    real = Path(os.path.realpath(given))
    try:
        info = os.stat(real)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise ProjectError(given, f"cannot be written ({exc.strerror or type(exc).__name__})") from None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise ProjectError(given, f"is {describe_kind(info.st_mode)}; only regular files are written, "
                                      "and it was left as it is")
        if not os.access(real, os.W_OK):
            raise ProjectError(given, "cannot be written (it is read-only)")
    folder = real.parent
    if not folder.is_dir():
        raise ProjectError(given, f"cannot be written: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ProjectError(given, f"cannot be written: the folder {folder} is not writable")
    return real
