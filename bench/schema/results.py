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
        self.case_ids: set[str] = set()
        # (case id, status, message) of every row whose status is not ok, in run order.
        self.problems: list[tuple[str, str, str]] = []

    def tally(self, row: Mapping[str, Any]) -> None:
        """Count a row of this run (written here, or by an --isolate child)."""
        self.count += 1
        extra = row.get("extra_info") or {}
        case_id = str(extra.get("case_id") or row.get("name"))
        self.case_ids.add(case_id)
        status = str(extra.get("status") or Status.ERROR.value)
        # Timed rows carry statistics; counted rows (instruction counts) only their status.
        if row.get("stats") is not None or status in MEASURED:
            self.measured += 1
        if status != Status.OK.value:
            message = extra.get("error") or extra.get("invalid_reason") or ""
            self.problems.append((case_id, status, str(message)))

    def write(self, row: Mapping[str, Any]) -> None:
        """Append the row; on a failure (a full disk) the file is cut back to the rows before
        it, so it never ends in half a line, and the error is raised."""
        data = (json.dumps(row, default=str, allow_nan=True) + "\n").encode("utf-8")
        # Unbuffered: after a failed write nothing is left in a buffer to land past the cut.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)
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


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file in the same folder, then
    ``os.replace``. A failure (a full disk) leaves the previous file, or none, never half a one."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        with tmp.open("xb") as fh:  # created with the usual permissions (umask), unlike mkstemp's 0600
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
