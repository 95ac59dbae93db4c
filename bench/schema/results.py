"""Where a run's results go: ``results/<timestamp>/``, one JSON line per case as it finishes.

pytest-benchmark writes its JSON only at the end of the session; the JSON-lines file is
written (and fsynced) after every case so that an interrupted or crashed run keeps
everything already measured.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from bench.schema.files import CASES_FILE
from bench.schema.status import Status


def new_run_dir(results_dir: Path | str, now: float | None = None) -> Path:
    """A fresh folder named by the UTC start time; a suffix keeps concurrent runs apart."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    base = Path(results_dir)
    for attempt in range(1000):
        run_dir = base / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {base}")


MEASURED = frozenset(s.value for s in Status if s.measured)


class RunWriter:
    """Appends one result row per case to ``cases.jsonl``, durable before the next case runs."""

    def __init__(self, run_dir: Path, name: str = CASES_FILE) -> None:
        self.run_dir = run_dir
        self.path = run_dir / name
        self.count = 0
        self.measured = 0  # rows of cases measured (timed, or counted)
        # (case id, status, message) of every row whose status is not ok, in run order.
        self.problems: list[tuple[str, str, str]] = []

    def tally(self, row: Mapping[str, Any]) -> None:
        """Count a row of this run (written here, or by an --isolate child)."""
        self.count += 1
        extra = row.get("extra_info") or {}
        status = str(extra.get("status") or Status.ERROR.value)
        # Timed rows carry statistics; counted rows (instruction counts) only their status.
        if row.get("stats") is not None or status in MEASURED:
            self.measured += 1
        if status != Status.OK.value:
            message = extra.get("error") or extra.get("invalid_reason") or ""
            self.problems.append((str(extra.get("case_id") or row.get("name")), status, str(message)))

    def write(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(row, default=str, allow_nan=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.tally(row)

    def epoch_losses(self) -> list[tuple[str, list[float]]]:
        """The mean training loss of each timed epoch, per epoch case written so far."""
        found = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    extra = json.loads(line).get("extra_info") or {}
                except (json.JSONDecodeError, AttributeError):
                    continue  # a line cut short by a kill: the report names it
                if extra.get("epoch_losses"):
                    found.append((extra["case_id"], extra["epoch_losses"]))
        return found
