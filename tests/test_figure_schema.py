"""One declaration is all a new figure needs: a plug-in's figure reaches the CSV, the Markdown
and HTML reports and the history, and the gate judges it as declared (deterministic here)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from tests.helpers import ROOT, run_bench

SELECTION = ["-p", "tests.toy_figure_plugin", "--preset", "smoke", "--models", "fashion_mlp", "--phases", "forward"]


@pytest.mark.slow
def test_a_figure_declared_once_reaches_every_output_and_the_gate(tmp_path):
    db = tmp_path / "history.sqlite"
    base = run_bench(tmp_path / "base", *SELECTION, "--history-db", str(db))
    assert base.proc.returncode == 0, base.proc.stdout + base.proc.stderr
    run = base.run_dir
    assert pd.read_csv(run / "report.csv")["toy_widgets"].tolist() == [7]
    assert "toy widgets" in (run / "report.md").read_text()
    assert "toy widgets" in (run / "report.html").read_text()
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT value FROM figures WHERE name = 'toy_widgets'").fetchall()
    assert stored == [(7.0,)]
    # Re-rendered in a process that never loaded the plug-in: the run folder's figures.json
    # still declares the figure.
    rerender = subprocess.run([sys.executable, "-m", "reports", str(run)], cwd=ROOT, capture_output=True, text=True)
    assert rerender.returncode == 0, rerender.stderr
    assert "toy widgets" in (run / "report.md").read_text()

    head = run_bench(tmp_path / "head", *SELECTION, "--history-db", str(db), env={"TOY_WIDGETS": "8"})
    assert head.proc.returncode == 0, head.proc.stdout + head.proc.stderr
    out = tmp_path / "gate"
    gate = subprocess.run([sys.executable, "-m", "reports", "gate", str(run), str(head.run_dir), "--threshold",
                           "1e9", "--output", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert gate.returncode == 1, gate.stdout + gate.stderr
    changes = json.loads((out / "gate.json").read_text())["deterministic"]
    assert [(c["case_id"], c["figure"]) for c in changes] == [("forward[fashion_mlp-cpu-eager-b64]", "toy_widgets")]
