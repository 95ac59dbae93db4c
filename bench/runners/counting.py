"""pytest glue for ``--metric instructions``: count each CPU case's instructions under callgrind.

``bench/plugin.py`` sets the run up once ``bench.matrix.options`` has checked the options
(``configure``: a missing valgrind stops the run with exit status 2), adds the count
run's keys to the environment once the folder exists (``start``) and asks ``counting`` which
runner to give the phases (``runner``). The first counted case starts **one** valgrind process
(``bench.runners.count_worker``) for the whole selection; each case then waits for its JSON line and
records its row (``stats: null``; the figures of ``bench.passes.counts``). CUDA cases are skipped
(instructions are CPU work) and so are compile-mode cases (see ``COMPILE_SKIP_REASON``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import models
from bench.matrix import options
from bench.passes.counts import (COMPILE_SKIP_REASON, CUDA_SKIP_REASON, DEBIAN_PACKAGE, DEFAULT_REPEATS,
                                 DISCARDED_REPEATS, MIN_REPEAT_INSTRUCTIONS, WARMUP_CALLS, WORKER_ENV,
                                 describe_library_isa, library_isa, parse_annotate, safe_name, summarize)
from bench.runners.base import MEASURED_ELSEWHERE
from bench.schema.case import Case
from bench.schema.files import ENVIRONMENT_FILE
from bench.schema.results import RunWriter
from bench.schema.status import ReportedFailure, Status

COUNT_DIR = "callgrind"  # in the run folder: the worker's spec, log, results and kept dumps
DEFAULT_TIMEOUT_S = 1800.0  # per case, from the previous case's line (the first includes start-up)
ROOT = Path(__file__).resolve().parents[2]

_STATE = pytest.StashKey["CountState"]()


def counting(config: pytest.Config) -> bool:
    return getattr(config.option, "bb_metric", "time") == "instructions"


def valgrind_version(valgrind: str) -> str | None:
    try:
        out = subprocess.run([valgrind, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().removeprefix("valgrind-") or None


def configure(config: pytest.Config, repeats: int | None, timeout_s: float | None) -> None:
    """Set up a count run (its options were checked by ``bench.matrix.options``); without
    valgrind it stops here (exit 2)."""
    opt = config.option
    if not counting(config) or opt.collectonly or getattr(opt, "benchmark_disable", False):
        return
    tools = {name: shutil.which(name) for name in ("valgrind", "callgrind_annotate")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        options.refuse(f"--metric instructions needs {' and '.join(missing)}, not found on PATH; install the "
                       f"Debian package '{DEBIAN_PACKAGE}' (apt-get install {DEBIAN_PACKAGE}) or run with "
                       "--metric time")
    # The phases' benchmark fixture stays unused, and pytest-benchmark has no rounds to save.
    config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used")
    config.addinivalue_line("filterwarnings", "ignore:Not saving anything")
    config.stash[_STATE] = CountState(valgrind=tools["valgrind"], annotate=tools["callgrind_annotate"],
                                      repeats=repeats or DEFAULT_REPEATS, timeout_s=timeout_s or DEFAULT_TIMEOUT_S)
    config.pluginmanager.register(Selection(config.stash[_STATE]), "blitzbench-count-selection")


def start(config: pytest.Config, run_dir: Path, env: dict[str, Any]) -> None:
    """A count run: its environment says so, with valgrind's version (the ISA follows from the worker)."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    state.run_dir, state.env = run_dir, env
    env.update(run_kind="count", valgrind_version=valgrind_version(state.valgrind), valgrind_isa=None,
               count_library_isa=describe_library_isa(library_isa(os.environ)),
               count_repeats=state.repeats, count_threads=1)
    state.write_env()


def runner(config: pytest.Config, node: pytest.Item, writer: RunWriter) -> "CountRunner":
    return CountRunner(config.stash[_STATE], node, writer)


@dataclass
class Selection:
    """Plug-in: skips what counts cannot see and hands the rest to the worker, in run order."""

    state: "CountState"

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            case = getattr(item, "callspec", None) and item.callspec.params.get("case")
            if not isinstance(case, Case):
                continue
            if case.device == "cuda":
                item.add_marker(pytest.mark.skip(reason=CUDA_SKIP_REASON))
            elif case.mode == "compile":
                item.add_marker(pytest.mark.skip(reason=COMPILE_SKIP_REASON))
            else:
                self.state.cases.append(case)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.state.stop()


class WorkerError(ReportedFailure):
    """The worker could not count a case (it died, timed out, or the case failed in it)."""


