"""Autosave with rotation, crash detection, and the "changed on disk" guard for Save.

Each running editor owns a session folder under `<user data dir>/autosave/` holding a
`session.json` lock (its PID and the project it edits) and the last N autosaves. A clean exit
deletes the folder. A folder whose PID is no longer alive is what a crash (even SIGKILL) leaves
behind: the next start finds it with `find_orphans()` and offers to restore its newest file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from canvas.io.errors import ProjectError
from canvas.io.limits import DEFAULT_LIMITS, trusting
from canvas.io.ora import PngCache, load_ora, save_ora
from canvas.model.document import Document

LOCK_NAME = "session.json"
FILE_PREFIX = "autosave-"


@dataclass(frozen=True)
class Orphan:
    """What a crashed session left: its folder and its newest autosave."""

    folder: Path
    newest: Path
    source_path: str  # the project file it was editing ("" for an unsaved document)
    saved_at: float  # epoch seconds of the newest autosave
    pid: int

    @property
    def title(self) -> str:
        return Path(self.source_path).name if self.source_path else "an unsaved document"


class Autosave:
    """One editor session's autosaves. Call `start()` once, `save()` on the timer, `finish()` on exit."""

    def __init__(self, root: Path, keep: int = 5, *, pid: int | None = None):
        self.root = Path(root)
        self.keep = max(1, int(keep))
        self.pid = os.getpid() if pid is None else pid
        self.folder = self.root / f"session-{self.pid}-{int(time.time() * 1000)}"
        self._counter = 0
        self._source_path = ""
        self._saving = threading.RLock()  # saves may run on a worker thread (window_files)

    def start(self) -> str | None:
        """Create this session's folder and lock; returns None, or the sentence saying why autosave
        is off for now (a full disk or a read-only data folder must not stop the editor opening:
        `save()` tries again at each tick)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write_lock()
        except OSError as exc:
            return f"Autosave is off for now: {self.folder} cannot be written ({exc.strerror or exc})."
        return None

    def set_source(self, path: str | os.PathLike[str] | None) -> None:
        """The project file being edited, remembered so a restore can say what it was."""
        self._source_path = str(path) if path else ""
        # Never wait here for a save under way (the GUI thread calls this; a 4096² project's autosave
        # takes a minute): that save writes the lock, with this path, when it ends.
        if not self._saving.acquire(blocking=False):
            return
        try:
            if self.folder.exists():
                with suppress(OSError):  # written again with the next autosave
                    self._write_lock()
        finally:
            self._saving.release()

    def save(self, document: Document, cache: PngCache | None = None) -> Path:
        """Write the document to the next rotating file and drop the oldest beyond `keep`.
        Safe from a worker thread (one save at a time; the lock file is written under the same lock)."""
        with self._saving:
            if not self.folder.exists():
                self.folder.mkdir(parents=True, exist_ok=True)
            self._counter += 1
            path = self.folder / f"{FILE_PREFIX}{self._counter:06d}.ora"
            save_ora(document, path, cache=cache)
            self._write_lock()
            for old in self.files()[: -self.keep]:
                old.unlink(missing_ok=True)
            return path

    def files(self) -> list[Path]:
        """This session's autosaves, oldest first."""
        return sorted(self.folder.glob(f"{FILE_PREFIX}*.ora"))

    def finish(self) -> None:
        """A clean exit: nothing to restore next time."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def find_orphans(self) -> list[Orphan]:
        """Sessions of editors that died without finishing, newest first (ours excluded)."""
        found = []
        try:
            folders = [f for f in self.root.iterdir() if f.name.startswith("session-") and f != self.folder]
        except OSError:
            return found
        for folder in folders:
            with suppress(OSError):  # a folder that vanishes or cannot be read is no orphan to offer
                orphan = self._orphan(folder)
                if orphan is not None:
                    found.append(orphan)
        return sorted(found, key=lambda o: o.saved_at, reverse=True)

    def _orphan(self, folder: Path) -> Orphan | None:
        if not folder.is_dir():
            return None
        lock = _read_lock(folder / LOCK_NAME)
        pid = _lock_pid(lock)
        host = lock.get("host")
        same_host = not isinstance(host, str) or host == socket.gethostname()
        if same_host and pid_alive(pid):
            return None  # another editor that is running right now
        files = sorted(folder.glob(f"{FILE_PREFIX}*.ora"))
        if not files:
            shutil.rmtree(folder, ignore_errors=True)  # died before its first autosave
            return None
        newest = files[-1]
        source = lock.get("source_path")
        return Orphan(folder, newest, source if isinstance(source, str) else "", newest.stat().st_mtime, pid)

    @staticmethod
    def restore(orphan: Orphan) -> Document:
        """Load the orphan's newest autosave that still loads, newest first: one damaged file (a full
        disk, a failing sector) costs the edits since the one before it, not the session.
        Raises the newest file's ProjectError when none loads."""
        newest_error: ProjectError | None = None
        for path in sorted(orphan.folder.glob(f"{FILE_PREFIX}*.ora"), reverse=True):
            try:
                return load_ora(path, trusting(DEFAULT_LIMITS))  # its own files: a big canvas packs small
            except ProjectError as error:
                newest_error = newest_error or error
        raise newest_error or ProjectError(orphan.newest, "is gone")

    @staticmethod
    def discard(orphan: Orphan) -> None:
        shutil.rmtree(orphan.folder, ignore_errors=True)

    def _write_lock(self) -> None:
        data = {"pid": self.pid, "host": socket.gethostname(), "source_path": self._source_path,
                "updated": time.time()}
        tmp = self.folder / (LOCK_NAME + ".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.folder / LOCK_NAME)


MAX_LOCK_BYTES = 64 * 1024  # a lock is a few hundred bytes; anything larger is damage


def _read_lock(path: Path) -> dict:
    """The lock's fields, or {} when it is missing or damaged (any damage: a crash mid-write, a
    full disk, another program): a damaged lock must never stop the editor starting."""
    try:
        with open(path, "rb") as stream:
            text = stream.read(MAX_LOCK_BYTES + 1)
        if len(text) > MAX_LOCK_BYTES:
            return {}
        data = json.loads(text.decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return {}


def _lock_pid(lock: dict) -> int:
    """The lock's process id, or -1 (read as "dead") for anything but a plausible whole number:
    "abc", null, 1e30, true, 2**80 in a damaged lock."""
    pid = lock.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
        return -1
    return pid


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running (a zombie counts as dead)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _pid_alive_windows(pid: int) -> bool:
    import ctypes

    process_query_limited_information = 0x1000
    still_active = 259
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return bool(ok) and code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


@dataclass(frozen=True)
class FileStamp:
    """What a project file looked like when we opened or saved it, to notice outside changes."""

    path: str
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileStamp | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(str(path), st.st_mtime_ns, st.st_size)

    def changed_on_disk(self) -> bool:
        """True when the file was modified or deleted since this stamp was taken."""
        now = FileStamp.of(self.path)
        return now is None or (now.mtime_ns, now.size) != (self.mtime_ns, self.size)

