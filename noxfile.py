"""blitzbench sessions: ``nox -s bench`` measures, ``nox -s tests`` tests, ``nox -s report`` re-renders,
``nox -s profile`` records profiler traces, ``nox -s tensorboard`` serves them.

Every session also runs with ``nox --no-venv`` in an environment that already has the
dependencies (for example an offline GPU machine): nothing is installed then.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
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


def install(session: nox.Session, extras: str = "") -> str:
    """Install the project into the session's environment; return the Python to run.

    With --no-venv nothing is installed and commands run on the interpreter that runs nox
    (``python -m nox --no-venv ...``), not whatever ``python`` is first on PATH.
    """
    if session.venv_backend == "none":
        return sys.executable
    session.install("-c", "constraints.txt", "-e", f".{extras}")
    return "python"


def install_reader(session: nox.Session) -> str:
    """A light environment for sessions that only read results: no torch."""
    if session.venv_backend == "none":
        return sys.executable
    session.install("-c", "constraints.txt", *READER_DEPS)
    session.install("--no-deps", "-e", ".")
    return "python"


def run_measuring(session: nox.Session, python: str, *args: str) -> None:
    """A command that measures: on Ctrl-C it gets time to write what it has measured."""
    stop_with_nox(session)
    session.run(python, *args, interrupt_timeout=INTERRUPT_TIMEOUT_S)


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


def run_with_exit_status(session: nox.Session, python: str, *args: str) -> None:
    """Run a command and exit nox with the command's own status (nox would turn 1 and 2 into 1)."""
    if python == "python":
        python = os.path.join(session.bin, "python")
    session.log(" ".join([python, *args]))
    status = subprocess.call([python, *args])
    if status:
        raise SystemExit(status)  # nox lets SystemExit through: its code is nox's exit status


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (posargs go to pytest)."""
    python = install(session, "[test,profile]")
    session.run(python, "-m", "pytest", "tests", *session.posargs)


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


@nox.session
def report(session: nox.Session) -> None:
    """Re-render the report of a results folder (default: the latest run); with ``-- --history``,
    the history page (results/history.html)."""
    python = install_reader(session)
    session.run(python, "-m", "reports", *session.posargs)


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
    python = install(session, "[profile]")
    stop_with_nox(session)
    session.run(python, "-m", "reports.tensorboard", *session.posargs, interrupt_timeout=10.0)


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
    python = install(session)
    parser = argparse.ArgumentParser(prog="nox -s calibrate --", add_help=False)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--best-of", type=int, default=1)
    args, bench_args = parser.parse_known_args(session.posargs)
    if args.runs < 2 or args.best_of < 1:
        session.error(f"--runs {args.runs} --best-of {args.best_of}: calibration needs at least 2 runs "
                      "(each the best of at least 1)")
    sides = [f"results/calibration/side-{i}" for i in range(args.runs)]
    shutil.rmtree("results/calibration", ignore_errors=True)  # fresh runs, not rows appended to old ones
    for repeat in range(args.best_of):  # interleaved, as a gate's base and head runs are
        for side in sides:
            run = f"{side}/run-{repeat}" if args.best_of > 1 else side
            run_measuring(session, python, "-m", "pytest", "bench", "--run-dir", run, *bench_args)
    session.run(python, "-m", "reports", "calibrate", *sides, "--output", "results/noise_floor.json")
