"""blitzbench sessions: ``nox -s bench`` measures, ``nox -s tests`` tests, ``nox -s report`` re-renders,
``nox -s profile`` records profiler traces, ``nox -s tensorboard`` serves them.

Every session also runs with ``nox --no-venv`` in an environment that already has the
dependencies (for example an offline GPU machine): nothing is installed then.

Every session that runs a command exits with that command's own status (``run_with_exit_status``;
nox alone would turn each failure into 1), so a refusal (2) reads apart from a failure (1) in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2024.3.2"
# uv when available (fast, and a reused environment is checked in a second), else virtualenv.
nox.options.default_venv_backend = "uv|virtualenv"
# torch is several GB: keep each session's environment between runs.
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


# Sessions that only read results need no torch (5.5 GB): pandas and the charts' libraries.
# Keep in step with pyproject.toml's dependencies, less torch and torchvision.
# A history on a PostgreSQL server (--history-db postgresql://…); keep in step with pyproject.toml.
HISTORY_SERVER_DEPS = ["sqlalchemy>=2.0", "psycopg[binary]>=3.1"]
READER_DEPS = ["pandas>=2.0", "tabulate>=0.9", "matplotlib>=3.7", "scipy>=1.11", "jinja2>=3.1",
               *HISTORY_SERVER_DEPS]
# After Ctrl-C, time for pytest to finish the case in hand and write benchmark.json and the
# reports before nox escalates to SIGTERM (nox's default is 0.3 s, which loses them).
INTERRUPT_TIMEOUT_S = 120.0
# Installed packages compiled to bytecode once (pip does it by default, uv only when asked):
# without it every Python process recompiles torch's ~2,000 modules, about 5 s of CPU each
# (where PYTHONDONTWRITEBYTECODE is set, nothing ever caches them).
COMPILED = {"UV_COMPILE_BYTECODE": "1"}


def install(session: nox.Session, extras: str = "[hf]") -> str:
    """Install the project into the session's environment; return the Python to run.

    With --no-venv nothing is installed and commands run on the interpreter that runs nox
    (``python -m nox --no-venv ...``), not whatever ``python`` is first on PATH.
    """
    if session.venv_backend == "none":
        return sys.executable
    session.install("-c", "constraints.txt", "-e", f".{extras}", env=COMPILED)
    return "python"


def install_reader(session: nox.Session) -> str:
    """A light environment for sessions that only read results: no torch."""
    if session.venv_backend == "none":
        return sys.executable
    session.install("-c", "constraints.txt", *READER_DEPS, env=COMPILED)
    session.install("--no-deps", "-e", ".")
    return "python"


def run_measuring(session: nox.Session, python: str, *args: str) -> None:
    """A command that measures: on Ctrl-C it gets time to write what it has measured; nox exits
    with its status."""
    stop_with_nox(session)
    run_with_exit_status(session, python, *args, interrupt_timeout=INTERRUPT_TIMEOUT_S)


def _children() -> list[int]:
    """Process ids whose parent is this process (Linux /proc; elsewhere none)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


def stop_with_nox(session: nox.Session) -> None:
    """Make SIGTERM to nox stop the session's command as Ctrl-C does (a CI job cancelled, a
    service manager stopping the viewer): the command gets SIGINT, so a run writes what it has
    measured and a TensorBoard server shuts down, and nox waits for it (interrupt_timeout).
    Without this, SIGTERM ends nox alone and leaves the command running."""
    def interrupt(signum: int, frame: object) -> None:
        for pid in _children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_with_exit_status(session: nox.Session, python: str, *args: str,
                         interrupt_timeout: float | None = None) -> None:
    """Run a command through ``session.run`` and exit nox with the command's own status (nox
    would turn 1 and 2 into 1). ``session.run`` keeps nox's handling of Ctrl-C: the command gets
    SIGINT and ``interrupt_timeout`` seconds (nox's default when None) before SIGTERM. Its stderr
    stays stderr (nox would merge it into stdout), where a refusal's reason is looked for."""
    timeout = {} if interrupt_timeout is None else {"interrupt_timeout": interrupt_timeout}
    try:
        session.run(python, *args, stderr=None, **timeout)
    except nox.command.CommandFailed as exc:
        raise SystemExit(_exit_status(exc)) from None  # nox lets SystemExit through: its code is nox's


