"""inference.allocator: glibc's thresholds raised at start-up stop the fault churn of big buffers,
and the engine's trim still gives the memory back.

mallopt changes the whole process for good, so every measurement runs in a fresh Python of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference.allocator import ENVIRONMENT_SWITCH, configure_process_allocator, load_glibc

REPO_ROOT = Path(__file__).resolve().parents[2]
needs_glibc = pytest.mark.skipif(load_glibc() is None, reason="glibc's mallopt is Linux/glibc only")

# Allocate, touch and free big buffers again and again, as a UNet step does with its activations
# (through glibc's malloc itself: numpy and torch may ask for huge pages, which hides the count);
# report the page faults it cost, the resident size with the freed memory still held, and the
# resident size after the engine's trim.
CHURN = """
import ctypes, json, resource, sys, threading
from inference.allocator import configure_process_allocator, trim_process_heap

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def churn(sizes, report):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        buffers = [libc.malloc(size) for size in sizes]
        for buffer, size in zip(buffers, sizes):
            ctypes.memset(buffer, 1, size)  # every page written, as a tensor's are
        for buffer in buffers:
            libc.free(buffer)
    report["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    report["held_mib"] = rss_mib() - start_rss

configured = configure_process_allocator().configured
start_rss = rss_mib()
report = {"configured": configured}
# On a worker thread, like the editor's inference thread: a buffer bigger than a thread arena's heap
# (64 MiB) and a few smaller ones.
worker = threading.Thread(target=churn, args=([96 << 20, 24 << 20, 8 << 20], report))
worker.start()
worker.join()
trim_process_heap()
report["after_trim_mib"] = rss_mib() - start_rss
print(json.dumps(report))
"""


def run_churn(allocator: str) -> dict:
    env = {**os.environ, ENVIRONMENT_SWITCH: allocator,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))}
    completed = subprocess.run([sys.executable, "-c", CHURN], capture_output=True, text=True, env=env, timeout=120,
                               check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


@needs_glibc
def test_raised_thresholds_reuse_big_buffers_instead_of_faulting_them_in_again():
    default, tuned = run_churn("default"), run_churn("tuned")
    assert not default["configured"] and tuned["configured"]
    pages = (128 << 20) // 4096  # one round's buffers
    assert default["faults"] > 8 * pages  # (nearly) every round maps its buffers afresh
    assert tuned["faults"] < 2 * pages  # the first round's pages, then the same memory again
    # Held while the process works, handed back by the trim the engine does after each generation.
    assert tuned["held_mib"] > 100 and tuned["after_trim_mib"] < 16


def test_the_environment_switch_keeps_the_defaults_and_says_so():
    setup = configure_process_allocator({ENVIRONMENT_SWITCH: "default"})
    assert not setup.configured and ENVIRONMENT_SWITCH in setup.reason
