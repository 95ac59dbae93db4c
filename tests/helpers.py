"""Test helpers: real benchmark runs in a subprocess, as a user would start them.

A plain module (not conftest) so tests import it by name; the fixtures are in conftest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from filelock import FileLock  # a dependency of torch's

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


def shared_run(config: Any, basetemp: Path, name: str, *args: str) -> Run:
    """``run_bench`` once per test session, also when the session is split between pytest-xdist
    workers: the first worker to ask makes the run, under a file lock in the session's folder
    (the workers' common parent), and records how it ended; the others wait and read it."""
    worker = getattr(config, "workerinput", None)  # set in an xdist worker only
    root = basetemp.parent if worker else basetemp
    results, record = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not record.exists():
            results.mkdir(exist_ok=True)
            proc = run_bench(results, *args).proc
            record.write_text(json.dumps(dict(args=proc.args, returncode=proc.returncode,
                                              stdout=proc.stdout, stderr=proc.stderr)))
        ended = json.loads(record.read_text())
    return Run(subprocess.CompletedProcess(ended["args"], ended["returncode"], ended["stdout"], ended["stderr"]),
               results)


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