@dataclass
class CountState:
    """The run's one worker and what it has reported so far."""

    valgrind: str
    annotate: str
    repeats: int
    timeout_s: float
    cases: list[Case] = field(default_factory=list)
    run_dir: Path | None = None
    env: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_bytes: int = 0
    stopped_because: str | None = None

    @property
    def folder(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / COUNT_DIR

    def write_env(self) -> None:
        assert self.run_dir is not None
        (self.run_dir / ENVIRONMENT_FILE).write_text(json.dumps(self.env, indent=2, default=str), encoding="utf-8")

    def command(self, spec_path: Path, instrument_at_start: bool) -> list[str]:
        return [self.valgrind, "--tool=callgrind", "--collect-atstart=no",
                f"--instr-atstart={'yes' if instrument_at_start else 'no'}",
                f"--callgrind-out-file={self.folder / 'cg.out.%p'}",
                sys.executable, "-m", "bench.runners.count_worker", str(spec_path)]

    def launch(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        spec = dict(cases=[c.as_dict() for c in self.cases], repeats=self.repeats, discarded=DISCARDED_REPEATS,
                    warmup_calls=WARMUP_CALLS, min_instructions=MIN_REPEAT_INSTRUCTIONS,
                    dump_dir=str(self.folder), out=str(self.folder / "worker.jsonl"),
                    imports=model_modules(self.cases), starter=build_starter(self.folder))
        spec_path = self.folder / "worker-spec.json"
        spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        env = dict(os.environ, **WORKER_ENV, **library_isa(os.environ))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        with (self.folder / "worker.log").open("ab") as log:
            self.proc = subprocess.Popen(self.command(spec_path, spec["starter"] is None), cwd=ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.folder / "worker.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def _read_new(self) -> None:
        path = self.folder / "worker.jsonl"
        if not path.is_file():
            return
        with path.open("rb") as fh:
            fh.seek(self.read_bytes)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.read_bytes += len(complete)
        for raw in complete.decode("utf-8").splitlines():
            line = json.loads(raw)
            if line.get("event") == "start":
                self.env["valgrind_isa"] = line.get("isa")
                self.write_env()
            elif line.get("event") == "case":
                self.lines[line["case_id"]] = line

    def result(self, case: Case) -> dict[str, Any]:
        """The worker's line for ``case``, waiting for it (the first call starts the worker)."""
        if self.proc is None and self.stopped_because is None:
            self.launch()
        deadline = time.monotonic() + self.timeout_s
        while True:
            self._read_new()
            if case.id in self.lines:
                return self.lines.pop(case.id)
            if self.stopped_because is not None:
                raise WorkerError(f"{case.id}: not counted: {self.stopped_because}")
            assert self.proc is not None
            status = self.proc.poll()
            if status is not None:
                self._read_new()
                if case.id in self.lines:
                    return self.lines.pop(case.id)
                self.stopped_because = (f"the valgrind worker exited with status {status} before counting "
                                        f"it; its last lines ({self.folder / 'worker.log'}):\n{self.log_tail()}")
                raise WorkerError(f"{case.id}: {self.stopped_because}")
            if time.monotonic() > deadline:
                self.stop()
                self.stopped_because = (f"no result from the valgrind worker within --count-timeout "
                                        f"{self.timeout_s:g} s (stopped); its last lines:\n{self.log_tail()}")
                raise WorkerError(f"{case.id}: {self.stopped_because}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def top_functions(self, dump: Path, calls: int) -> list[dict[str, Any]]:
        out = subprocess.run([self.annotate, "--inclusive=no", "--threshold=100", "--auto=no", str(dump)],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise WorkerError(f"callgrind_annotate {dump} failed: {out.stderr.strip()[-500:]}")
        return parse_annotate(out.stdout, calls)


_STARTER_C = """#include <valgrind/callgrind.h>
void blitzbench_start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
void blitzbench_stop_instrumentation(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def build_starter(folder: Path) -> str | None:
    """A tiny library whose functions switch callgrind's instrumentation on and off.

    With it the worker starts with ``--instr-atstart=no`` and instruments each case only from
    its counted probe to its last repeat: start-up, building and warm-up (lazy imports, first
    calls) run about 4x faster than instrumented (measured: ``import torch`` 39 instead of
    ~150 CPU-s). Counts are the same: only the collected calls count. torch exposes only the collection
    toggle, so this is compiled here (C compiler and valgrind's headers); without them the
    worker is instrumented from the start (slower, same counts)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    source, library = folder / "start_instrumentation.c", folder / "start_instrumentation.so"
    source.write_text(_STARTER_C, encoding="utf-8")
    try:
        proc = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return str(library) if proc.returncode == 0 else None


def _die_with_parent() -> None:
    """In the worker before exec: SIGTERM it when pytest dies (killed, not only interrupted)."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def model_modules(cases: list[Case]) -> list[str]:
    """Modules outside ``models`` whose builders the cases use: a plug-in that registered or
    replaced a model (``-p tests.plant_plugin``) must do so in the worker too."""
    found = []
    for name in sorted({c.model for c in cases}):
        module = getattr(models.get_spec(name).builder, "__module__", "") or ""
        if module.split(".")[0] not in ("models", "__main__") and module not in found:
            found.append(module)
    return found


@dataclass
class CountRunner:
    """Records the case's row from the worker's line: instruction counts, no timing."""

    state: CountState
    node: pytest.Item
    writer: RunWriter
    last_step: None = None  # the step lived in the worker

    def measure(self, benchmark: Any, case: Case) -> None:
        line = self.state.result(case)
        if line["status"] != Status.OK.value:
            raise WorkerError(line.get("error") or "failed in the valgrind worker", Status(line["status"]))
        dump = Path(line["dump"])
        top = self.state.top_functions(dump, line["calls"])
        kept = dump.with_name(f"{safe_name(case.id)}.callgrind.out")
        dump.replace(kept)
        extra = dict(case.as_dict(), case_id=case.id, status=Status.OK.value,
                     **summarize(line["totals"], line["calls"]), instruction_top=top,
                     callgrind_file=kept.relative_to(self.writer.run_dir).as_posix())
        self.node.stash[MEASURED_ELSEWHERE] = True
        self.writer.write({"name": self.node.name, "fullname": self.node.nodeid, "extra_info": extra,
                           "stats": None, "finished_at": time.time()})
