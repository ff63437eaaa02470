"""Atomic file replacement: readers see the old file or the complete new one, never a part.

What a save must not destroy (each refused or kept here, for every writer):
- the target is checked first (`regular_file.output_target`): a device, FIFO, socket or folder is
  refused, never replaced; a symlink is followed and its target written, the link stays a link;
- the replaced file's permission bits, and its owner and group where the process may set them
  (root, or a group the user belongs to), carry over to the new file;
- a file with several hard links is rewritten in place once the new content is complete in the
  temp file, so every link shows the new content (a rename would detach this name from the
  others, silently leaving them with the old content). That copy is not atomic: the complete
  temp file is kept until it is done, so a crash mid-copy leaves the new content beside the
  target (`.NAME.*.tmp`) rather than nothing;
- the name is used literally: `*`, `?`, `[` and `**` in it are characters, not patterns.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Iterator

from canvas.io.errors import ProjectError
from canvas.io.regular_file import output_target


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """A temp file beside the real target, fsynced and renamed over it only once the block completes.

    Raises ProjectError before the block runs when `target` cannot or must not be written. On any
    exception (or interruption) the temp file is removed and the target is untouched; a process
    killed mid-write leaves at most a stray `.NAME.*.tmp` beside an intact target, which the next
    save of that target removes once it is older than STALE_TEMP_SECONDS.
    """
    given = Path(target)
    real = output_target(given)
    directory = real.parent
    remove_stale_temps(real)
    fd, temp_name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as fileobj:
            yield fileobj
            fileobj.flush()
            os.fsync(fileobj.fileno())
        old = _stat_or_none(real)
        if old is not None and not stat.S_ISREG(old.st_mode):  # replaced by a device or FIFO meanwhile
            raise ProjectError(given, "is no longer a regular file; it was left as it is")
        if old is not None and old.st_nlink > 1:
            _copy_in_place(temp_name, real)
            os.unlink(temp_name)
            return
        _carry_over_attributes(temp_name, old)
        os.replace(temp_name, real)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_directory(directory)


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _carry_over_attributes(temp_name: str, old: os.stat_result | None) -> None:
    if old is None:
        with suppress(OSError):  # mkstemp creates 0600; a new project or image is readable by others
            os.chmod(temp_name, 0o644)
        return
    if hasattr(os, "chown"):
        # Root may give the file back to its owner; anyone may keep a group they belong to.
        # Where neither is allowed the file becomes the saver's, as with any editor's save.
        with suppress(OSError):
            os.chown(temp_name, old.st_uid if os.geteuid() == 0 else -1, old.st_gid)
    with suppress(OSError):  # after chown, which may clear set-id bits
        os.chmod(temp_name, stat.S_IMODE(old.st_mode))


def _copy_in_place(temp_name: str, real: Path) -> None:
    """The complete new content written into the existing inode (all hard links see it)."""
    with open(temp_name, "rb") as source, open(real, "r+b") as destination:
        destination.truncate(0)
        shutil.copyfileobj(source, destination, 1 << 20)
        destination.flush()
        os.fsync(destination.fileno())


STALE_TEMP_SECONDS = 600  # no save writes for this long; younger temps may belong to a save in progress


def remove_stale_temps(target: Path, now: float | None = None) -> int:
    """Delete temp files that a killed save of `target` left behind; returns how many."""
    now = time.time() if now is None else now
    target = Path(target)
    prefix = f".{target.name}."
    removed = 0
    try:  # names compared literally: a target named "a**b.png" or "[1].png" is no glob pattern
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return 0
    for name in names:
        stray = target.parent / name
        with suppress(OSError):
            if stat.S_ISREG(os.lstat(stray).st_mode) and now - stray.stat().st_mtime > STALE_TEMP_SECONDS:
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
