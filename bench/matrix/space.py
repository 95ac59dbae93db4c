"""Disk space: what a run will write, estimated from its selection before it starts, so that a
disk too full for it refuses the run (exit 2) instead of failing after the measuring.

The estimate is generous on purpose, an upper bound for the seed's cases rather than a
prediction: a refused run costs a second, a full disk in the middle costs the run. Most of
what a run writes is the raw time of every round, once in ``cases.jsonl``, once in
``benchmark.json`` (indented), once in the history (and once more in an ``--isolate``
child's JSON); how many rounds a case gets depends on its speed, known only once it runs,
so the estimate gives every case the rounds of a very fast step (``FASTEST_ROUND_S``).
Measured on a default-preset run: about 23 bytes per round in ``cases.jsonl``, 45 in
``benchmark.json``, 40 in the history, a few KB per case for the rest, and a report.html of
about 40 KB per case.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from bench.schema.case import DATA_PHASES, Case

# A step faster than any seed case (the fastest, optimizer steps, take some tens of µs): every
# case is budgeted the rounds of one this fast.
FASTEST_ROUND_S = 20e-6
RUN_BYTES_PER_ROUND = 80  # cases.jsonl and benchmark.json
ISOLATED_BYTES_PER_ROUND = 48  # an --isolate child's own pytest-benchmark JSON
HISTORY_BYTES_PER_ROUND = 48
RUN_BYTES_PER_CASE = 64_000  # the row's figures in three files, its share of the reports
HISTORY_BYTES_PER_CASE = 8_000  # the case's row and its figures' rows
RUN_BYTES = 2_000_000  # environment, figures, the reports' fixed part
PROFILE_BYTES_PER_CASE = 1_000_000  # a trace (measured at most ~100 KB gzipped) and its summary rows
COUNT_BYTES_PER_CASE = 20_000_000  # a kept callgrind dump (--metric instructions)


class Usage(Protocol):
    """What ``shutil.disk_usage`` tells of a file system."""

    total: int
    free: int  # bytes an unprivileged user may still write


class SpaceError(ValueError):
    """Less free space than the run needs; the message names the folder and both amounts."""


@dataclass(frozen=True)
class Plan:
    """What decides the size of a run's files: its cases and its timing and passes."""

    cases: Sequence[Case]
    max_time: float
    min_rounds: int
    profiled: bool = False
    counted: bool = False
    isolated: bool = False


def rounds(case: Case, plan: Plan) -> int:
    """The rounds a case is budgeted: a loop phase times a few epochs; a count run keeps none."""
    if plan.counted:
        return 0
    if case.phase in DATA_PHASES:
        return plan.min_rounds
    return max(plan.min_rounds, round(plan.max_time / FASTEST_ROUND_S))


def run_folder_bytes(plan: Plan) -> int:
    per_round = RUN_BYTES_PER_ROUND + (ISOLATED_BYTES_PER_ROUND if plan.isolated else 0)
    per_case = RUN_BYTES_PER_CASE + (PROFILE_BYTES_PER_CASE if plan.profiled else 0) + (
        COUNT_BYTES_PER_CASE if plan.counted else 0)
    # A distributed case's ranks each keep their rounds beside its row.
    return RUN_BYTES + sum(per_case + per_round * rounds(c, plan) * c.world_size for c in plan.cases)


def history_bytes(plan: Plan) -> int:
    return sum(HISTORY_BYTES_PER_CASE + HISTORY_BYTES_PER_ROUND * rounds(c, plan) for c in plan.cases)


def needs(plan: Plan, results: Path, history: Path | None) -> dict[Path, int]:
    """Bytes the run writes per folder: the run folder's, and the history's (None: a server)."""
    found = {results: run_folder_bytes(plan)}
    if history is not None:
        folder = history.parent
        found[folder] = found.get(folder, 0) + history_bytes(plan)
    return found


def existing(path: Path) -> Path:
    """The folder itself, or the nearest one above it that exists (where it will be created)."""
    return next(p for p in (path, *path.absolute().parents) if p.exists())


def check(needed: dict[Path, int], plan: Plan, usage: Callable[[Path], Usage] | None = None) -> None:
    """Refuse when a file system has less free space than the run writes on it (``usage``:
    ``shutil.disk_usage``, looked up when called)."""
    usage = usage or shutil.disk_usage
    by_device: dict[int, list[Path]] = {}
    for folder in needed:
        by_device.setdefault(os.stat(existing(folder)).st_dev, []).append(folder)
    for folders in by_device.values():
        need = sum(needed[f] for f in folders)
        found = usage(existing(folders[0]))
        # /proc or /sys report no size at all: not a disk to judge (creating there fails, named).
        if found.total and need > found.free:
            raise SpaceError(
                f"{' and '.join(map(str, folders))}: not enough free disk space for this run: it writes up to "
                f"about {size(need)} ({len(plan.cases)} case{'' if len(plan.cases) == 1 else 's'} at "
                f"--benchmark-max-time {plan.max_time:g}), {size(found.free)} free; free some space, write "
                "elsewhere (--results-dir, --history-db) or time less (--benchmark-max-time)")


def size(count: int) -> str:
    return f"{count / 1e9:,.1f} GB" if count >= 1e9 else f"{count / 1e6:,.1f} MB"
