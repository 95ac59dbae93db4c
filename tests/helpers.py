"""Test helpers: real benchmark runs in a subprocess, as a user would start them.

A plain module (not conftest) so tests import it by name; the fixtures are in conftest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
# Short rounds: the tests check behaviour, not speed.
FAST = ["--benchmark-max-time=0.05", "--benchmark-min-rounds=3"]
# Code to run first in a Python where torch is "not installed": any import of it fails as it
# would without the package. (Putting None in sys.modules instead trips scipy, which looks torch
# up there to test array types.)
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
"""


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


# A small case whose operators are known (aten::linear/addmm) and, by trace size, the
# largest seed case (lenet3x3 train_step with adadelta: measured ~57 KB, lenet with
# adadelta/adamw within 1% of it); backward shows that the untimed setup is left out.
PROFILED = ["--models", "fashion_mlp,lenet3x3", "--phases", "backward,train_step",
            "--optimizers", "adadelta", "--modes", "eager", "--profile"]


class FakeBenchmark:
    """pytest-benchmark's fixture, reduced to what measure uses: calls fn a few times."""

    def __init__(self):
        self.extra_info = {}
        self.calls = []

    def __call__(self, fn):
        self.calls.append(fn)
        durations = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            durations.append(time.perf_counter() - start)
        self.stats = SimpleNamespace(stats=SimpleNamespace(median=sorted(durations)[1]))
