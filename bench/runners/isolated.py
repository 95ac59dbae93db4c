"""Run each case in a fresh interpreter (``--isolate``), as pyperf and asv do.

The parent pytest keeps the selection, the run folder and the report; for each case it
starts a child pytest that measures exactly that case into the same run folder (the child
appends its row to ``cases.jsonl`` and writes its own pytest-benchmark JSON, merged into
``benchmark.json`` at the end). Each case then sees a cold process: no compiled graphs,
allocator caches or thread pools left by earlier cases, and a true cold compile time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bench.runners.base import MEASURED_ELSEWHERE
from bench.schema.case import AXIS_FIELDS, Case, axis_value
from bench.schema.files import BENCHMARK_JSON, CASES_FILE, ISOLATED_DIR
from bench.schema.results import RunWriter, write_atomic
from bench.schema.status import ReportedFailure, Status

if TYPE_CHECKING:
    from bench.workloads.step import Step

CHILD_DIR = ISOLATED_DIR
# Options of the parent that must not reach the child (it gets its own values for these).
_DROP_FLAGS = {"--isolate"}


def child_args(config: pytest.Config, case: Case, run_dir: Path) -> list[str]:
    """The parent's own arguments, then options that pin the child to one case and folder."""
    args = [a for a in config.invocation_params.args if a not in _DROP_FLAGS]
    values = {axis: axis_value(getattr(case, field), field) for axis, field in AXIS_FIELDS.items()}
    values["optimizers"] = case.optimizer or "sgd"  # forward/backward ignore the optimizer axis
    # None: the parent's selection has that default (a model's image size, torch's prefetch).
    pinned = {axis: value for axis, value in values.items() if value is not None}
    for axis, value in pinned.items():
        args += [f"--{axis.replace('_', '-')}", value]  # later options win over the parent's
    child_json = run_dir / CHILD_DIR / f"{abs(hash(case.id)):x}.json"
    return [*args, "--run-dir", str(run_dir), "--bb-child", "--benchmark-json", str(child_json),
            "-p", "no:cacheprovider"]


def run_case(config: pytest.Config, case: Case, run_dir: Path) -> dict[str, Any]:
    """Measure one case in a child process; return the row it recorded."""
    (run_dir / CHILD_DIR).mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", *child_args(config, case, run_dir)]
    proc = subprocess.run(cmd, cwd=config.invocation_params.dir, capture_output=True, text=True)
    row = last_row(run_dir, case.id)
    if row is None:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"the isolated process for {case.id} exited {proc.returncode} without a result:\n"
                           + "\n".join(tail))
    return row


def last_row(run_dir: Path, case_id: str) -> dict[str, Any] | None:
    path = run_dir / CASES_FILE
    if not path.is_file():
        return None
    found = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (row.get("extra_info") or {}).get("case_id") == case_id:
            found = row
    return found


def merge_benchmark_json(run_dir: Path) -> None:
    """Fold the children's pytest-benchmark JSON files into the run's ``benchmark.json``."""
    children = sorted((run_dir / CHILD_DIR).glob("*.json"))
    if not children:
        return
    target = run_dir / BENCHMARK_JSON
    merged = json.loads(target.read_text()) if target.is_file() else json.loads(children[0].read_text())
    merged["benchmarks"] = [b for child in children for b in json.loads(child.read_text())["benchmarks"]]
    write_atomic(target, json.dumps(merged, indent=2))


@dataclass
class IsolatedRunner:
    """--isolate: each case is measured by a child process writing into the same run folder."""

    config: pytest.Config
    node: pytest.Item
    writer: RunWriter
    last_step: Step | None = None  # never set: the step lived in the child

    def measure(self, benchmark: Any, case: Case) -> None:
        self.node.stash[MEASURED_ELSEWHERE] = True  # the child records the row
        row = run_case(self.config, case, self.writer.run_dir)
        self.writer.tally(row)
        extra = row.get("extra_info") or {}
        status = Status(extra.get("status", Status.ERROR.value))
        if status is Status.SKIPPED:
            pytest.skip(extra.get("error") or "skipped")
        if not status.measured:
            raise ReportedFailure(extra.get("error") or status.value, status)
