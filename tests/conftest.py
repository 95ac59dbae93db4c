"""Shared fixtures: real benchmark runs, made once per test session (helpers: tests/helpers.py),
and the guard that keeps the fast tier fast.

Two tiers: tests that need no real run, compile, valgrind, torchrun, browser or server carry no
marker (``nox -s tests -- -m "not slow"``, what a developer runs while working); the others are
marked ``slow``. An unmarked test that starts one of those anyway fails at once, naming what it
started, so the fast tier cannot grow slow unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Any, Iterator, Sequence

import pytest

from tests.helpers import PROFILED, Run, shared_run

# The suite runs in two pytest-xdist workers (noxfile.py). xdist marks each worker's environment,
# and every process a test starts inherits it: pytest-benchmark reads PYTEST_XDIST_WORKER as
# "benchmarks under xdist" and disables itself, so a real `pytest bench` child would measure
# nothing. The children are whole runs of their own, not workers.
for _variable in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
    os.environ.pop(_variable, None)

# What the fast tier may not start: a real benchmark run (pytest over bench/), torchrun, valgrind,
# a browser, a PostgreSQL server, TensorBoard, nox; and compiling with inductor (~20 s a graph here).
SLOW_COMMANDS = {
    "a real benchmark run (pytest bench)": lambda argv: "pytest" in argv and "bench" in argv,
    "torchrun": lambda argv: "torch.distributed.run" in argv,
    "valgrind": lambda argv: any(a.endswith("valgrind") for a in argv),
    "a browser": lambda argv: any("chrom" in a for a in argv[:1]),
    "a PostgreSQL server": lambda argv: any(a.endswith(("initdb", "pg_ctl", "postgres")) for a in argv[:1]),
    "TensorBoard": lambda argv: "reports.tensorboard" in argv,
    "nox": lambda argv: "nox" in argv,
    "python -m bench (tune, gpu-check)": lambda argv: argv[1:3] == ["-m", "bench"],
}


def _argv(args: Any) -> list[str]:
    if isinstance(args, (str, bytes)):
        return str(args).split()
    return [str(a) for a in args] if isinstance(args, Sequence) else [str(args)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """In an unmarked (fast) test, from its fixtures' setup to its teardown, starting anything of
    ``SLOW_COMMANDS`` or an inductor compile fails the test with what it started: mark it
    ``@pytest.mark.slow``, or make it cheaper. (A fixture shared by a module or the session is
    made in the setup of its first test: a fast test that would make a real run there fails.)"""
    if item.get_closest_marker("slow"):
        yield
        return
    with fast_tier_guard(item.nodeid):
        yield


@contextlib.contextmanager
def fast_tier_guard(test: str) -> Iterator[None]:
    import torch

    popen, compile_ = subprocess.Popen, torch.compile

    class GuardedPopen(popen):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            argv = _argv(args)
            for what, matches in SLOW_COMMANDS.items():
                if matches(argv):
                    raise AssertionError(f"{test} is in the fast tier (no slow marker) but started {what}: "
                                         f"{' '.join(argv)[:200]}; mark it @pytest.mark.slow")
            super().__init__(args, *rest, **kwargs)

    def guarded_compile(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("backend", "inductor") == "inductor":
            raise AssertionError(f"{test} is in the fast tier (no slow marker) but compiles with inductor; "
                                 "mark it @pytest.mark.slow, or compile with backend='eager'")
        return compile_(*args, **kwargs)

    subprocess.Popen, torch.compile = GuardedPopen, guarded_compile
    try:
        yield
    finally:
        subprocess.Popen, torch.compile = popen, compile_


@pytest.fixture(scope="session")
def smoke_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real run of the smoke preset, shared by the tests that read its output (in both workers)."""
    run = shared_run(request.config, tmp_path_factory.getbasetemp(), "smoke", "--preset", "smoke")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    return run


@pytest.fixture(scope="session")
def profile_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real run with --profile, shared by the profiling and TensorBoard tests (in both workers)."""
    run = shared_run(request.config, tmp_path_factory.getbasetemp(), "profile", *PROFILED)
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    return run
