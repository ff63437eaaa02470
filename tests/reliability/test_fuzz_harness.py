"""The fuzz harness itself: deterministic inputs, and every kind of failure is caught, saved and replayable
(so a fuzz test that passes means the readers held, not that the harness looked away)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from fuzz import ora, png, safetensors
from fuzz.harness import Target, make_input, replay, run_mutation
from fuzz.mutator import png_chunks, split_safetensors, zip_members


class ReaderError(Exception):
    pass


def fake_target(read, check_result=lambda result, path: None) -> Target:
    return Target(name="fake", suffix=".bin", errors=(ReaderError,), read=read, check_result=check_result,
                  seeds=lambda: [b"seed one", b"seed two"], mutate=lambda rng, data: data + bytes([rng.randrange(256)]))


def test_inputs_are_the_same_for_the_same_seed_and_case():
    target = png.target()
    seeds = target.seeds()
    assert make_input(target, seeds, 5, 17) == make_input(target, seeds, 5, 17)
    assert len({make_input(target, seeds, 5, case) for case in range(20)}) > 15


def test_structure_aware_mutations_keep_their_containers_readable():
    """Most mutated projects are still zips, PNGs keep valid chunk framing, safetensors their prefix:
    the damage reaches the validators behind the container checks."""
    for target, intact in ((ora.target(), zip_members), (png.target(), png_chunks),
                           (safetensors.target(), split_safetensors)):
        seeds = target.seeds()
        inputs = [make_input(target, seeds, 3, case) for case in range(len(seeds), len(seeds) + 60)]
        assert sum(intact(data) is not None for data in inputs) >= 40, target.name


def test_an_escaping_exception_is_a_failure_saved_for_replay(tmp_path):
    def read(path: Path):
        if path.read_bytes().endswith(b"\x07"):
            raise TypeError("not the project's error")
        raise ReaderError(f"{path.name}: is fine to refuse.")

    report = run_mutation(fake_target(read), cases=300, seed=1, crash_dir=tmp_path)
    assert report.rejected > 0 and len(report.failures) == 1  # one distinct failure, however often it recurs
    failure = report.failures[0]
    assert failure.kind == "escaped" and failure.summary.startswith("TypeError")
    outcome, summary, _ = replay(fake_target(read), Path(failure.input_file))
    assert outcome == "escaped" and "not the project's error" in summary


def test_an_unclear_message_an_unsound_result_and_a_hang_are_failures():
    def vague(path: Path):
        raise ReaderError("something went wrong\nTraceback (most recent call last)")

    assert run_mutation(fake_target(vague), cases=3).failures[0].kind == "unclear-message"

    def unsound(result, path: Path):
        assert result != b"seed one", "the result is unsound"

    invariant = run_mutation(fake_target(lambda path: path.read_bytes(), unsound), cases=3).failures
    assert invariant[0].kind == "invariant" and "unsound" in invariant[0].summary

    def slow(path: Path):
        time.sleep(5)

    started = time.perf_counter()
    hang = run_mutation(fake_target(slow), cases=1, time_limit=0.2).failures
    assert hang[0].kind == "hang" and time.perf_counter() - started < 3


def test_the_seeds_themselves_read_cleanly():
    for target in (ora.target(), png.target(), safetensors.target()):
        report = run_mutation(target, cases=len(target.seeds()), seed=random.Random(0).randrange(100))
        assert report.failures == [] and report.accepted == report.cases, target.name
