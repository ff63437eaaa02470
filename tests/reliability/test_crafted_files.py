"""No input file under 1 MB makes a command use more than 1 GiB or 10 s of CPU before it answers.

Every case runs `collagen ...` in a fresh interpreter on crafted files and measures that child's
peak RSS and CPU time (interpreter and library start-up included); a child still running after
HANG_AFTER seconds of wall time fails as a hang (a FIFO read waits without using any CPU).

Adding a case is one line in CASES: a name, a function that writes the files into a folder and
returns the command's arguments, the exit status, and a pattern the one stderr line must match.
`python -m tests.reliability.test_crafted_files` prints the table docs/RELIABILITY.md shows.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.reliability import crafted as c

MAX_INPUT_BYTES = 1 << 20
MAX_RSS_MIB = 1024
MAX_CPU_S = 10.0
HANG_AFTER = 60.0


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], list[str]]  # writes into the folder, returns the collagen arguments
    status: int
    error: str  # regex for the single stderr line ("" = no error expected)
    module: str = "desktop.cli"  # or OPEN_SAVE (load_ora then save_ora), or EDITOR (the window opens it)


def _s(path: Path) -> str:
    return str(path)


OPEN_SAVE = "tests.reliability.open_save"
EDITOR = "tests.reliability.open_editor"  # the window (offscreen) opens it as File > Open does and draws it
WARP_REFUSED = r"scaled or turned layers cover \d+ million canvas pixels, more than the 20 million"
DECODE_REFUSED = r"its layers and canvas would need .* [GM]iB of memory decoded, .*before any layer is decoded\.( If you made it yourself .* add --open-large to open it anyway\.)?$"


CASES = [
    Case("huge stroke: info", lambda d: ["info", _s(c.huge_stroke(d))], 1, r"too costly to draw"),
    Case("huge stroke: render", lambda d: ["render", _s(c.huge_stroke(d)), "--out", _s(d / "o.png")], 1,
         r"too costly to draw"),
    Case("circle stroke: info", lambda d: ["info", _s(c.circle_stroke(d))], 1, r"too costly to draw"),
    Case("FIFO as project: info", lambda d: ["info", _s(c.fifo(d, "pipe.ora"))], 1, r"FIFO"),
    Case("FIFO as PNG: info", lambda d: ["info", _s(c.fifo(d, "pipe.png"))], 1, r"FIFO"),
    Case("FIFO as project: render", lambda d: ["render", _s(c.fifo(d, "p.ora")), "--out", _s(d / "o.png")], 1,
         r"FIFO"),
    Case("link to /dev/zero as project: info", lambda d: ["info", _s(c.link(d, "zero.ora", "/dev/zero"))], 1,
         r"is a device"),
    Case("link to /dev/zero as PNG: info", lambda d: ["info", _s(c.link(d, "zero.png", "/dev/zero"))], 1,
         r"is a device"),
    Case("folder as project: info", lambda d: ["info", _s(d)], 1, r"is a folder"),
    Case("--out into a missing folder", lambda d: ["render", _s(c.small_project(d)), "--out",
                                                  _s(d / "missing" / "o.png")], 1, r"folder .* does not exist"),
    Case("--out is a FIFO", lambda d: ["render", _s(c.small_project(d)), "--out", _s(c.fifo(d, "o.png"))], 1,
         r"FIFO.*left as it is"),
    Case("--out is a link to a FIFO", lambda d: ["render", _s(c.small_project(d)), "--out",
                                                _s(c.link(d, "o.png", _s(c.fifo(d, "f"))))], 1, r"FIFO"),
    Case("layers sharing one 16384² PNG: info", lambda d: ["info", _s(c.shared_huge_png(d))], 0, ""),
    Case("layers sharing one 16384² PNG: render", lambda d: ["render", _s(c.shared_huge_png(d)), "--out",
                                                            _s(d / "o.png")], 1, DECODE_REFUSED),
    Case("layers sharing one 16384² PNG: open + save", lambda d: [_s(c.shared_huge_png(d)), _s(d / "o.ora")], 1,
         DECODE_REFUSED, OPEN_SAVE),
    Case("12 layers, each its own flat 8192² PNG: info", lambda d: ["info", _s(c.many_big_pngs(d))], 0, ""),
    Case("12 layers, each its own flat 8192² PNG: render", lambda d: ["render", _s(c.many_big_pngs(d)), "--out",
                                                                     _s(d / "o.png")], 1, DECODE_REFUSED),
    Case("12 layers, each its own flat 8192² PNG: open + save", lambda d: [_s(c.many_big_pngs(d)),
                                                                          _s(d / "o.ora")], 1, DECODE_REFUSED,
         OPEN_SAVE),
    Case("5 flat 4096² layers on 4096² (496 MiB with the canvas, just within the budget): open + save",
         lambda d: [_s(c.many_big_pngs(d, layers=5, side=4096)), _s(d / "o.ora")], 0, "", OPEN_SAVE),
    Case("6 flat 4096² layers on 4096² (560 MiB, just over the budget): open + save",
         lambda d: [_s(c.many_big_pngs(d, layers=6, side=4096)), _s(d / "o.ora")], 1, DECODE_REFUSED, OPEN_SAVE),
    Case("60 layers of one 1024² PNG scaled 8x over 4096²: info", lambda d: ["info", _s(c.transformed_layers(d))],
         0, ""),
    Case("60 layers of one 1024² PNG scaled 8x over 4096²: render",
         lambda d: ["render", _s(c.transformed_layers(d)), "--out", _s(d / "o.png")], 1, WARP_REFUSED),
    Case("60 layers of one 1024² PNG scaled 8x over 4096²: open + save",
         lambda d: [_s(c.transformed_layers(d)), _s(d / "o.ora")], 1, WARP_REFUSED, OPEN_SAVE),
    Case("60 layers turned 33° over 4096²: render",
         lambda d: ["render", _s(c.transformed_layers(d, scale=5.8, rotation=33)), "--out", _s(d / "o.png")], 1,
         WARP_REFUSED),
    Case("60 layers turned 33° over 4096²: open + save",
         lambda d: [_s(c.transformed_layers(d, scale=5.8, rotation=33)), _s(d / "o.ora")], 1, WARP_REFUSED,
         OPEN_SAVE),
    Case("one layer turned 33° over half of 4096² (within the budget): render",
         lambda d: ["render", _s(c.transformed_layers(d, layers=1, scale=2.9, rotation=33)), "--out",
                    _s(d / "o.png")], 1, r"No model named 'absent'"),  # composed, then no such model
    Case("one layer turned 33° over half of 4096² (within the budget): open + save",
         lambda d: [_s(c.transformed_layers(d, layers=1, scale=2.9, rotation=33)), _s(d / "o.ora")], 0, "",
         OPEN_SAVE),
    Case("project.json of 63 MiB of '[],' in 64 KB: info", lambda d: ["info", _s(c.dense_json(d))], 1,
         r"project data .* more than the 4194304 allowed for a file of 63 KiB"),
    Case("project.json of 63 MiB of '[],' in 64 KB: open + save", lambda d: [_s(c.dense_json(d)), _s(d / "o.ora")],
         1, r"project data .* more than the 4194304 allowed", OPEN_SAVE),
    Case("project.json of 15 MiB of '[],' padded to 1000 KB (within its cap): open + save",
         lambda d: [_s(c.dense_json(d, mib=15, pad_bytes=1_000_000)), _s(d / "o.ora")], 0, "", OPEN_SAVE),
    Case("stack.xml of 15 MiB of '<a/>' in 15 KB: info", lambda d: ["info", _s(c.dense_xml(d))], 1,
         r"layer list .* more than the 2097152 allowed for a file of 15 KiB"),
    Case("stack.xml of 15 MiB of '<a/>' in 15 KB: render", lambda d: ["render", _s(c.dense_xml(d)), "--out",
                                                                     _s(d / "o.png")], 1, r"layer list .* allowed"),
    Case("editor: layers sharing one 16384² PNG", lambda d: [_s(c.shared_huge_png(d))], 1, DECODE_REFUSED, EDITOR),
    Case("editor: 12 layers, each its own flat 8192² PNG", lambda d: [_s(c.many_big_pngs(d))], 1, DECODE_REFUSED,
         EDITOR),
    Case("editor: 5 flat 4096² layers (within the budget)", lambda d: [_s(c.many_big_pngs(d, layers=5, side=4096))],
         0, "", EDITOR),
    Case("editor: 60 layers of one 1024² PNG scaled 8x over 4096²", lambda d: [_s(c.transformed_layers(d))], 1,
         WARP_REFUSED, EDITOR),
    Case("editor: one layer turned 33° over half of 4096² (within the budget)",
         lambda d: [_s(c.transformed_layers(d, layers=1, scale=2.9, rotation=33))], 0, "", EDITOR),
    Case("editor: project.json of 63 MiB of '[],'", lambda d: [_s(c.dense_json(d))], 1, r"project data .* allowed",
         EDITOR),
    Case("editor: stack.xml of 15 MiB of '<a/>'", lambda d: [_s(c.dense_xml(d))], 1, r"layer list .* allowed", EDITOR),
    Case("editor: huge stroke", lambda d: [_s(c.huge_stroke(d))], 1, r"too costly to draw", EDITOR),
    Case("editor: 1000 collage pieces over 4096²", lambda d: [_s(c.many_pieces(d))], 1, r"billion pixels to draw",
         EDITOR),
    Case("16384² canvas with full-canvas regions: render", lambda d: ["render", _s(c.region_canvas(d)), "--out",
                                                                      _s(d / "o.png")], 1,
         DECODE_REFUSED),  # since the decode budget: its 16384² canvas alone is 1.75 GiB to flatten and save
    Case("1000 collage pieces over 4096²: render", lambda d: ["render", _s(c.many_pieces(d)), "--out",
                                                              _s(d / "o.png")], 1, r"billion pixels to draw"),
    Case("1000 collage pieces over 4096²: info", lambda d: ["info", _s(c.many_pieces(d))], 0, ""),
    Case("--out is a folder", lambda d: ["render", _s(c.small_project(d)), "--out", _s(d)], 1, r"is a folder"),
    Case("models folder with links to '.', loops, FIFO, custom pipeline: models",
         lambda d: ["models", "--models", _s(c.hostile_models(d))], 0, ""),
    Case("a skipped model asked for by name: models", lambda d: ["models", "custom", "--models",
                                                                 _s(c.hostile_models(d))], 1,
         r"'custom' was found but skipped: .*a custom pipeline"),
    Case("a FIFO named like a model: render --model", lambda d: ["render", _s(c.small_project(d)), "--out",
                                                                _s(d / "o.png"), "--model",
                                                                _s(c.fifo(d, "m.safetensors"))], 1,
         r"FIFO"),
]


def input_bytes(folder: Path) -> int:
    """Bytes of the regular files a case wrote (FIFOs and links to devices count as nothing)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(os, "wait4"), reason="needs POSIX FIFOs and wait4")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_crafted_file_gets_one_sentence_within_the_budgets(case, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    args = case.make(folder)
    assert input_bytes(folder) < MAX_INPUT_BYTES
    result = c.run_collagen(args, cwd=tmp_path, hang_after=HANG_AFTER, module=case.module)
    assert result.status is not None, f"{case.name}: still running after {HANG_AFTER} s (a hang)"
    lines = result.stderr.strip().splitlines()
    assert result.status == case.status, result.stderr[-2000:]
    if case.error:
        assert len(lines) == 1 and re.search(case.error, lines[0]), result.stderr[-2000:]
        assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert result.peak_rss_mib < MAX_RSS_MIB, f"{case.name}: {result.peak_rss_mib:.0f} MiB"
    assert result.cpu_s < MAX_CPU_S, f"{case.name}: {result.cpu_s:.1f} s of CPU"
    assert "step " not in result.stderr  # refused before any generating


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs wait4")
def test_the_measured_peak_is_the_commands_own_not_the_test_process(tmp_path):
    """CI's pytest process grows to gigabytes; a child forked from it inherited that peak (Linux keeps
    ru_maxrss across fork and exec) and every case 'used' 15 GiB. The launcher keeps the figure honest."""
    ballast = bytearray(1536 << 20)  # 1.5 GiB touched in this process
    ballast[::4096] = b"x" * len(ballast[::4096])
    result = c.run_collagen(["info", _s(c.small_project(tmp_path))], cwd=tmp_path, hang_after=HANG_AFTER)
    assert result.status == 0, result.stderr[-2000:]
    assert 20 < result.peak_rss_mib < MAX_RSS_MIB, f"{result.peak_rss_mib:.0f} MiB"
    del ballast


def main() -> int:
    import tempfile

    print("| case | input | status | wall | CPU | peak RSS | answer |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as temp:
            folder = Path(temp) / "case"
            folder.mkdir()
            args = case.make(folder)
            size = input_bytes(folder)
            result = c.run_collagen(args, cwd=Path(temp), hang_after=HANG_AFTER, module=case.module)
            answer = (result.stderr.strip().splitlines() or [""])[-1].replace(temp, "…")[:110]
            print(f"| {case.name} | {size / 1024:.1f} KiB | {result.status} | {result.wall_s:.1f} s | "
                  f"{result.cpu_s:.1f} s | {result.peak_rss_mib:.0f} MiB | {answer} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
