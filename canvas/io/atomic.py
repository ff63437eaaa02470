"""Atomic file replacement: readers see the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """A temp file beside `target`, fsynced and renamed over it only once the block completes.

    On any exception (or interruption) the temp file is removed and the target is untouched; a
    process killed mid-write leaves at most a stray `.NAME.*.tmp` beside an intact target, which
    the next save of that target removes once it is older than STALE_TEMP_SECONDS.
    """
    target = Path(target)
    directory = target.parent
    remove_stale_temps(target)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as fileobj:
            yield fileobj
            fileobj.flush()
            os.fsync(fileobj.fileno())
        with suppress(OSError):  # keep the permissions of the file being replaced
            os.chmod(temp_name, stat.S_IMODE(os.stat(target).st_mode) if target.exists() else 0o644)
        os.replace(temp_name, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_directory(directory)


STALE_TEMP_SECONDS = 600  # no save writes for this long; younger temps may belong to a save in progress


def remove_stale_temps(target: Path, now: float | None = None) -> int:
    """Delete temp files that a killed save of `target` left behind; returns how many."""
    now = time.time() if now is None else now
    removed = 0
    for stray in Path(target).parent.glob(f".{Path(target).name}.*.tmp"):
        with suppress(OSError):
            if now - stray.stat().st_mtime > STALE_TEMP_SECONDS:
                stray.unlink()
                removed += 1
    return removed


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened this way on Windows.
    with suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
