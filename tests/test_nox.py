"""The nox sessions as a user runs them: each session's exit status, Ctrl-C during a run,
SIGTERM to the trace viewer's session. These start real nox processes from the project's noxfile."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.schema.case import Case
from tests.helpers import FAST, ROOT
from tests.synthetic import entry, rounds, write_run

pytest.importorskip("nox", reason="nox is not installed (pip install -e .[test])")

CASES = [Case(phase="forward", model="fashion_mlp", optimizer=None, device="cpu", mode="eager", batch_size=b)
         for b in (8, 16, 32, 64, 128, 256)]


def nox(*args: str, no_venv: bool = False) -> list[str]:
    """The command line of ``nox`` run from this interpreter, on the project's noxfile."""
    return [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), *(["--no-venv"] if no_venv else []), *args]


def side(path: Path, factor: float, seed: int) -> Path:
    return write_run(path, [entry(c, rounds(1e-3 * factor * (i + 1), n=60, spread=0.005, seed=seed + i))
                            for i, c in enumerate(CASES)])


@pytest.mark.slow
def test_the_documented_gate_command_tells_regression_from_unusable_input(tmp_path):
    # docs/ci-gate.md: nox -s gate -- results/base results/head --normalize --output results/gate
    # (absolute paths here: nox runs sessions from the noxfile's folder). The session gets its
    # own light environment, without torch.
    base, same, slow = side(tmp_path / "base", 1.0, 0), side(tmp_path / "same", 1.0, 100), tmp_path / "slow"
    write_run(slow, [entry(c, rounds(1e-3 * (i + 1) * (1.5 if i == 0 else 1.0), n=60, spread=0.005, seed=200 + i))
                     for i, c in enumerate(CASES)])

    def gate(head: Path) -> subprocess.CompletedProcess:
        return subprocess.run(nox("-s", "gate", "--", str(base), str(head), "--normalize",
                                  "--output", str(tmp_path / f"gate-{head.name}")),
                              capture_output=True, text=True, timeout=900)

    passed = gate(same)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    regression = gate(slow)
    assert regression.returncode == 1, regression.stdout + regression.stderr
    verdict = json.loads((tmp_path / "gate-slow" / "gate.json").read_text())
    assert [r["case_id"] for r in verdict["timing"] if r["verdict"] == "regression"] == [CASES[0].id]
    unusable = gate(tmp_path / "missing")
    assert unusable.returncode == 2, unusable.stdout + unusable.stderr
    assert "missing: no such file or folder" in unusable.stdout + unusable.stderr


# Each session's command refusing at once (README, "Exit status through nox"): a measuring
# session (run_measuring), a reader, nox's own argument check, and pytest's usage error.
REFUSALS = [("bench", ["--preset", "nope"], 2, "'nope'"),
            ("report", ["{tmp}/nope"], 2, "nope: no such file or folder"),
            ("calibrate", ["--runs", "1"], 2, "calibration needs at least 2 runs"),
            ("tests", ["--no-such-option"], 4, "--no-such-option")]


@pytest.mark.slow
@pytest.mark.parametrize("session, args, status, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_every_session_exits_with_its_command_s_own_status(tmp_path, session, args, status, message):
    # Issue #25: through nox a bad input exited 1 (nox's own code for any failure), not the 2 the
    # README promises, for every session but gate, merge and trace-diff.
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run(nox("-s", session, "--", *args, no_venv=True), capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr  # the reason stays on stderr


@pytest.mark.slow
def test_ctrl_c_under_nox_leaves_the_report_and_a_readable_benchmark_json(tmp_path):
    results = tmp_path / "results"
    # In a terminal, Ctrl-C sends SIGINT to the whole foreground process group: nox and pytest.
    # 0.5 s per case after FAST's 0.05: the interrupt, sent once two cases are done, lands
    # while the run still has seconds to go. A shell's background job (CI started with `&`)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: restore it.
    proc = subprocess.Popen(nox("-s", "bench", "--", "--preset", "smoke", "--results-dir", str(results),
                                "-p", "no:cacheprovider", *FAST, "--benchmark-max-time=0.5", no_venv=True),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            lines = list(results.glob("*/cases.jsonl"))
            if lines and len(lines[0].read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no case finished within 300 s")
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, output  # interrupted, and nox says so
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    assert len((run / "cases.jsonl").read_text().splitlines()) < 8, output  # it stopped mid-run
    for name in ("report.md", "report.html", "benchmark.json"):
        assert (run / name).is_file(), f"{name} missing after Ctrl-C:\n{output}"
    from reports import load

    finished = load(run / "benchmark.json")
    assert len(finished) >= 2 and finished["case_id"].notna().all()
    assert set(finished["case_id"]) <= set(load(run)["case_id"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_sigterm_to_the_tensorboard_session_stops_the_server(profile_run):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e .[profile])")
    port = free_port()
    proc = subprocess.Popen(nox("-s", "tensorboard", "--", str(profile_run.results_dir), "--port", str(port),
                                no_venv=True),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 180
        while not answers(port):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # to nox only, as a service manager or CI would
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while answers(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not answers(port), "the TensorBoard server still answers after nox was stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize(("selection", "expected"), [
    # Issue #25: the default preset's compiled block joined a selection that named no mode.
    (["--models", "fashion_mlp", "--phases", "train_step", "--optimizers", "adam"],
     ["train_step[fashion_mlp-adam-cpu-eager-b64]"]),
    (["--models", "fashion_mlp", "--phases", "train_step", "--optimizers", "adam", "--modes", "eager,compile"],
     ["train_step[fashion_mlp-adam-cpu-eager-b64]", "train_step[fashion_mlp-adam-cpu-compile-b64]"]),
])
def test_the_profile_session_profiles_the_cases_the_selection_names(tmp_path, selection, expected):
    proc = subprocess.run(nox("-s", "profile", "--", *selection, "--collect-only", "-q", "-p", "no:cacheprovider",
                              "--results-dir", str(tmp_path), no_venv=True),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = [line.split("::", 1)[1] for line in proc.stdout.splitlines() if line.startswith("bench/bench_steps.py::")]
    assert collected == expected, proc.stdout


def test_the_tests_session_runs_two_workers_where_xdist_is_installed(monkeypatch):
    """In its own environment the tests session always has pytest-xdist (the [test] extra); with
    --no-venv (an offline GPU machine) it adds -n only where that interpreter has xdist, else pytest
    would refuse the option."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("project_noxfile", ROOT / "noxfile.py")
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    assert noxfile.parallel(SimpleNamespace(venv_backend="uv")) == ["-n", "2", "--dist", "loadfile"]
    assert noxfile.parallel(SimpleNamespace(venv_backend="none")) == ["-n", "2", "--dist", "loadfile"]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xdist" else find_spec(name, *a))
    assert noxfile.parallel(SimpleNamespace(venv_backend="none")) == []
