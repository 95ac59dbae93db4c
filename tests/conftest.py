"""Shared fixtures: real benchmark runs in a subprocess, as a user would start them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Short rounds: the tests check behaviour, not speed.
FAST = ["--benchmark-max-time=0.05", "--benchmark-min-rounds=3"]


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    results_dir: Path

    @property
    def run_dir(self) -> Path:
        runs = sorted(p for p in self.results_dir.iterdir() if p.is_dir())
        assert len(runs) == 1, f"expected one run folder in {self.results_dir}, got {runs}"
        return runs[0]


def bench_cmd(results_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider",
            "--results-dir", str(results_dir), *FAST, *args]


def run_bench(results_dir: Path, *args: str, timeout: float = 600, env: dict | None = None) -> Run:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(bench_cmd(results_dir, *args), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return Run(proc, results_dir)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real run of the smoke preset, shared by the tests that read its output."""
    run = run_bench(tmp_path_factory.mktemp("smoke"), "--preset", "smoke")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    return run
