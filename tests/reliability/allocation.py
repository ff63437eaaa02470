"""Measure what a call allocates, to show that limits are enforced before the allocation."""

from __future__ import annotations

import tracemalloc
from typing import Callable

import pytest


def peak_allocation(call: Callable[[], object], expected: type[BaseException], match: str) -> int:
    """Bytes allocated at the peak of `call`, which must raise `expected` with a message matching `match`.

    tracemalloc sees Python objects, bytes, and numpy arrays (numpy reports its buffers to it),
    which is where a reader would put what a hostile header asks for.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(expected, match=match):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def sparse_file(path, head: bytes, size: int, tail: bytes = b""):
    """A file of `size` bytes that costs no disk: `head`, a hole, then `tail`."""
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
        handle.seek(size - len(tail))
        handle.write(tail)
    return path
