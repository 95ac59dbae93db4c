"""Shared fixtures: real benchmark runs, made once per test session (helpers: tests/helpers.py)."""

from __future__ import annotations

import pytest

from tests.helpers import PROFILED, Run, run_bench


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real run of the smoke preset, shared by the tests that read its output."""
    run = run_bench(tmp_path_factory.mktemp("smoke"), "--preset", "smoke")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    return run


@pytest.fixture(scope="session")
def profile_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real run with --profile, shared by the profiling and TensorBoard tests."""
    run = run_bench(tmp_path_factory.mktemp("profile"), *PROFILED)
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    return run
