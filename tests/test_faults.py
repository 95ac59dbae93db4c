"""A failing case becomes a row with its status and message; the rest of the matrix goes on."""

import json
import logging

import pytest

from bench.schema.status import STATUSES
from reports import load
from tests.helpers import run_bench

PLUGIN = ["-p", "tests.fault_plugin"]


def statuses(run) -> dict[str, str]:
    return load(run.run_dir).set_index("case_id")["status"].to_dict()


def summary(run) -> str:
    """pytest's last line of counts: ``2 passed, 5 deselected, 2 oom, ...``."""
    return next(line for line in reversed(run.proc.stdout.splitlines()) if " passed" in line)


def problem_lines(run) -> dict[str, tuple[str, str]]:
    """The blitzbench section's (printed last) line per case not ok: case id -> (status, message)."""
    lines = run.proc.stdout.rstrip().splitlines()
    found = {}
    for line in lines[max(i for i, line in enumerate(lines) if line.strip("- ") == "blitzbench") + 1:]:
        status, _, rest = line.partition("  ")
        case_id, _, message = rest.strip().partition(": ")
        if status.strip() in STATUSES:
            found[case_id] = (status.strip(), message)
    return found


@pytest.mark.slow
def test_failures_become_rows_and_the_matrix_goes_on(tmp_path):
    run = run_bench(tmp_path, *PLUGIN, "--models", "nan_mlp,fashion_mlp,huge_input",
                    "--phases", "forward,train_step", "--optimizers", "sgd,cuda_only_sgd", "--modes", "eager")
    assert run.proc.returncode == 1  # failed cases fail their test, after everything ran
    # Each failed case is one line, under its status, in pytest's count and the blitzbench section.
    assert "Traceback" not in run.proc.stdout + run.proc.stderr and "= FAILURES =" not in run.proc.stdout
    assert all(part in summary(run) for part in ("2 passed", "2 oom", "2 non_finite", "3 unsupported")), summary(run)
    lines = problem_lines(run)
    assert lines["forward[nan_mlp-cpu-eager-b64]"] == ("non_finite", "output is not finite after warm-up")
    assert lines["forward[huge_input-cpu-eager-b64]"][0] == "oom"
    assert len(lines) == 7 and all(status == statuses(run)[case_id] for case_id, (status, _) in lines.items())
    df = load(run.run_dir).set_index("case_id")
    assert "can't allocate memory" in df.loc["forward[huge_input-cpu-eager-b64]", "error"]
    assert df.loc["train_step[nan_mlp-sgd-cpu-eager-b64]", "error"] == "loss is not finite after warm-up"
    assert "does not run on cpu; it supports cuda" in df.loc[
        "train_step[fashion_mlp-cuda_only_sgd-cpu-eager-b64]", "error"]
    report = (run.run_dir / "report.md").read_text()
    assert "| non_finite" in report and "| unsupported" in report and "| oom" in report


@pytest.mark.slow
def test_compile_error_is_a_row_and_eager_still_runs(tmp_path):
    run = run_bench(tmp_path, *PLUGIN, "--models", "fashion_mlp", "--phases", "forward",
                    "--modes", "eager,compile", "--compile-backend", "broken")
    assert statuses(run) == {"forward[fashion_mlp-cpu-eager-b64]": "ok",
                             "forward[fashion_mlp-cpu-compile-b64]": "compile_error"}
    error = load(run.run_dir).set_index("case_id").loc["forward[fashion_mlp-cpu-compile-b64]", "error"]
    assert "refuses to compile" in error


@pytest.mark.slow
def test_recompile_in_the_timed_rounds_invalidates_the_case(tmp_path):
    run = run_bench(tmp_path, *PLUGIN, "--models", "recompiling_mlp,graph_break_mlp",
                    "--phases", "forward", "--modes", "compile", "--compile-backend", "eager")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    df = load(run.run_dir).set_index("case_id")
    bad = df.loc["forward[recompiling_mlp-cpu-compile-b64]"]
    assert bad["status"] == "invalid"
    assert bad["invalid_reason"].startswith("recompiled ")
    assert "self.calls ==" in bad["invalid_reason"]  # the guard that failed
    good = df.loc["forward[graph_break_mlp-cpu-compile-b64]"]
    assert good["status"] == "ok" and good["recompiles"] == 0
    assert good["graph_break_count"] == 1 and good["graph_count"] == 2
    assert "builtin" in good["graph_breaks"][0]
    report = (run.run_dir / "report.md").read_text()
    assert "| invalid " in report and "recompiled" in report
    timings = report[report.index("## Fastest per phase"):report.index("## What a change bought")]
    timings += report[report.index("## forward: every case"):report.index("## Environment")]
    assert "forward[graph_break_mlp" in timings and "forward[recompiling_mlp" not in timings  # no timing shown
    # Where the comparison would have priced it, the reason it cannot be priced is given instead.
    priced = report[report.index("## What a change bought"):report.index("## Where memory goes")]
    assert "compile side invalid: recompiled " in priced


@pytest.mark.slow
def test_isolate_runs_each_case_in_its_own_process(tmp_path):
    run = run_bench(tmp_path, "--preset", "smoke", "--models", "fashion_mlp",
                    "--phases", "forward,optimizer_step", "--isolate")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    df = load(run.run_dir)
    assert sorted(df["case_id"]) == ["forward[fashion_mlp-cpu-eager-b64]",
                                     "optimizer_step[fashion_mlp-adam-cpu-eager-b64]"]
    assert df["pid"].nunique() == 2  # two fresh interpreters
    raw = json.loads((run.run_dir / "benchmark.json").read_text())
    assert sorted(b["name"] for b in raw["benchmarks"]) == sorted(df["case_id"])
    assert (run.run_dir / "report.md").is_file()


@pytest.mark.slow
def test_a_wrong_result_is_one_line_not_a_traceback_nor_torch_debug_logging(tmp_path):
    # -rA: pytest would print every case's captured logging, and it captured torch's trace records.
    run = run_bench(tmp_path, *PLUGIN, "--models", "fashion_mlp", "--phases", "forward", "--modes", "eager,compile",
                    "--compile-backend", "perturb", "--batch-sizes", "2", "-rA")
    out = run.proc.stdout + run.proc.stderr
    assert run.proc.returncode == 1, out  # a failed case fails the run, after everything ran
    assert "Traceback" not in out and "= FAILURES =" not in out and "DEBUG" not in out
    assert all(part in summary(run) for part in ("1 passed", "1 wrong_result")), summary(run)
    (status, message), = problem_lines(run).values()
    assert status == "wrong_result" and message.startswith("wrong result: the output is off float64 eager by ")
    row = load(run.run_dir).set_index("case_id").loc["forward[fashion_mlp-cpu-compile-b2]"]
    assert row["status"] == "wrong_result" and "beyond " in row["error"] and "the float32 tolerance" in row["error"]


def test_pytest_log_capture_is_kept_off_torchs_trace_logger():
    import torch._logging._internal as torch_logging
    from _pytest.logging import LogCaptureHandler

    from bench.plugin import TORCH_TRACE_LOGGER, keep_pytest_off

    assert torch_logging.trace_log.name == TORCH_TRACE_LOGGER  # the logger torch builds its records for
    logger = logging.getLogger("blitzbench-test.trace")
    torchs, pytests = logging.NullHandler(), LogCaptureHandler()
    logger.addHandler(torchs)
    logger.addHandler(pytests)
    try:
        keep_pytest_off(logger)
        assert logger.handlers == [torchs]  # TORCH_TRACE's handler stays; pytest's goes
    finally:
        logger.removeHandler(torchs)
