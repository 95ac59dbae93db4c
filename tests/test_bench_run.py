"""Real pytest-benchmark runs in a subprocess, read back through reports.load."""

import json
import re
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from bench.matrix import select as matrix
from reports import load
from tests.helpers import NO_TORCH, ROOT, bench_cmd, run_bench

ONE_CASE = ["--models", "fashion_mlp", "--phases", "forward", "--modes", "eager"]


@pytest.mark.slow
def test_smoke_run_writes_json_that_loads_into_the_expected_rows(smoke_run):
    run_dir = smoke_run.run_dir
    raw = json.loads((run_dir / "benchmark.json").read_text())
    names = {b["name"] for b in raw["benchmarks"]}
    expected = {c.id for c in matrix.select("smoke")}
    assert names == expected
    for bench in raw["benchmarks"]:
        extra = bench["extra_info"]
        assert extra["case_id"] == bench["name"]
        assert extra["param_count"] in (61_706, 235_146)
        assert len(bench["stats"]["data"]) == bench["stats"]["rounds"]  # raw round times kept

    df = load(run_dir / "benchmark.json")
    assert set(df["case_id"]) == expected
    assert df["median_s"].dtype == float and (df["median_s"] > 0).all()
    assert (df["min_s"] <= df["median_s"]).all() and (df["median_s"] <= df["max_s"]).all()
    assert (df["status"] == "ok").all()
    train = df.set_index("case_id").loc["train_step[fashion_mlp-adam-cpu-eager-b64]"]
    assert train["samples_per_s"] == pytest.approx(64 / train["median_s"])
    # The JSON-lines record written during the run holds the same cases and numbers.
    lines = load(run_dir).set_index("case_id").sort_index()
    assert lines["median_s"].to_dict() == df.set_index("case_id").sort_index()["median_s"].to_dict()


@pytest.mark.slow
def test_smoke_run_report_names_every_case(smoke_run):
    report = (smoke_run.run_dir / "report.md").read_text()
    for case in matrix.select("smoke"):
        assert case.id in report
    assert "## train_step" in report
    assert (smoke_run.run_dir / "report.csv").is_file()
    assert str(smoke_run.run_dir) in smoke_run.proc.stdout


# Rejections: every bad value is checked in-process in tests/test_options.py; here the real
# command, for what only it shows.


def bench_without_torch(results_dir, *args: str) -> subprocess.CompletedProcess:
    """The bench command in a Python where importing torch fails (as if not installed)."""
    code = NO_TORCH + f"import pytest\nsys.exit(pytest.main({bench_cmd(results_dir, *args)[3:]!r}))\n"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (["--devices", "tpu"], "unknown value 'tpu' for --devices; valid choices: cpu, cuda"),
    (["--benchmark-max-time", "-1"], "invalid value -1 for --benchmark-max-time; expected seconds >= 0"),
    (["--results-dir", "{tmp}/afile"], "--results-dir {tmp}/afile: is a file, not a folder"),
    (["--history-db", "{tmp}"], "{tmp}: is a folder"),
], ids=["axis", "pytest-benchmark", "results-dir", "history-db"])
def test_a_bad_flag_or_path_is_refused_before_torch_is_imported(tmp_path, args, message):
    (tmp_path / "afile").touch()
    results = tmp_path / "results"
    proc = bench_without_torch(results, *ONE_CASE, *(a.format(tmp=tmp_path) for a in args))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert message.format(tmp=tmp_path) in out and "Traceback" not in out
    assert not results.exists(), "a refused run creates nothing"


@pytest.mark.slow
def test_an_unknown_model_is_refused_before_anything_is_written(tmp_path):
    # The model registry imports torch: checked after the flags, before any folder or history.
    run = run_bench(tmp_path, "--models", "lenet,resnet")
    assert run.proc.returncode == 2
    assert "unknown value 'resnet' for --models; valid choices: lenet," in run.proc.stderr
    assert not any(tmp_path.iterdir()), "a rejected selection must not start a run"


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (["--results-dir", "/proc/nope"], "--results-dir /proc/nope: cannot create this folder"),
    (["--history-db", "/sys/h.sqlite"], "/sys/h.sqlite: the history cannot be written"),
], ids=["results-dir", "history-db"])
def test_a_folder_or_history_only_creating_shows_unusable_stops_the_run_before_it_measures(tmp_path, args, message):
    run = run_bench(tmp_path, *ONE_CASE, *args)
    assert run.proc.returncode == 2, run.proc.stdout + run.proc.stderr
    assert message in run.proc.stderr
    assert "Traceback" not in run.proc.stdout + run.proc.stderr
    assert not list(tmp_path.glob("*/cases.jsonl")), "nothing may be measured before the refusal"