def _exit_status(failed: nox.command.CommandFailed) -> int:
    """The failed command's status; a command ended by signal N as a shell reports it, 128 + N."""
    status = getattr(failed, "return_code", None)  # nox from 2026.07 on
    if status is None:  # older nox says it only in the message: "Returned code N"
        found = re.search(r"Returned code (-?\d+)", str(failed.reason or ""))
        status = int(found.group(1)) if found else 1
    return 128 - status if status < 0 else status or 1


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (posargs go to pytest)."""
    python = install(session, "[test,profile,hf]")
    # The project's own modules too: the tests start about a hundred Python processes.
    session.run(python, "-m", "compileall", "-q", "bench", "models", "reports", "tests", silent=True)
    run_with_exit_status(session, python, "-m", "pytest", "tests", *parallel(session), *session.posargs)


# Two pytest-xdist workers, a test file each at a time (a file's shared run is made once): most
# tests wait on a child process that runs one thread at a time, so two of them keep 2 cores busy
# (measured on the 2-core VM: 16 min in one process, 11 min in two). Two, as CI's cores: more
# workers would start more multi-threaded children than a small machine has cores. `-n 0` after
# `--` runs the suite in one process.
TEST_WORKERS = ["-n", "2", "--dist", "loadfile"]


def parallel(session: nox.Session) -> list[str]:
    """xdist's options where xdist is installed: always in the session's own environment (the
    [test] extra), with --no-venv only if the interpreter has it."""
    if session.venv_backend == "none" and importlib.util.find_spec("xdist") is None:
        return []
    return TEST_WORKERS


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (default preset), write results/<run>/report.md and report.html, append
    the run to results/history.sqlite; posargs go to pytest."""
    python = install(session)
    run_measuring(session, python, "-m", "pytest", "bench", *session.posargs)


@nox.session
def tune(session: nox.Session) -> None:
    """Find the fastest configuration of one model's phase: nox -s tune -- MODEL [--phase train_step]
    [--device cuda] [--quick] [--max-time S] ...: eager and each compile mode x AMP x memory format x
    optimizer implementation, measured as bench measures, sorted, with the speedup over the seed's."""
    python = install(session)
    run_measuring(session, python, "-m", "bench", "tune", *session.posargs)


