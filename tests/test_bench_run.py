"""Real pytest-benchmark runs in a subprocess, read back through reports.load."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from bench import cases as matrix
from reports import load
from tests.helpers import ROOT, bench_cmd, run_bench


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


def test_smoke_run_report_names_every_case(smoke_run):
    report = (smoke_run.run_dir / "report.md").read_text()
    for case in matrix.select("smoke"):
        assert case.id in report
    assert "## train_step" in report
    assert (smoke_run.run_dir / "report.csv").is_file()
    assert str(smoke_run.run_dir) in smoke_run.proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--models", "lenet,resnet"], "unknown value 'resnet' for --models; valid choices: lenet,"),
     (["--devices", "tpu"], "unknown value 'tpu' for --devices; valid choices: cpu, cuda"),
     (["--preset", "huge"], "unknown preset 'huge'; valid choices: smoke, default, full"),
     (["--batch-sizes", "64,-1"], "invalid value '-1' for --batch-sizes")],
)
def test_bad_selection_stops_with_a_message(tmp_path, args, message):
    run = run_bench(tmp_path, *args)
    assert run.proc.returncode != 0
    assert message in run.proc.stderr
    assert not any(tmp_path.iterdir()), "a rejected selection must not start a run"


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


def test_interrupted_run_keeps_its_finished_cases(tmp_path):
    # Many cases, so the run is still going when we press Ctrl-C after the second one.
    # A shell's background job inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(bench_cmd(tmp_path, "--preset", "default", "--modes", "eager"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    lines_file = None
    while time.monotonic() < deadline:
        found = list(tmp_path.glob("*/cases.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            lines_file = found[0]
            break
        time.sleep(0.05)
    assert lines_file is not None, "the run did not record two cases in time"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output  # pytest's exit code for an interrupted session
    df = load(lines_file.parent)
    assert len(df) >= 2 and (df["status"] == "ok").all()
    assert len(df) < len(matrix.select("default", modes=("eager",)))
    report = (lines_file.parent / "report.md").read_text()
    for case_id in df["case_id"]:
        assert case_id in report


def test_compile_case_records_compile_time_outside_the_timing(tmp_path):
    # A truly cold compile (no on-disk inductor cache): seconds, far above any stalled round.
    run = run_bench(tmp_path, "--models", "fashion_mlp", "--optimizers", "sgd",
                    "--phases", "train_step", "--modes", "compile",
                    env={"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"})
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    row = load(run.run_dir).iloc[0]
    assert row["case_id"] == "train_step[fashion_mlp-sgd-cpu-compile-b64]"
    assert row["compile_time_s"] == row["first_call_s"] > 0
    # Had the compiling call entered the rounds, the slowest round would be as slow as it.
    assert row["max_s"] < row["compile_time_s"] / 10