@pytest.mark.slow
def test_a_model_module_that_fails_to_import_is_named_with_its_file_and_line(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "syntax_models.py").write_text("from models import register_model\n\ndef net(:\n    pass\n")
    (plugins / "raising_models.py").write_text("import torch\nRAISED = undefined_name\n")
    env = {"PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}
    for module, where in (("syntax_models", "line 3: SyntaxError: "), ("raising_models", "line 2: NameError: ")):
        run = run_bench(tmp_path / "results", "--model-module", module, *ONE_CASE, env=env)
        out = run.proc.stdout + run.proc.stderr
        assert run.proc.returncode == 2, out  # not pytest's INTERNALERROR (3)
        assert f"--model-module {module}: cannot import it: {plugins / module}.py, {where}" in out
        assert "INTERNALERROR" not in out and "Traceback" not in out


def _history_rows(results) -> int:
    """Rows the run appended; the history is created (empty) before the first case, when the run
    checks it can write there."""
    db = results / "history.sqlite"
    if not db.is_file():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM case_runs").fetchone()[0]


@pytest.mark.parametrize(("args", "why"), [
    (["--devices", "cuda"], "no case was measured: 1 skipped: CUDA is not available on this machine"),
    (["--benchmark-skip"], "no case was measured: --benchmark-skip skips every benchmark"),
], ids=["cuda-without-gpu", "benchmark-skip"])
@pytest.mark.slow
def test_a_run_that_measures_nothing_exits_1_and_appends_nothing(tmp_path, args, why):
    if args[0] == "--devices" and torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    run = run_bench(tmp_path, *ONE_CASE, *args)
    assert run.proc.returncode == 1, run.proc.stdout + run.proc.stderr
    assert why in run.proc.stdout
    assert _history_rows(tmp_path) == 0
    # The skipped rows are still recorded, and the report shows them.
    assert (load(run.run_dir)["status"] == "skipped").all()
    assert (run.run_dir / "report.md").is_file()


@pytest.mark.slow
def test_benchmark_disable_is_a_dry_run(tmp_path):
    run = run_bench(tmp_path, *ONE_CASE, "--benchmark-disable")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    assert "dry run (--benchmark-disable): 1 case built and run once" in run.proc.stdout
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"


@pytest.mark.slow
def test_the_output_ends_with_the_blitzbench_section_and_a_narrow_table(smoke_run):
    lines = smoke_run.proc.stdout.rstrip().splitlines()
    section = max(i for i, line in enumerate(lines) if line.strip("- ") == "blitzbench")
    tail = lines[section + 1:]
    assert tail[0].startswith(f"results: {smoke_run.run_dir}")
    assert tail[-1].startswith("history: ") and "(+8 cases)" in tail[-1]
    assert {"markdown", "csv", "html"} <= {line.split(":")[0] for line in tail}
    table = [line for line in lines[:section] if "Median" in line or "[" in line]
    assert any("Median" in line for line in table)
    assert max(map(len, lines[:section])) <= 120


@pytest.mark.slow
def test_environment_records_the_kind_of_run_and_its_timing_settings(smoke_run):
    env = json.loads((smoke_run.run_dir / "environment.json").read_text())
    assert (env["run_kind"], env["benchmark_max_time"], env["benchmark_min_rounds"], env["profiled"]) == \
        ("bench", 0.05, 3, False)
    assert json.loads((smoke_run.run_dir / "benchmark.json").read_text())["blitzbench_environment"]["run_kind"] == "bench"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_cuda_cases_skip_cleanly_without_a_gpu(tmp_path):
    run = run_bench(tmp_path, "--models", "lenet", "--phases", "forward,train_step",
                    "--optimizers", "sgd", "--devices", "cpu,cuda", "--modes", "eager")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    assert "2 passed, 2 skipped" in run.proc.stdout
    df = load(run.run_dir).set_index("case_id")
    assert df.loc["forward[lenet-cuda-eager-b64]", "status"] == "skipped"
    assert "CUDA is not available" in df.loc["forward[lenet-cuda-eager-b64]", "error"]
    assert df.loc["forward[lenet-cpu-eager-b64]", "status"] == "ok"


# How long a test waits for an event of a real run (a row written, a call reached) before it
# calls the run stuck: generous, since a busy 2-core machine starts a run 5x slower than a quiet
# one (torch's import, the matrix); a failure names what it waited for and for how long.
DEADLINE_S = float(os.environ.get("BLITZBENCH_TEST_DEADLINE_S", "1800"))


def start_interruptible(tmp_path: Path, *args: str, block_at: int) -> tuple[subprocess.Popen, Path]:
    """A real run whose sleepy case logs each call and blocks on call ``block_at``. A shell's
    background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: the
    child gets the default disposition, as a terminal would give it."""
    log = tmp_path / "sleepy-calls.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", BLITZBENCH_SLEEPY_LOG=str(log), BLITZBENCH_SLEEPY_BLOCK=str(block_at))
    proc = subprocess.Popen(bench_cmd(tmp_path / "results", "-p", "tests.fault_plugin", *args), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc, log


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen) -> None:
    """Until ``ready()``; fails at once if the run ended first, or after DEADLINE_S, saying which."""
    started = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() - started > DEADLINE_S:
            proc.kill()
            pytest.fail(f"waited {DEADLINE_S:g} s for {what} (BLITZBENCH_TEST_DEADLINE_S); the run is stuck")
        time.sleep(0.05)


