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