@nox.session(name="gpu-check")
def gpu_check(session: nox.Session) -> None:
    """Prove the CUDA paths on a GPU: nox -s gpu-check -- [--out DIR] [--budget-s S] [--checks A,B] [--list];
    timing, memory, peaks, TF32, profiling, TensorBoard, NCCL, compile modes, tune and MFU, each figure
    beside its bound, into DIR/gpu-check.json and .md. Without CUDA every check is skipped (exit 0)."""
    python = install(session, "[profile]")  # the TensorBoard check needs the viewer's plugin
    run_measuring(session, python, "-m", "bench", "gpu-check", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Re-render the report of a results folder (default: the latest run); with ``-- --history``,
    the history page (results/history.html)."""
    python = install_reader(session)
    run_with_exit_status(session, python, "-m", "reports", *session.posargs)


def names_option(args: list[str], *options: str) -> bool:
    """Whether the command line gives one of ``options`` (``--modes compile`` or ``--modes=compile``)."""
    return any(arg == option or arg.startswith(option + "=") for arg in args for option in options)


def profile_selection(args: list[str]) -> list[str]:
    """The profile session's selection: what the user named, in eager mode unless they named the
    modes or a preset. The default preset adds compiled train_step cases to its eager matrix for
    bench's eager -> compile comparison; profiling them was not asked for and costs a compile each."""
    return args if names_option(args, "--modes", "--preset") else ["--modes", "eager", *args]


@nox.session
def profile(session: nox.Session) -> None:
    """Time, then profile the selected cases (options as for bench; eager unless --modes or --preset
    says otherwise): traces and a summary per case."""
    python = install(session)
    # Short timing: this session is for the traces (nox -s bench -- --profile for full timing).
    run_measuring(session, python, "-m", "pytest", "bench", "--profile", "--benchmark-max-time=0.2",
                  *profile_selection(session.posargs))


@nox.session
def count(session: nox.Session) -> None:
    """Count CPU instructions per call of the selected cases under valgrind's callgrind (options as
    for bench): one valgrind process for the run; needs the Debian package valgrind."""
    if shutil.which("valgrind") is None:  # before installing anything; exit 2 as bench does
        session.log("nox -s count needs valgrind, not found on PATH; install the Debian package "
                    "'valgrind' (apt-get install valgrind)")
        raise SystemExit(2)
    python = install(session)
    run_measuring(session, python, "-m", "pytest", "bench", "--metric", "instructions", *session.posargs)


@nox.session
def tensorboard(session: nox.Session) -> None:
    """Serve results/ (or the folder given) with TensorBoard's profiler plugin on 127.0.0.1."""
    python = install(session, "[profile,hf]")
    stop_with_nox(session)
    run_with_exit_status(session, python, "-m", "reports.tensorboard", *session.posargs, interrupt_timeout=10.0)


@nox.session(name="trace-diff")
def trace_diff(session: nox.Session) -> None:
    """Compare two profiled runs' traces: nox -s trace-diff -- BASE CURRENT [--cases PATTERN] [--top N]
    [--output FILE]; per common case, the operators whose calls or self time per step changed most."""
    python = install_reader(session)
    run_with_exit_status(session, python, "-m", "reports", "trace-diff", *session.posargs)


@nox.session
def gate(session: nox.Session) -> None:
    """Compare two result sets: nox -s gate -- BASELINE CURRENT; exit 0 pass, 1 regression, 2 unusable input."""
    python = install_reader(session)
    run_with_exit_status(session, python, "-m", "reports", "gate", *session.posargs)


@nox.session
def merge(session: nox.Session) -> None:
    """Join the run folders of a run's shards: nox -s merge -- RUN... --output DIR [--history-db DB];
    exit 0 merged, 2 unusable input (nothing written)."""
    python = install_reader(session)
    run_with_exit_status(session, python, "-m", "reports", "merge", *session.posargs)


@nox.session
def calibrate(session: nox.Session) -> None:
    """A/A/A: run a selection 3 times (--runs N; --best-of K runs each) and store each case's noise floor."""
    parser = argparse.ArgumentParser(prog="nox -s calibrate --", add_help=False)  # bad values: exit 2
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--best-of", type=int, default=1)
    args, bench_args = parser.parse_known_args(session.posargs)
    if args.runs < 2 or args.best_of < 1:  # before installing anything; exit 2 as bench does
        session.log(f"nox -s calibrate: --runs {args.runs} --best-of {args.best_of}: calibration needs at least 2 "
                    "runs (each the best of at least 1)")
        raise SystemExit(2)
    python = install(session)
    sides = [f"results/calibration/side-{i}" for i in range(args.runs)]
    shutil.rmtree("results/calibration", ignore_errors=True)  # fresh runs, not rows appended to old ones
    for repeat in range(args.best_of):  # interleaved, as a gate's base and head runs are
        for side in sides:
            run = f"{side}/run-{repeat}" if args.best_of > 1 else side
            run_measuring(session, python, "-m", "pytest", "bench", "--run-dir", run, *bench_args)
    run_with_exit_status(session, python, "-m", "reports", "calibrate", *sides, "--output",
                         "results/noise_floor.json")
