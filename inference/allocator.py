"""The process's C allocator, set up for diffusion on a CPU (glibc on Linux; elsewhere nothing to do).

A UNet step allocates and frees the same large activation buffers (tens of MiB each at 256², more at
larger sizes) dozens of times. With glibc's defaults every buffer above the mmap threshold (at most
32 MiB, adjusted dynamically) is a fresh `mmap` and goes back with `munmap` when freed, and freed
memory at the top of the heap above the trim threshold goes back to the system at once: the next
step touches the same amount of new pages again, each one a minor page fault with a zeroed page.
Measured on the full SD1.5 UNet at 256² that was ~4 million faults per 8-step run and about a fifth
of the wall time spent in the kernel (bench/RESULTS.md, "Allocator").

`configure_process_allocator()` therefore raises both thresholds (`mallopt`, which takes effect at
any time, no environment variable before start-up needed) and keeps to one arena: the editor
generates on a worker thread, and a thread's arena is built of 64 MiB heaps that cannot hold a
bigger buffer (glibc then mmaps it whatever the threshold) — on the main heap, which grows as far as
needed, buffers are served and reused from its free lists, step after step. The memory is not kept forever: the engine calls
`trim_process_heap()` after each generation, which hands every free page back (malloc_trim also
releases pages in the middle of the heap, not only its top), so the resident size between
generations stays what it was.

Called once at start-up by the editor (desktop/app.py), the command line (desktop/cli.py, which the
frozen build's launcher runs) and the benchmarks; `COLLAGEN_ALLOCATOR=default` leaves glibc's
defaults in place (to measure the difference, or should a platform misbehave).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

ENVIRONMENT_SWITCH = "COLLAGEN_ALLOCATOR"  # "default": do not touch the allocator

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# Above any single activation buffer of the sizes the editor allows (a 2048² SDXL self-attention
# score block is computed in slices far smaller); only weights-sized allocations are mmapped.
MMAP_THRESHOLD = 1 << 30
# Freed memory stays in the process up to this much at the heap's top; trim_process_heap() after a
# generation returns it.
TRIM_THRESHOLD = 2 << 30
TOP_PAD = 64 << 20  # each heap growth asks for this much more: fewer brk calls while a step grows
# One arena: the inference thread's allocations come from the main heap, which grows as far as needed.
# A thread arena is made of 64 MiB heaps: a bigger buffer there is mmapped whatever the threshold
# says, and freed straight back to the system.
ARENA_MAX = 1


@dataclass(frozen=True)
class AllocatorSetup:
    configured: bool
    reason: str  # a sentence for the log: what was done, or why nothing


def load_glibc():
    """glibc's handle, or None on other platforms and C libraries (musl has no mallopt)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - musl and others lack it: AttributeError
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def configure_process_allocator(environ=None) -> AllocatorSetup:
    """Raise glibc's mmap and trim thresholds for this process (idempotent; see the module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENVIRONMENT_SWITCH, "").strip().lower() == "default":
        return AllocatorSetup(False, f"{ENVIRONMENT_SWITCH}=default: glibc's allocator defaults kept.")
    libc = load_glibc()
    if libc is None:
        return AllocatorSetup(False, "Not glibc: the allocator is left as it is.")
    results = [libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD), libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD),
               libc.mallopt(M_TOP_PAD, TOP_PAD), libc.mallopt(M_ARENA_MAX, ARENA_MAX)]
    if not all(results):
        return AllocatorSetup(False, "glibc refused the allocator thresholds; its defaults stay.")
    return AllocatorSetup(True, f"glibc: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold "
                                f"{TRIM_THRESHOLD >> 20} MiB, top pad {TOP_PAD >> 20} MiB, one arena.")


def trim_process_heap() -> None:
    """Hand the free memory glibc keeps back to the system (after a generation, after a failure)."""
    libc = load_glibc()
    if libc is not None:
        libc.malloc_trim(0)
