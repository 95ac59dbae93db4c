"""The reading half of ``python -m bench gpu-check``: ``python -m reports.gpu_check RUN_DIR --output FILE``.

bench never imports reports (tests/test_architecture.py), so the GPU check, like ``python -m bench
tune``, measures through ``pytest bench`` in a child process and reads the run folder through this
one, also a child: the rows as ``reports.load`` gives them (the raw rounds left out), each timed
case's speedup over a named case with the gate's 95% interval (``--seed CASE_ID``, repeatable;
``reports.tune.tune_table``), and with ``--traces`` each profiled case's step breakdown
(``reports.traces.breakdown``: kernel, idle and launch-overhead shares on a GPU). One JSON object,
NaN written as null. Exit 2, naming the folder, when it holds no results.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from .load import ResultsError, load
from .traces.breakdown import read_cases
from .traces.files import TraceError
from .traces.profile import trace_folders
from .tune import tune_table

# Every round of every case: the checks read the figures, and the rounds would dwarf them.
LEFT_OUT = ("times_s",)


def rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row's fields and figures as JSON values (NaN and missing as None)."""
    kept = df.drop(columns=[c for c in LEFT_OUT if c in df])
    return json.loads(kept.to_json(orient="records", default_handler=str))


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def speedups(df: pd.DataFrame, seed_id: str) -> list[dict[str, Any]]:
    """Every timed case's speedup over ``seed_id`` (seed median / its median) with the 95% interval."""
    table = tune_table(df, seed_id)
    return [dict(case_id=r["case_id"], speedup=_number(r["speedup"]), low=_number(r["speedup_low"]),
                 high=_number(r["speedup_high"])) for _, r in table.iterrows()]


def breakdowns(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Per profiled case: its steps, the typical step's length and each part's share and seconds
    per step (lane host or device); and the traces that could not be read, as messages."""
    try:
        views, errors = read_cases(trace_folders(run_dir))
    except TraceError as exc:
        return {}, [str(exc)]
    found = {}
    for view in views:
        parts = {r["part"]: dict(lane=r["lane"], share=_number(r["share"]),
                                 seconds_per_step=_number(r["seconds_per_step"]))
                 for _, r in view.breakdown.iterrows()}
        found[view.case_id] = dict(steps=view.steps, step_s=_number(view.step_s), trace=str(view.trace_file),
                                   parts=parts)
    return found, errors


def read(run_dir: Path, seeds: list[str], traces: bool) -> dict[str, Any]:
    df = load(run_dir)
    found, errors = breakdowns(run_dir) if traces else ({}, [])
    return dict(run=str(run_dir), rows=rows(df), speedups={seed: speedups(df, seed) for seed in seeds},
                breakdowns=found, breakdown_errors=errors, skipped=list(df.attrs.get("skipped", [])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder written by pytest bench")
    parser.add_argument("--output", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--seed", action="append", default=[],
                        help="a case id to price every timed case against (repeatable)")
    parser.add_argument("--traces", action="store_true", help="also read the profiled cases' traces")
    args = parser.parse_args(argv)
    try:
        found = read(args.run, args.seed, args.traces)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.output.write_text(json.dumps(found, indent=1, allow_nan=False, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
