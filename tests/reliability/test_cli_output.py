"""`collagen info` on hostile and damaged files: one sentence or a listing, never a traceback, and
nothing a file says can drive the terminal (escape sequences are printed escaped)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from canvas.io.ora import save_ora
from canvas.io.png_info import write_png
from canvas.model.document import Document, GenerationSettings
from canvas.model.layers import RegionLayer
from desktop.cli import main, shown
from fuzz import ora, png
from fuzz.harness import make_input

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m\x9b1m"


def test_escape_sequences_in_png_parameters_are_printed_escaped(tmp_path, capsys):
    path = tmp_path / "hostile.png"
    write_png(path, np.zeros((8, 8, 3), np.uint8), {"prompt": f"a fox {ESCAPES} end", "model": f"m{ESCAPES}"})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "a fox \\x1b]0;pwned\\x07\\x1b[2J\\x1b[31m\\x9b1m end" in out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out


def test_a_project_with_escapes_and_lone_surrogates_is_listed_not_refused(tmp_path, capsys):
    document = Document(16, 16, settings=GenerationSettings(prompt=f"fox {ESCAPES} \ud800 tail"))
    document.add_layer_untracked(RegionLayer(name=f"region {ESCAPES}", rect=(0, 0, 8, 8), prompt="\udfff cat"))
    path = tmp_path / "odd.ora"
    save_ora(document, path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "prompt: fox \\x1b]0;pwned" in out and "? tail" in out and "region \\x1b" in out
    assert "\x1b" not in out


@pytest.mark.parametrize("target, suffix", [(ora, ".ora"), (png, ".png")])
def test_info_on_damaged_files_is_a_listing_or_one_error_sentence(tmp_path, capsys, target, suffix):
    fuzz_target = target.target()
    seeds = fuzz_target.seeds()
    path = tmp_path / f"damaged{suffix}"
    statuses = []
    for case in range(40):
        path.write_bytes(make_input(fuzz_target, seeds, 77, case))
        statuses.append(main(["info", str(path)]))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "\x1b" not in captured.out
        if statuses[-1]:
            lines = captured.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: damaged") and "unexpected" not in lines[0]
    assert 0 in statuses and 1 in statuses


def test_shown_keeps_ordinary_text_as_it_is():
    text = "夕焼け 🌅, (detailed:1.2)\nNegative prompt: blurry\tsoft"
    assert shown(text) == text
    assert shown(random.Random(1).choice(["\x00", "\x7f"])) in ("\\x00", "\\x7f")
