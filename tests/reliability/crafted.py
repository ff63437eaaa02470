"""Crafted hostile inputs for the command line, and a runner that measures what answering costs.

Each builder writes its files into a folder and returns the `collagen` arguments that use them.
`run_collagen` runs the command in a fresh interpreter and measures that one child's peak RSS
(os.wait4's rusage) and CPU time; a child still running after `hang_after` seconds is killed and
reported as a hang.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STACK_XML = ('<?xml version="1.0" encoding="UTF-8"?><image w="{w}" h="{h}" version="0.0.5">'
             "<stack></stack></image>")


@dataclass(frozen=True)
class Measured:
    status: int | None  # None: killed as a hang
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float


def run_collagen(args: list[str], *, cwd: Path, hang_after: float = 60.0) -> Measured:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "COLLAGEN"))}
    env.update(PYTHONPATH=str(REPO), HOME=str(cwd), XDG_DATA_HOME=str(cwd / "data"), COLLAGEN_MODELS="",
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "desktop.cli", *args], cwd=cwd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    hung = threading.Event()

    def kill_if_hung() -> None:
        hung.set()
        os.kill(child.pid, signal.SIGKILL)

    timer = threading.Timer(hang_after, kill_if_hung)
    timer.start()
    out_chunks: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, s=s: out_chunks.__setitem__(n, s.read()))
               for n, s in (("out", child.stdout), ("err", child.stderr))]
    for reader in readers:
        reader.start()
    _, wait_status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    timer.cancel()
    for reader in readers:
        reader.join()
    child.returncode = os.waitstatus_to_exitcode(wait_status)  # already reaped: keep Popen from waiting
    return Measured(None if hung.is_set() else child.returncode,
                    out_chunks.get("out", b"").decode("utf-8", "replace"),
                    out_chunks.get("err", b"").decode("utf-8", "replace"),
                    wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)  # ru_maxrss: KiB on Linux


# ---- project builders ---------------------------------------------------------------------------


def raw_project(path: Path, project: dict, width: int = 512, height: int = 512) -> Path:
    """A project zip written by hand, so it can hold what Collagen itself would never write."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster", zipfile.ZIP_STORED)
        archive.writestr("stack.xml", STACK_XML.format(w=width, h=height), zipfile.ZIP_DEFLATED)
        archive.writestr("data/collagen/project.json", json.dumps(project), zipfile.ZIP_DEFLATED)
    return path


def stroke_project(path: Path, points: list, width: float, side: int = 512) -> Path:
    layer = {"kind": "scribble", "id": "pen", "name": "pen", "visible": True, "opacity": 1.0, "locked": False,
             "mode": "sketch", "strokes": [{"points": points, "color": "#ff0000", "width": width}]}
    return raw_project(path, {"format_version": 1, "width": side, "height": side, "settings": {},
                              "layers": [layer]}, side, side)


def huge_stroke(folder: Path) -> Path:
    """Issue 17: ~6 KB, one stroke of 200 000 points 10 000 px wide (rendering took an hour)."""
    return stroke_project(folder / "huge-stroke.ora", [[0.0, 0.0], [1.0, 1.0]] * 100_000, 10_000.0)


def circle_stroke(folder: Path) -> Path:
    """40 000 points on a circle around the canvas, as wide as the circle: every segment reaches every
    pixel and none covers the canvas alone, so little can be pruned (the worst ordering)."""
    import math

    n = 40_000
    points = [[round(256 + 5000 * math.cos(i * 2 * math.pi / n), 1), round(256 + 5000 * math.sin(i * 2 * math.pi / n), 1)]
              for i in range(n)]
    return stroke_project(folder / "circle-stroke.ora", points, 10_000.0)


def small_project(folder: Path) -> Path:
    """A genuine 64x64 project (for commands whose hostile part is elsewhere, e.g. --out)."""
    from canvas.io.ora import save_ora
    from canvas.model.document import Document, GenerationSettings

    path = folder / "small.ora"
    save_ora(Document(64, 64, settings=GenerationSettings(steps=2)), path)
    return path


def fifo(folder: Path, name: str) -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def link(folder: Path, name: str, target: str) -> Path:
    path = folder / name
    path.symlink_to(target)
    return path
