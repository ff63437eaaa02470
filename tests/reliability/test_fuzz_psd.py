"""The PSD reader under hostile input (issue 18 acceptance 5): a few seeded cases in the suite;
the dedicated run is `python -m fuzz.psd --cases 10000` (docs/RELIABILITY.md)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from fuzz import psd
from fuzz.harness import run_case, run_mutation


def test_seeded_psd_mutations_give_a_document_or_one_clear_project_error():
    report = run_mutation(psd.target(), cases=60, seed=2026)
    assert report.failures == [], [f"{f.kind}: {f.summary}" for f in report.failures]
    assert report.accepted >= 5 and report.rejected >= 20  # the mutations reach both outcomes


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(psd.strategy())
def test_generated_psd_files_give_a_document_or_one_clear_project_error(data):
    with tempfile.TemporaryDirectory() as folder:
        outcome, summary, _ = run_case(psd.target(), data, Path(folder) / "generated.psd", time_limit=20)
    assert outcome in ("accepted", "rejected"), summary


def test_psd_export_keeps_any_layer_name_and_cuts_only_past_photoshops_255(tmp_path):
    """Found by the structure-aware strategy: a name with a character Mac Roman lacks ('\\x80', CJK)
    failed the whole export ('charmap' codec), and a name of 256+ characters raised ValueError."""
    import numpy as np

    from canvas.io.psd import load_psd, save_psd
    from canvas.model.document import Document
    from canvas.model.layers import GroupLayer, ImageLayer

    document = Document(16, 16)
    document.add_layer_untracked(GroupLayer(id="g", name="グループ \x80"))
    document.add_layer_untracked(ImageLayer(id="a", name="猫" * 300, group="g",
                                            pixels=np.full((4, 4, 4), 255, np.uint8)))
    notes = save_psd(document, tmp_path / "names.psd")
    assert notes == ["Photoshop layer names end at 255 characters: 1 longer name was cut."]
    assert sorted(layer.name for layer in load_psd(tmp_path / "names.psd").layers) == ["グループ \x80", "猫" * 255]


def test_a_psd_whose_layers_would_decode_past_its_budget_is_refused_before_any_is_decoded(tmp_path):
    """Issue 17: the decode budget of projects (max(512 MiB, 512 x file bytes)) holds for PSDs too, summed
    from the layer records before psd-tools decodes a channel."""
    import numpy as np

    from canvas.io.errors import ProjectError
    from canvas.io.limits import ReadLimits
    from canvas.io.psd import load_psd, save_psd
    from canvas.model.document import Document
    from canvas.model.layers import ImageLayer
    from tests.reliability.allocation import peak_allocation

    document = Document(256, 256)
    for i in range(4):
        document.add_layer_untracked(ImageLayer(id=f"l{i}", name=f"flat {i}",
                                                pixels=np.full((256, 256, 4), (10 * i, 20, 30, 255), np.uint8)))
    path = tmp_path / "flat.psd"
    save_psd(document, path)
    assert len(load_psd(path).layers) == 4  # 1.25 MiB + the canvas: far within the default budget
    limits = ReadLimits(decode_floor=1 << 20, decode_ratio=1)
    peak = peak_allocation(lambda: load_psd(path, limits), ProjectError,
                           r"its layers and canvas would need \d+ MiB of memory decoded, more than the 1 MiB .*"
                           r"before any layer is decoded\.$")
    assert peak < 1 << 20  # no layer decoded (one is 256 KiB)
