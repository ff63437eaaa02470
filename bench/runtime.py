"""What every bench process shares: its start-up (offline, quiet, fixed threads, the allocator), the
machine it ran on, and the results table. Imported by `python -m bench` and by the commands it starts
in their own processes (bench.gui, bench.memory, bench.cpu) or beside it (bench.gpu); it imports none
of them, so no bench module needs the `__main__` one.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from bench.harness import CaseResult


def prepare_process(threads: int) -> None:
    """Offline, quiet libraries, a fixed number of torch threads and the allocator the editor sets up
    (inference.allocator; COLLAGEN_ALLOCATOR=default keeps glibc's): every bench process starts here."""
    from inference.allocator import configure_process_allocator

    configure_process_allocator()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already fixed by earlier parallel work in this process
    for name in ("diffusers", "transformers"):
        try:
            module = __import__(f"{name}.utils.logging", fromlist=["set_verbosity_error"])
            module.set_verbosity_error()
            module.disable_progress_bar()
        except ImportError:
            pass


def machine_description() -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu_model = platform.processor()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    import diffusers
    import torch
    import transformers

    return {"nproc": os.cpu_count(), "cpu_model": cpu_model, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "load_average_at_start": load}


def format_value(result: CaseResult) -> str:
    if result.unit == "x":
        return f"{result.median:.3f} ({result.low:.3f}-{result.high:.3f})"
    return f"{result.median:.1f} ({result.low:.1f}-{result.high:.1f}) {result.unit}"


def format_table(results: list[CaseResult]) -> str:
    rows = [("case", "family", "subject vs baseline", "median (min-max)", "best/best", "direct", "target", "status",
             "note")]
    for r in results:
        versus = r.subject if r.baseline is None else f"{r.subject} vs {r.baseline}"
        target = "" if r.target is None else f"<= {r.target:g}"
        best = "" if r.best is None else f"{r.best:.3f}"
        direct = "" if r.direct is None else f"{r.direct:.3f}"
        rows.append((r.case, r.family or "", versus, format_value(r), best, direct, target, r.status, r.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
