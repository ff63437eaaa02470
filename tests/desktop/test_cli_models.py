"""`collagen models` on a hostile folder: every good model, then what was skipped and why; asking for a
skipped file by name says why it was skipped. The editor's model picker carries the same list."""

from __future__ import annotations

import json

import pytest

from desktop.cli import main
from desktop.panels.generation import MAX_TOOLTIP_SKIPPED, skipped_tooltip
from tests.inference.test_discovery_hostile import hostile_webui


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def webui(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAGEN_MODELS", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return hostile_webui(tmp_path / "webui")


def test_models_lists_the_good_ones_then_the_skipped_with_reasons(webui, capsys):
    code, out, err = run_cli(["models", "--models", webui], capsys)
    assert code == 0 and err == ""
    listing, _, skipped = out.partition("\nSkipped (")
    for name in ("good-sd15", "deep/good-xl", "good-diffusers"):
        assert f"\n{name} " in listing
    assert "pipe" not in listing and "sd3" not in listing
    lines = skipped.splitlines()
    assert lines[0] == f"{len(lines) - 1}):"
    assert f"  {webui / 'models' / 'Stable-diffusion' / 'sd3.safetensors'}: unsupported model family (looks like " \
           "Stable Diffusion 3)." in lines
    assert any(line.endswith("loop-a: is a symbolic link loop (it never reaches a file).") for line in lines)
    assert any("custom: a custom pipeline (my_module.MyPipeline)" in line for line in lines)


def test_models_json_marks_skipped_entries(webui, capsys):
    code, out, _ = run_cli(["models", "--json", "--models", webui], capsys)
    assert code == 0
    entries = json.loads(out)
    skipped = {entry["name"]: entry["reason"] for entry in entries if entry["kind"] == "skipped"}
    assert skipped["refiner"] == "unsupported model family (looks like an SDXL refiner)."
    assert {entry["name"] for entry in entries if entry["kind"] not in ("skipped", "builtin")} == {
        "good-sd15", "deep/good-xl", "good-diffusers"}


@pytest.mark.parametrize(("name", "reason"), [
    ("sd3", "looks like Stable Diffusion 3"),
    ("pipe", "is a FIFO (named pipe), not a regular file"),
    ("custom", "a custom pipeline (my_module.MyPipeline)"),
])
def test_asking_for_a_skipped_file_says_why(webui, capsys, name, reason):
    code, out, err = run_cli(["models", name, "--models", webui], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"error: {name!r} was found but skipped: ") and reason in err
    assert len(err.strip().splitlines()) == 1


def test_asking_for_a_good_model_by_name_shows_it(webui, capsys):
    code, out, _ = run_cli(["models", "deep/good-xl", "--models", webui], capsys)
    assert code == 0 and out.split()[:3] == ["deep/good-xl", "sdxl", "checkpoint"]


def test_the_model_pickers_tooltip_lists_what_was_skipped():
    assert skipped_tooltip([]) == ""
    assert skipped_tooltip(["/m/a.safetensors: is a FIFO."]) == "1 file was skipped:\n• /m/a.safetensors: is a FIFO."
    many = [f"/m/{i}.safetensors: bad." for i in range(MAX_TOOLTIP_SKIPPED + 5)]
    text = skipped_tooltip(many)
    assert text.startswith(f"{len(many)} files were skipped:") and text.endswith("… and 5 more (`collagen models` "
                                                                                  "lists them all)")
    assert text.count("•") == MAX_TOOLTIP_SKIPPED
