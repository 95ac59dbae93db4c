"""Command line: ``python -m reports RUN_DIR`` re-renders the report of a results folder.

``python -m reports --history`` draws each case's median over the runs in the history;
``python -m reports gate BASELINE CURRENT`` gates a change; ``python -m reports calibrate A B``
stores noise floors from an A/A pair (see reports/gate/cli.py); ``python -m reports trace-diff
BASE CURRENT`` compares two profiled runs' traces (reports/traces/diff.py); ``python -m reports
merge RUN... --output DIR`` joins the shards of a run (reports/merge.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from bench.schema.files import DEFAULT_RESULTS_DIR, RUN_FILES

from .history import DEFAULT_NAME, write_history_report
from .load import ResultsError
from .run.write import write_report


def latest_run(results_dir: Path) -> Path:
    """The most recently written run folder directly under ``results_dir``.

    Only folders holding results count (not ``calibration/`` or a study's folder of runs), and
    by when their results were written, since a named --run-dir need not sort by time.
    """
    runs = {run: max((run / n).stat().st_mtime for n in RUN_FILES if (run / n).is_file())
            for run in results_dir.glob("*")
            if run.is_dir() and any((run / n).is_file() for n in RUN_FILES)}
    if not runs:
        raise ResultsError(f"{results_dir}: no run folders; run `nox -s bench` first")
    return max(runs, key=runs.get)


def _subcommand(name: str) -> Callable[[list[str]], int]:
    """The entry point of a subcommand, imported only when it runs (the gate, the merge and the
    trace diff each pull in what the plain re-render does not need)."""
    if name == "trace-diff":
        from .traces import diff

        return diff.main
    if name == "merge":
        from . import merge

        return merge.main
    from .gate import cli

    return {"gate": cli.gate_main, "calibrate": cli.calibrate_main}[name]


SUBCOMMANDS = ("gate", "calibrate", "trace-diff", "merge")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0])(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__)
    parser.add_argument("run", nargs="?", type=Path,
                        help="a run folder such as results/20261122-120000 (default: the latest)")
    parser.add_argument("--results-dir", type=Path, default=Path(DEFAULT_RESULTS_DIR),
                        help=f"where to look for the latest run (default: {DEFAULT_RESULTS_DIR})")
    parser.add_argument("--history", action="store_true",
                        help="instead of one run: each case's median over the runs in the history "
                             "(writes history.html and history.md beside the history file)")
    parser.add_argument("--history-db", default=None, metavar="PATH|URL",
                        help=f"the history: a file (a path, sqlite:///PATH or file:PATH) or a "
                             f"server (postgresql://USER@HOST/DB) (default: RESULTS_DIR/{DEFAULT_NAME})")
    args = parser.parse_args(argv)
    if args.history and args.run is not None:
        parser.error(f"--history reads the history file, not a run folder; drop {args.run}")
    try:
        if args.history:
            paths = write_history_report(args.history_db or args.results_dir / DEFAULT_NAME)
        else:
            paths = write_report(args.run or latest_run(args.results_dir))
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        if kind == "skipped":
            for message in path:
                print(f"warning: skipped when reading: {message}", file=sys.stderr)
        else:
            print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
