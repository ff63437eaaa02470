"""Krita as an independent renderer for the interchange tests: `xvfb-run -a krita IN --export
--export-filename OUT` run headless, many files at once (one Krita start is several seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

EXPORT_SECONDS = 180  # one export, the first of a fresh HOME included (Krita builds its resource cache)
PARALLEL_EXPORTS = 2


def krita_available() -> bool:
    return shutil.which("krita") is not None and shutil.which("xvfb-run") is not None


class KritaExporter:
    """Runs Krita's command-line export with its own HOME (settings, resource cache)."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def export(self, source: Path, target: Path, server: int = 99) -> str:
        """'' when `target` was written, else what Krita printed last. Parallel exports start their
        X server search at different numbers (`server`): xvfb-run -a alone races for one display."""
        env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_DATA_HOME=str(self.home / ".local/share"), XDG_CACHE_HOME=str(self.home / ".cache"))
        auth = target.with_name(f".xauth-{server}")  # one X authority file each: xauth locks a shared one
        try:
            done = subprocess.run(["xvfb-run", "-a", "-n", str(server), "-f", str(auth), "krita", str(source), "--export", "--export-filename",
                                   str(target)], env=env, capture_output=True, text=True, timeout=EXPORT_SECONDS)
        except subprocess.TimeoutExpired:
            return f"krita did not finish within {EXPORT_SECONDS} s"
        return "" if target.is_file() else (done.stdout + done.stderr)[-2000:]

    def export_retrying(self, source: Path, target: Path, server: int) -> str:
        """One more try when the X server did not come up (a busy machine), not when Krita failed."""
        error = self.export(source, target, server)
        if error and ("could not connect to display" in error or "platform plugin" in error):
            error = self.export(source, target, server + 5)
        return error

    def export_all(self, jobs: list[tuple[Path, Path]]) -> dict[Path, str]:
        """Export every (source, target); the first alone (it fills the shared resource cache)."""
        if not jobs:
            return {}
        results = {jobs[0][1]: self.export_retrying(jobs[0][0], jobs[0][1], 99)}
        numbered = list(enumerate(jobs[1:], 1))
        with ThreadPoolExecutor(PARALLEL_EXPORTS) as pool:
            errors = pool.map(lambda job: self.export_retrying(job[1][0], job[1][1], 99 + 10 * job[0]), numbered)
            for (_, (_, target)), error in zip(numbered, errors):
                results[target] = error
        return results


def over_white(path: Path) -> np.ndarray:
    """An exported PNG flattened over white, as Collagen's init_image is (HxWx3 float32)."""
    with Image.open(path) as image:
        rgba = np.asarray(image.convert("RGBA")).astype(np.float32)
    alpha = rgba[..., 3:4] / 255
    return rgba[..., :3] * alpha + 255 * (1 - alpha)
