"""The readers of results (``reports``, the ``report`` and ``gate`` nox sessions) import and run
without torch: every module that declares figures keeps torch inside its functions."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.schema.case import Case
from tests.helpers import NO_TORCH, ROOT
from tests.synthetic import entry, rounds, write_run

FIGURE_NAMES = "import json; from reports.schema import names; print(json.dumps(names()))"
CASES = [Case(phase="train_step", model="fashion_mlp", optimizer="adam", device="cpu", mode="eager"),
         Case(phase="forward", model="lenet", optimizer=None, device="cpu", mode="eager")]


def python(code: str, *, torch: bool) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", ("" if torch else NO_TORCH) + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def reports_cli(*args: str) -> subprocess.CompletedProcess:
    return python(f"import runpy; sys.argv = ['reports', *{list(args)!r}]\n"
                  "try:\n    runpy.run_module('reports', run_name='__main__')\n"
                  "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
                  "assert 'torch' not in sys.modules", torch=False)


def test_reports_import_and_list_every_figure_without_torch():
    light = python("import reports, reports.run, reports.history, reports.gate, reports.traces.profile\n"
                   + FIGURE_NAMES + "\nassert 'torch' not in sys.modules", torch=False)
    full = python(FIGURE_NAMES, torch=True)
    names = json.loads(light.stdout)
    assert sorted(names) == sorted(json.loads(full.stdout))  # (declaration order follows imports)
    for name in ("median_s", "compile_time_s", "mem_peak_bytes", "flops", "op_calls_per_step", "data_wait_share"):
        assert name in names


def test_report_and_gate_run_without_torch(tmp_path):
    env = {"torch_version": "2.x", "python_version": "3.11.0", "hostname": "h"}
    runs = [write_run(tmp_path / name, [entry(c, rounds(1e-3, seed=10 * side + i)) for i, c in enumerate(CASES)],
                      environment=env) for side, name in enumerate(("base", "head"))]
    out = reports_cli(str(runs[0])).stdout
    assert (runs[0] / "report.md").is_file() and str(runs[0] / "report.md") in out
    reports_cli("gate", str(runs[0]), str(runs[1]))
    assert (runs[1] / "gate.md").is_file()
