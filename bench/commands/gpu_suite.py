"""The GPU check's measurements through the suite's own commands, each in a child process under the
check's time budget: ``pytest bench`` selections and ``python -m bench tune`` into run folders under
the check's folder, read back by ``python -m reports.gpu_check`` (bench does not import reports);
and TensorBoard's profiler plugin, asked over its REST API which views it has for a trace.

Nothing here imports torch: ``python -m bench gpu-check --list`` prints the commands without it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.schema.case import AXIS_FIELDS, CASE_DEFAULTS, Case, axis_value
from bench.schema.files import CASES_FILE

ROOT = Path(__file__).resolve().parents[2]
BENCH_MODULE = "bench/bench_steps.py"  # where the phases' test functions live
# Kept back from every child's time limit: the summaries are written after it ends.
RESERVE_S = 20.0
# After the budget's SIGINT, time for a run to finish its case in hand and write what it measured.
GRACE_S = 20.0
READ_TIMEOUT_S = 120.0  # reading a run folder (pandas, scipy, the traces)
LOG_TAIL_CHARS = 1500
# Axes every selection spells, whatever their values: the rest only where a case differs from
# the default, so a command line reads as a person would type it.
ALWAYS_SPELLED = ("models", "optimizers", "phases", "devices", "modes", "batch_sizes")


class BudgetSkip(Exception):
    """Too little of the time budget is left to start a measurement; the message says how much."""


class RunFailed(RuntimeError):
    """A child measured nothing readable; the message names the command and ends with its log."""


def node_id(case: Case) -> str:
    return f"{BENCH_MODULE}::{case.id}"


def _spelled(values: list[object], field_name: str, axis: str) -> str:
    spelled = [axis_value(v, field_name) for v in values]
    if None in spelled:
        raise ValueError(f"--{axis.replace('_', '-')}: {values} mixes a model's default with other values; "
                         "select those cases in separate runs")
    return ",".join(dict.fromkeys(s for s in spelled if s is not None))


def selection_args(cases: Sequence[Case]) -> list[str]:
    """The axes of ``pytest bench --preset smoke`` whose product holds every one of ``cases``."""
    args: list[str] = ["--preset", "smoke"]
    for axis, field_name in AXIS_FIELDS.items():
        values = list(dict.fromkeys(getattr(c, field_name) for c in cases))
        if axis in ALWAYS_SPELLED or any(v != CASE_DEFAULTS.get(field_name) for v in values):
            args += [f"--{axis.replace('_', '-')}", _spelled(values, field_name, axis)]
    return args


@dataclass(frozen=True)
class Selection:
    """Cases the suite measures in one ``pytest bench`` run, and how the check reads that run."""

    name: str  # its folder under the check's work folder
    cases: tuple[Case, ...]
    extra: tuple[str, ...] = ()  # pytest options beyond the axes (--profile, --nproc 1)
    estimate_s: float = 60.0  # on an H100, start-up and compiles included: less left skips it
    seeds: tuple[str, ...] = ()  # case ids every timed case is priced against
    traces: bool = False  # read the profiled cases' step breakdown

    def command(self, run_dir: Path, max_time: float) -> list[str]:
        return [sys.executable, "-m", "pytest", *selection_args(self.cases), *self.extra,
                f"--benchmark-max-time={max_time}", "-p", "no:cacheprovider",
                "--results-dir", str(run_dir.parent), "--run-dir", str(run_dir),
                *(node_id(c) for c in self.cases)]


@dataclass(frozen=True)
class Tune:
    """One ``python -m bench tune`` run; ``args`` after the command's name."""

    name: str
    args: tuple[str, ...]
    seed: str  # the seed configuration's case id, the speedups' base
    estimate_s: float

    def command(self, results_dir: Path) -> list[str]:
        return [sys.executable, "-m", "bench", "tune", *self.args, "--results-dir", str(results_dir)]


@dataclass
class Measured:
    """A finished run: its command, folder, exit status, and what reports.gpu_check read from it."""

    name: str
    command: list[str]
    run_dir: Path
    log: Path
    returncode: int | None
    timed_out: bool
    elapsed_s: float
    read: dict[str, Any] = field(default_factory=dict)
    read_error: str = ""  # why reading the run folder failed

    def row(self, case_id: str) -> dict[str, Any]:
        """The row of ``case_id``; RunFailed naming the case, the rows there are and the log's end."""
        for row in self.read.get("rows", []):
            if row.get("case_id") == case_id:
                return row
        found = ", ".join(r.get("case_id", "?") for r in self.read.get("rows", [])) or "none"
        raise RunFailed(f"{case_id}: no row in {self.run_dir} (rows: {found}); {self.ended()}\n{log_tail(self.log)}")

    def speedup(self, seed: str, case_id: str) -> dict[str, Any] | None:
        return next((s for s in self.read.get("speedups", {}).get(seed, []) if s["case_id"] == case_id), None)

    def ended(self) -> str:
        if self.timed_out:
            return f"stopped at the time budget after {self.elapsed_s:.0f} s"
        return f"exit status {self.returncode} after {self.elapsed_s:.0f} s"


