"""The command line every fuzz module shares: `python -m fuzz.<target> --cases N [--seed S] ...`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable

from fuzz.harness import DEFAULT_TIME_LIMIT, Target, replay, run_hypothesis, run_mutation, write_json


def main(target: Target, strategy: Callable[[], object], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m fuzz.{target.name}",
                                     description=f"Fuzz the {target.name} reader; exit status 1 on any failure.")
    parser.add_argument("--cases", type=int, default=10_000, help="seeded byte mutations to run (default 10000)")
    parser.add_argument("--hypothesis", type=int, default=None, metavar="N",
                        help="hypothesis-generated inputs to run as well (default: the same as --cases)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first-case", type=int, default=0, help="start at this case number (to replay a range)")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="seconds one read may take")
    parser.add_argument("--crash-dir", type=Path, default=Path(tempfile.gettempdir()) / "collagen-fuzz-crashes",
                        help="where failing inputs go (default: a folder in the temp dir)")
    parser.add_argument("--json", type=Path, help="write the reports as JSON to this file")
    parser.add_argument("--replay", type=Path, help="run one saved input and print what happens")
    args = parser.parse_args(argv)

    if args.replay:
        outcome, summary, detail = replay(target, args.replay, args.time_limit)
        print(f"{outcome}: {summary}\n{detail}")
        return 0 if outcome in ("accepted", "rejected") else 1

    def progress(report) -> None:
        print(f"  ... {report.cases} cases, {len(report.failures)} failures", file=sys.stderr, flush=True)

    reports = [run_mutation(target, args.cases, args.seed, crash_dir=args.crash_dir, time_limit=args.time_limit,
                            progress=progress, first_case=args.first_case)]
    print(reports[-1].summary(), flush=True)
    examples = args.cases if args.hypothesis is None else args.hypothesis
    if examples > 0:
        reports.append(run_hypothesis(target, strategy(), examples, args.seed, crash_dir=args.crash_dir,
                                      time_limit=args.time_limit))
        print(reports[-1].summary(), flush=True)
    for report in reports:
        for failure in report.failures:
            print(f"FAILURE {failure.kind} ({failure.case}): {failure.summary}  [{failure.input_file}]")
    if args.json:
        write_json(args.json, reports)
    return 0 if all(r.ok for r in reports) else 1
