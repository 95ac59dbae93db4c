"""A failing case becomes a row with its status and message; the rest of the matrix goes on."""

import json

from reports import load
from tests.helpers import run_bench

PLUGIN = ["-p", "tests.fault_plugin"]


def statuses(run) -> dict[str, str]:
    return load(run.run_dir).set_index("case_id")["status"].to_dict()


def test_failures_become_rows_and_the_matrix_goes_on(tmp_path):
    run = run_bench(tmp_path, *PLUGIN, "--models", "nan_mlp,fashion_mlp,huge_input",
                    "--phases", "forward,train_step", "--optimizers", "sgd,cuda_only_sgd", "--modes", "eager")
    assert run.proc.returncode == 1  # failed cases fail their test, after everything ran
    assert statuses(run) == {
        "forward[fashion_mlp-cpu-eager-b64]": "ok",
        "forward[huge_input-cpu-eager-b64]": "oom",
        "forward[nan_mlp-cpu-eager-b64]": "non_finite",
        "train_step[fashion_mlp-sgd-cpu-eager-b64]": "ok",
        "train_step[fashion_mlp-cuda_only_sgd-cpu-eager-b64]": "unsupported",
        "train_step[huge_input-sgd-cpu-eager-b64]": "oom",
        "train_step[huge_input-cuda_only_sgd-cpu-eager-b64]": "unsupported",
        "train_step[nan_mlp-sgd-cpu-eager-b64]": "non_finite",
        "train_step[nan_mlp-cuda_only_sgd-cpu-eager-b64]": "unsupported",
    }
    df = load(run.run_dir).set_index("case_id")
    assert "can't allocate memory" in df.loc["forward[huge_input-cpu-eager-b64]", "error"]
    assert df.loc["train_step[nan_mlp-sgd-cpu-eager-b64]", "error"] == "loss is not finite after warm-up"
    assert "does not run on cpu; it supports cuda" in df.loc[
        "train_step[fashion_mlp-cuda_only_sgd-cpu-eager-b64]", "error"]
    report = (run.run_dir / "report.md").read_text()
    assert "| non_finite" in report and "| unsupported" in report and "| oom" in report


def test_compile_error_is_a_row_and_eager_still_runs(tmp_path):
    run = run_bench(tmp_path, *PLUGIN, "--models", "fashion_mlp", "--phases", "forward",
                    "--modes", "eager,compile", "--compile-backend", "broken")
    assert statuses(run) == {"forward[fashion_mlp-cpu-eager-b64]": "ok",
                             "forward[fashion_mlp-cpu-compile-b64]": "compile_error"}
    error = load(run.run_dir).set_index("case_id").loc["forward[fashion_mlp-cpu-compile-b64]", "error"]
    assert "refuses to compile" in error


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
    assert "forward[recompiling_mlp" not in report.split("## Compile behaviour")[0]  # no timing shown


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