def log_tail(log: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {log})"
    return ("…" + text[-chars:]) if len(text) > chars else text


def child_env() -> dict[str, str]:
    """The environment of every child: this checkout first on the path (the device runs the
    command with PYTHONPATH=. from elsewhere too), output unbuffered so a killed child's log ends
    where it stopped."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")


def run_child(command: list[str], log: Path, timeout_s: float) -> tuple[int | None, bool, float]:
    """Run ``command`` from the project's root, its output into ``log``; at ``timeout_s`` send its
    process group SIGINT (a run finishes the case in hand and writes what it measured), after
    GRACE_S more SIGKILL. Returns (exit status or None, whether it was stopped, seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        child = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            return child.wait(timeout=max(timeout_s, 1.0)), False, time.monotonic() - started
        except subprocess.TimeoutExpired:
            return _stop(child), True, time.monotonic() - started


def _stop(child: subprocess.Popen) -> int | None:
    """SIGINT to the child's own process group (it and what it started), then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        try:
            return child.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return child.poll()


def read_run(run_dir: Path, log: Path, seeds: Sequence[str] = (), traces: bool = False,
             timeout_s: float = READ_TIMEOUT_S) -> dict[str, Any]:
    """``python -m reports.gpu_check`` on a run folder: its rows, speedups and breakdowns."""
    output = run_dir / "gpu-check-read.json"
    command = [sys.executable, "-m", "reports.gpu_check", str(run_dir), "--output", str(output),
               *(a for seed in seeds for a in ("--seed", seed)), *(["--traces"] if traces else [])]
    reader_log = log.with_name(log.stem + "-read.log")
    returncode, _, _ = run_child(command, reader_log, timeout_s)
    if returncode != 0 or not output.is_file():
        raise RunFailed(f"reading {run_dir} failed (exit status {returncode}):\n{log_tail(reader_log)}")
    return json.loads(output.read_text(encoding="utf-8"))


@dataclass
class Runs:
    """The measurements of one check session: each run once (checks share them), within the
    deadline (time.monotonic()); a run that cannot start in time raises BudgetSkip."""

    work: Path
    deadline: float
    max_time: float
    done: dict[str, Measured] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def left(self) -> float:
        return self.deadline - self.clock()

    def read_limit(self) -> float:
        """Reading a run folder gets what is left of the budget, within READ_TIMEOUT_S."""
        return max(10.0, min(READ_TIMEOUT_S, self.left()))

    def _limit(self, name: str, estimate_s: float) -> float:
        left = self.left() - RESERVE_S
        if left < estimate_s:
            raise BudgetSkip(f"{max(self.left(), 0):.0f} s of the budget left; run {name!r} needs about "
                             f"{estimate_s:.0f} s")
        return left

    def suite(self, selection: Selection) -> Measured:
        if selection.name not in self.done:
            limit = self._limit(selection.name, selection.estimate_s)
            run_dir = self.work / selection.name / "run"
            command = selection.command(run_dir, self.max_time)
            measured = self._measure(selection.name, command, run_dir, limit)
            self.done[selection.name] = measured  # before reading: a check never measures it again
            if (run_dir / CASES_FILE).is_file():
                _read_into(measured, self.read_limit(), selection.seeds, selection.traces)
        return self._readable(self.done[selection.name])

    def tune(self, tune: Tune) -> Measured:
        if tune.name not in self.done:
            limit = self._limit(tune.name, tune.estimate_s)
            results_dir = self.work / tune.name
            measured = self._measure(tune.name, tune.command(results_dir), results_dir, limit)
            self.done[tune.name] = measured
            runs = sorted(p.parent for p in results_dir.glob(f"*/{CASES_FILE}"))
            if runs:
                measured.run_dir = runs[-1]
                _read_into(measured, self.read_limit(), (tune.seed,))
        return self._readable(self.done[tune.name])

    def _measure(self, name: str, command: list[str], run_dir: Path, limit: float) -> Measured:
        log = self.work / name / "command.log"
        print(f"    running {name}: {' '.join(shown(command))}", flush=True)
        returncode, timed_out, elapsed = run_child(command, log, limit)
        return Measured(name, command, run_dir, log, returncode, timed_out, elapsed)

    @staticmethod
    def _readable(measured: Measured) -> Measured:
        if measured.read_error:
            raise RunFailed(f"{measured.name}: {measured.read_error}")
        if not measured.read.get("rows"):
            raise RunFailed(f"{measured.name}: no results in {measured.run_dir} ({measured.ended()}); "
                            f"log {measured.log}:\n{log_tail(measured.log)}")
        return measured


def _read_into(measured: Measured, timeout_s: float, seeds: Sequence[str] = (), traces: bool = False) -> None:
    try:
        measured.read = read_run(measured.run_dir, measured.log, seeds, traces, timeout_s)
    except RunFailed as exc:
        measured.read_error = str(exc)


def shown(command: Sequence[str]) -> list[str]:
    """A command as a person would type it here: ``python`` for this interpreter, paths relative
    to the project's root."""
    out = []
    for part in command:
        if part == sys.executable:
            part = "python"
        elif part.startswith(str(ROOT) + os.sep):
            part = os.path.relpath(part, ROOT)
        out.append(f"'{part}'" if re.search(r"[\[\]\s*?]", part) else part)
    return out


# --- TensorBoard's profiler plugin, over HTTP -------------------------------------------------

PLUGIN_ROUTE = "/data/plugin/pytorch_profiler"
URL_LINE = re.compile(r"open (http://127\.0\.0\.1:\d+)/")
SERVER_START_S = 120.0  # TensorBoard's start and the plugin parsing the traces


@dataclass
class Viewer:
    """A running ``python -m reports.tensorboard``: its process, base URL and output so far."""

    proc: subprocess.Popen
    log: Path
    base: str = ""

    def get(self, route: str, **params: str) -> Any:
        url = f"{self.base}{PLUGIN_ROUTE}/{route}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read().decode())


def start_viewer(folder: Path, log: Path, timeout_s: float) -> Viewer:
    """Serve ``folder`` on a free port; wait until the viewer prints its URL."""
    command = [sys.executable, "-m", "reports.tensorboard", str(folder), "--port", "0"]
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("w", encoding="utf-8")
    proc = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out.close()  # the child holds its own copy
    viewer = Viewer(proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        found = URL_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
        if found:
            viewer.base = found.group(1)
            return viewer
        time.sleep(0.5)
    stop_viewer(viewer)
    raise RunFailed(f"the TensorBoard viewer did not start (exit status {proc.returncode}):\n{log_tail(log)}")


def stop_viewer(viewer: Viewer) -> None:
    """SIGTERM, as a service manager stops it (it exits 0), then SIGKILL."""
    if viewer.proc.poll() is None:
        _stop_with(viewer.proc, signal.SIGTERM)


def _stop_with(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5.0)


def wait_for_run(viewer: Viewer, run: str, timeout_s: float) -> None:
    """Poll the plugin until it lists ``run`` and has finished loading."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if viewer.proc.poll() is not None:
            raise RunFailed(f"the TensorBoard viewer exited (status {viewer.proc.returncode}):\n{log_tail(viewer.log)}")
        try:
            runs = viewer.get("runs")
            if run in runs.get("runs", []) and not runs.get("loading"):
                return
        except OSError:
            pass  # not answering yet
        time.sleep(1.0)
    raise RunFailed(f"TensorBoard did not list {run} within {timeout_s:.0f} s:\n{log_tail(viewer.log)}")


def plugin_views(viewer: Viewer, run: str) -> dict[str, Any]:
    """What the plugin shows of one run: its views, the device type of its overview, whether the
    overview has a GPU summary, and how many kernels the kernel view's table lists."""
    views = viewer.get("views", run=run)
    worker = viewer.get("workers", run=run, view="Overview")[0]
    span = viewer.get("spans", run=run, worker=worker)[0]
    where = dict(run=run, worker=worker, span=span)
    overview = viewer.get("overview", **where)
    environment = {e.get("title"): e.get("value") for e in overview.get("environments", [])}
    kernels = viewer.get("kernel/table", group_by="Kernel", **where) if "Kernel" in views else {}
    return dict(views=views, device_type=environment.get("Device Type"),
                gpu_summary="gpu_metrics" in overview, kernel_rows=len(kernels.get("data", {}).get("rows", [])))


def tensorboard_views(folder: Path, runs: Sequence[str], log: Path, timeout_s: float) -> dict[str, dict[str, Any]]:
    """Serve ``folder`` with the viewer and ask the plugin about each of ``runs`` (folder-relative
    trace folders, as TensorBoard names its runs)."""
    started = time.monotonic()
    viewer = start_viewer(folder, log, timeout_s)
    try:
        found = {}
        for run in runs:
            wait_for_run(viewer, run, max(timeout_s - (time.monotonic() - started), 1.0))
            found[run] = plugin_views(viewer, run)
        return found
    finally:
        stop_viewer(viewer)