def reached(log: Path, call: int) -> Callable[[], bool]:
    return lambda: log.is_file() and f"call {call}" in log.read_text().split("\n")


@pytest.mark.slow
def test_interrupted_run_keeps_its_finished_cases(tmp_path):
    # Three cases; the third blocks in its first call until interrupted, so Ctrl-C comes after
    # exactly two finished ones, however fast or busy the machine.
    proc, log = start_interruptible(tmp_path, "--models", "fashion_mlp,lenet,sleepy_mlp", "--phases", "forward",
                                    "--modes", "eager", block_at=1)
    wait_for("the third case's first call", reached(log, 1), proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 2, output  # pytest's exit code for an interrupted session
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    df = load(run_dir)
    assert list(df["case_id"]) == ["forward[fashion_mlp-cpu-eager-b64]", "forward[lenet-cpu-eager-b64]"]
    assert (df["status"] == "ok").all()
    report = (run_dir / "report.md").read_text()
    assert all(case_id in report for case_id in df["case_id"])


# Where Ctrl-C lands in the second case: its first call (building, compiling), its warm-up
# (calls 2-4), pytest-benchmark's calibration (calls 5-6 with pytest-benchmark 5), its first
# timed round (call 7: the statistics exist, with no data yet; the window that once left no
# benchmark.json at all, checked to fail without bench.plugin's fix), its later rounds.
@pytest.mark.slow
@pytest.mark.parametrize("block_at", [1, 3, 6, 7, 9], ids=["first-call", "warm-up", "calibration", "first-round",
                                                          "rounds"])
def test_ctrl_c_during_a_case_leaves_a_benchmark_json_the_readers_load(tmp_path, block_at):
    proc, log = start_interruptible(tmp_path, "--models", "fashion_mlp,sleepy_mlp", "--phases", "forward",
                                    "--modes", "eager", block_at=block_at)
    wait_for(f"the sleepy case's call {block_at}", reached(log, block_at), proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 2, output
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    df = load(run_dir / "benchmark.json")
    assert list(df["case_id"]) == ["forward[fashion_mlp-cpu-eager-b64]"]
    assert (run_dir / "report.md").is_file()
    assert "KeyboardInterrupt" in output and "no case was measured" not in output


@pytest.mark.slow
def test_each_compiled_case_reports_a_cold_and_a_warm_compile_outside_the_timing(tmp_path):
    # Issue #25: the SGD case compiled after the Adam one hit the graphs inductor had just cached
    # and showed only "warm". Each compiled case now compiles on its own empty cache, then again.
    shared = tmp_path / "shared-inductor-cache"
    run = run_bench(tmp_path / "results", "--models", "fashion_mlp", "--optimizers", "adam,sgd",
                    "--phases", "train_step", "--modes", "compile", env={"TORCHINDUCTOR_CACHE_DIR": str(shared)})
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    df = load(run.run_dir).set_index("case_id")
    assert list(df.index) == ["train_step[fashion_mlp-adam-cpu-compile-b64]", "train_step[fashion_mlp-sgd-cpu-compile-b64]"]
    for case_id, row in df.iterrows():
        seen = (case_id, row[["first_call_s", "compile_time_s", "compile_warm_s", "compile_cache", "max_s"]].to_dict())
        assert row["compile_time_s"] == row["first_call_s"] > 0, seen
        assert row["compile_cache"] == "cold", seen  # no cache hit: not the shared one, not the Adam case's
        # The same compile on the cache it filled skips inductor's codegen and the C++ compiler.
        assert 0 < row["compile_warm_s"] < row["compile_time_s"] / 2, seen
        # Had a compiling call entered the rounds, the slowest round would be as slow as it.
        assert row["max_s"] < row["compile_warm_s"], seen
    written = sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file()) if shared.exists() else []
    assert written == [], written  # the user's own cache neither read nor written
    report = (run.run_dir / "report.md").read_text(encoding="utf-8")
    section = report[report.index("## Compile behaviour"):]
    assert "Cold compile: the first, compiling call, on the case's own empty compile cache" in section
    # Each column picks its own unit at rendering: cold in seconds, warm perhaps in milliseconds.
    assert re.search(r"cold compile \((s|ms)\)", section) and re.search(r"warm compile \((s|ms)\)", section), section
