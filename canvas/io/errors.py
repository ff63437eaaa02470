"""The one error type of project and image file IO."""

from __future__ import annotations

import os
from pathlib import Path


class ProjectError(Exception):
    """A file could not be read or written. `str()` is one CLI-ready sentence naming the file.

    `path` is the file the user asked for (not a temp file or an archive member), `reason` the
    sentence that says what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = os.fspath(path)
        self.reason = _as_sentence(reason)
        super().__init__(f"{Path(self.path).name}: {self.reason}")

    def __reduce__(self):  # keeps the error picklable across process boundaries
        return (type(self), (self.path, self.reason))


class CostlyFileError(ProjectError):
    """A file refused only for the memory or time it asks for next to its own size (a small file that
    would decode to gigabytes is how a crafted file attacks). A genuine project can be like that too
    (a large, nearly flat canvas packs to very little), so the user may open it anyway with
    `canvas.io.limits.trusting`."""


def _as_sentence(reason: str) -> str:
    reason = " ".join(str(reason).split()) or "the file could not be used"
    if reason[-1] not in ".!?":
        reason += "."
    return reason
