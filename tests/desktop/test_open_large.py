"""A project refused only for what it asks of memory next to its size (the decode and resampling
budgets that stop crafted files) can be one the user made: a large, nearly flat canvas packs to very
little. The editor asks and opens it anyway; `collagen render` says to add --open-large; autosave
recovery trusts its own files. The budgets are lowered here so that a small canvas shows it fast."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from canvas.io import limits as limits_module
from canvas.io.errors import CostlyFileError
from canvas.io.limits import DEFAULT_LIMITS, MiB, trusting
from canvas.io.ora import load_ora, save_ora
from canvas.model.document import Document
from canvas.model.layers import ImageLayer

LOW = replace(DEFAULT_LIMITS, decode_floor=1 * MiB, decode_ratio=1)  # 1 MiB, whatever the file's size


def flat_project(tmp_path, size=768):
    """A white canvas with one dab of paint: ~2.3 MiB of RGBA and a canvas to flatten, a few KB packed."""
    document = Document(size, size)
    pixels = np.full((size, size, 4), 255, np.uint8)
    pixels[10:20, 30:40, :3] = (200, 30, 60)
    document.add_layer_untracked(ImageLayer(name="Background", pixels=pixels))
    path = tmp_path / "flat.ora"
    save_ora(document, path)
    assert path.stat().st_size < 64 * 1024
    return path, pixels


def test_a_genuine_flat_project_over_the_budget_is_a_costly_file_and_opens_when_trusted(tmp_path):
    path, pixels = flat_project(tmp_path)
    with pytest.raises(CostlyFileError, match="more than the 1.0 MiB a file of"):
        load_ora(path, LOW)
    opened = load_ora(path, trusting(LOW))
    assert np.array_equal(opened.layers[0].pixels, pixels)
    assert trusting(LOW).max_decoded_bytes == LOW.max_decoded_bytes  # the absolute limits stay


def test_the_editor_asks_and_opens_a_costly_project_only_when_the_user_says_so(qtbot, make_editor, tmp_path,
                                                                              dialog_spy, monkeypatch):
    from desktop import window_files

    path, pixels = flat_project(tmp_path)
    monkeypatch.setattr(window_files, "OPEN_LIMITS", LOW)
    window = make_editor().window
    before = window.document
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))

    dialog_spy.question_answer = QMessageBox.StandardButton.No
    window.actions["open"].trigger()
    questions = dialog_spy.texts("question")
    assert len(questions) == 1 and questions[0].startswith("flat.ora: its layers and canvas would need")
    assert "Open it anyway?" in questions[0]
    assert window.document is before and not dialog_spy.texts("warning")

    dialog_spy.question_answer = QMessageBox.StandardButton.Yes
    window.actions["open"].trigger()
    assert window.document is not before and window.path == path.resolve()
    assert np.array_equal(window.document.layers[0].pixels, pixels)
    assert not dialog_spy.texts("warning")


def test_render_names_open_large_and_opens_with_it(tmp_path, monkeypatch):
    from desktop.cli import CliError, render

    path, _ = flat_project(tmp_path)
    monkeypatch.setattr(limits_module, "DEFAULT_LIMITS", LOW)
    with pytest.raises(CliError, match="add --open-large to open it anyway"):
        render(path, tmp_path / "out.png", model="absent", quiet=True)
    # With it the project opens: what fails now is the model, after the project was read.
    with pytest.raises(Exception, match="absent") as raised:
        render(path, tmp_path / "out.png", model="absent", quiet=True, open_large=True)
    assert not isinstance(raised.value, CostlyFileError)
