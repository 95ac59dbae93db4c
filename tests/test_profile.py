"""Profiler traces: real torch.profiler passes, in the suite's own run and in-process."""

import json

import pandas as pd
import pytest
import torch

from bench.schema.case import Case
from bench.matrix.options import parse_schedule
from bench.passes.profiling import (SETUP_LABEL, TIMED_LABEL, TRACE_BUDGET_BYTES, ProfileConfig, capture,
                                    check_budget, trace_folder_name)
from bench.workloads.build import build_step
from reports import load
from bench.schema.files import PROFILE_CSV
from bench.passes.profiling import aggregate, step_counts
from reports.traces.profile import load_profile, top_ops
from reports.traces import TraceError, check_traces, find_traces, op_names, read_trace
from tests.helpers import run_bench

TRAIN = "train_step[fashion_mlp-adadelta-cpu-eager-b64]"
BACKWARD = "backward[fashion_mlp-cpu-eager-b64]"
LARGEST = "train_step[lenet3x3-adadelta-cpu-eager-b64]"


def trace_of(run_dir, case_id):
    folder = run_dir / "traces" / trace_folder_name(case_id)
    files = find_traces(folder)
    assert len(files) == 1 and files[0].name.endswith(".pt.trace.json.gz"), files
    return read_trace(files[0])


@pytest.mark.slow
def test_each_case_gets_a_gzipped_chrome_trace_with_its_operators(profile_run):
    run_dir = profile_run.run_dir
    df = load(run_dir)
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert len(check_traces(run_dir)) == 4  # every trace parses as JSON with traceEvents
    names = op_names(trace_of(run_dir, TRAIN))
    assert {"aten::linear", "aten::addmm", "aten::mm"} <= names
    assert not any("[" in p.name for p in (run_dir / "traces").iterdir())
    lenet = op_names(trace_of(run_dir, LARGEST))
    assert "aten::conv2d" in lenet and "aten::linear" in lenet


@pytest.mark.slow
def test_result_rows_link_their_trace_folder_and_carry_counts_per_step(profile_run):
    run_dir = profile_run.run_dir
    rows = load(run_dir).set_index("case_id")
    for case_id, row in rows.iterrows():
        assert (run_dir / row["trace_dir"]).is_dir()
        assert row["op_calls_per_step"] > 0
        assert pd.isna(row["kernel_launches_per_step"])  # CPU cases launch no kernels
    # fashion_mlp has three Linear layers: three forward addmm per step, whatever the step count.
    profile = load_profile(run_dir)
    addmm = profile[(profile["case_id"] == TRAIN) & (profile["name"] == "aten::addmm")]
    assert addmm["calls_per_step"].tolist() == [3.0]
    ops = profile[(profile["case_id"] == TRAIN) & (profile["kind"] == "op")]
    assert rows.loc[TRAIN, "op_calls_per_step"] == pytest.approx(ops["calls_per_step"].sum())
    raw = json.loads((run_dir / "benchmark.json").read_text())
    extra = {b["name"]: b["extra_info"] for b in raw["benchmarks"]}
    assert extra[TRAIN]["trace_dir"] == f"traces/{trace_folder_name(TRAIN)}"


@pytest.mark.slow
def test_summary_covers_the_timed_part_and_the_trace_shows_the_setup(profile_run):
    run_dir = profile_run.run_dir
    profile = load_profile(run_dir)
    backward = set(profile.loc[profile["case_id"] == BACKWARD, "name"])
    assert "aten::mm" in backward  # the gradients of the Linear layers
    assert not {"aten::linear", "aten::addmm"} & backward  # the forward is backward's untimed setup
    trace = trace_of(run_dir, BACKWARD)
    labels = {e.get("name") for e in trace["traceEvents"] if e.get("cat") == "user_annotation"}
    assert {SETUP_LABEL, TIMED_LABEL} <= labels
    assert "aten::linear" in op_names(trace)


@pytest.mark.slow
def test_largest_seed_case_trace_stays_within_the_budget(profile_run):
    row = load(profile_run.run_dir).set_index("case_id").loc[LARGEST]
    (trace_file,) = find_traces(profile_run.run_dir / row["trace_dir"])
    assert row["trace_bytes"] == trace_file.stat().st_size
    assert trace_file.stat().st_size < TRACE_BUDGET_BYTES


@pytest.mark.slow
def test_report_shows_a_profile_table_per_case_and_links_the_traces(profile_run):
    run_dir = profile_run.run_dir
    report = (run_dir / "report.md").read_text()
    profiles = report[report.index("## Profiles"):]
    for case_id in (TRAIN, BACKWARD, LARGEST):
        assert f"### {case_id}" in profiles
        assert f"[trace](traces/{trace_folder_name(case_id)})" in report  # in the phase table
    train = profiles[profiles.index(f"### {TRAIN}"):].split("###")[1]
    assert "top operators by self CPU time" in train
    csv = pd.read_csv(run_dir / PROFILE_CSV)
    # Which operators lead by self time moves with the machine's load; the calls do not:
    # fashion_mlp's three Linear layers are three addmm per step.
    addmm = csv[(csv["case_id"] == TRAIN) & (csv["name"] == "aten::addmm")]
    assert addmm["calls_per_step"].tolist() == [3]
    assert {"case_id", "name", "kind", "calls_per_step", "self_cpu_s", "trace_dir"} <= set(csv.columns)
    assert set(csv["case_id"]) == {TRAIN, BACKWARD, LARGEST, "backward[lenet3x3-cpu-eager-b64]"}


@pytest.mark.slow
def test_a_profiled_run_with_short_timing_is_a_profile_run(profile_run):
    env = json.loads((profile_run.run_dir / "environment.json").read_text())
    assert (env["run_kind"], env["profiled"], env["benchmark_max_time"]) == ("profile", True, 0.05)


@pytest.mark.slow
def test_bad_profile_schedule_stops_the_run_before_it_starts(tmp_path):
    run = run_bench(tmp_path, "--models", "fashion_mlp", "--phases", "forward", "--profile",
                    "--profile-schedule", "1,1,0")
    assert run.proc.returncode == 2
    assert "invalid --profile-schedule '1,1,0'; expected WAIT,WARMUP,ACTIVE" in run.proc.stderr
    assert "Traceback" not in run.proc.stderr
    assert not any(tmp_path.iterdir())


def small_step(phase="forward"):
    optimizer = "sgd" if phase == "train_step" else None
    return build_step(Case(phase=phase, model="fashion_mlp", optimizer=optimizer, device="cpu",
                           mode="eager", batch_size=8))


def test_capture_records_only_the_active_steps(tmp_path):
    step = small_step("train_step")
    result = capture(step, tmp_path / "t", ProfileConfig(wait=1, warmup=1, active=2))
    assert result.steps == 2
    ops = aggregate(result.events, result.steps)
    assert ops.set_index("name").loc["aten::addmm", "calls_per_step"] == 3.0
    steps = [e for e in read_trace(result.trace_file)["traceEvents"]
             if str(e.get("name", "")).startswith("ProfilerStep#")]
    assert len(steps) == 2


def test_a_trace_over_budget_is_reported(tmp_path):
    result = capture(small_step(), tmp_path / "t", ProfileConfig(active=1))
    with pytest.warns(UserWarning, match=r"the trace of forward\[x\] is .* over the 0 MiB budget"):
        check_budget(result, "forward[x]", budget=result.trace_bytes - 1)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_case_counts_kernel_launches_and_device_time(tmp_path):
    case_id = "train_step[fashion_mlp-adam-cuda-eager-b64]"
    run = run_bench(tmp_path, "--models", "fashion_mlp", "--phases", "train_step", "--optimizers",
                    "adam", "--devices", "cuda", "--profile")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    row = load(run.run_dir).set_index("case_id").loc[case_id]
    assert row["kernel_launches_per_step"] > 0
    profile = load_profile(run.run_dir)
    assert (profile.loc[profile["kind"] == "op", "self_device_s"] > 0).any()
    assert any(e.get("cat") == "kernel" for e in trace_of(run.run_dir, case_id)["traceEvents"])
    assert "Top operators by self device time" in (run.run_dir / "report.md").read_text()


def test_with_stack_adds_python_frames_to_the_trace(tmp_path):
    def python_events(config):
        result = capture(small_step(), tmp_path / str(config.with_stack), config)
        return [e for e in read_trace(result.trace_file)["traceEvents"]
                if e.get("cat") == "python_function"]

    assert not python_events(ProfileConfig(active=1))
    assert python_events(ProfileConfig(active=1, with_stack=True))


def test_aggregate_groups_by_name_per_step_and_counts_launches_on_cuda_only():
    events = [
        {"name": "aten::mm", "kind": "op", "self_cpu_s": 3e-6, "self_device_s": 5e-6},
        {"name": "aten::mm", "kind": "op", "self_cpu_s": 1e-6, "self_device_s": 3e-6},
        {"name": "aten::relu", "kind": "op", "self_cpu_s": 2e-6, "self_device_s": 0.0},
        {"name": "cudaLaunchKernel", "kind": "launch", "self_cpu_s": 2e-6, "self_device_s": 0.0},
    ]
    ops = aggregate(events, steps=2).set_index("name")
    assert ops.loc["aten::mm", "calls_per_step"] == 1.0
    assert ops.loc["aten::mm", "self_cpu_s"] == pytest.approx(2e-6)
    assert ops.loc["aten::mm", "cpu_pct"] == pytest.approx(50.0)
    assert list(ops.index[:2]) == ["aten::mm", "aten::relu"]  # largest self CPU time first
    counts = step_counts(ops.reset_index(), "cuda")
    assert counts == {"op_calls_per_step": 1.5, "kernel_launches_per_step": 0.5}
    assert step_counts(ops.reset_index(), "cpu")["kernel_launches_per_step"] is None
    frame = ops.reset_index().assign(case_id="c")
    assert top_ops(frame, "c", by="self_device_s")["name"].tolist() == ["aten::mm"]
    assert aggregate([], steps=3).empty


@pytest.mark.parametrize(("case_id", "folder"), [
    ("train_step[lenet-sgd-cpu-eager-b64]", "train_step.lenet-sgd-cpu-eager-b64"),
    ("forward[fashion_mlp-cuda-compile-bfloat16-b32]", "forward.fashion_mlp-cuda-compile-bfloat16-b32"),
])
def test_trace_folder_names_have_no_glob_characters(case_id, folder):
    assert trace_folder_name(case_id) == folder


def test_parse_schedule_names_the_bad_value():
    assert parse_schedule("0, 2, 5") == (0, 2, 5)
    for bad in ("1,2", "a,b,c", "1,-1,3", "1,1,0", ""):
        with pytest.raises(ValueError, match=f"invalid --profile-schedule '{bad}'"):
            parse_schedule(bad)


def test_trace_checks_name_the_bad_file_or_folder(tmp_path):
    with pytest.raises(TraceError, match="no such folder"):
        find_traces(tmp_path / "missing")
    with pytest.raises(TraceError, match="no profiler traces"):
        find_traces(tmp_path)
    case_dir = tmp_path / "run" / "traces" / "forward.x"
    case_dir.mkdir(parents=True)
    (tmp_path / "run" / "traces" / "ok").mkdir()
    (tmp_path / "run" / "traces" / "ok" / "w.1.pt.trace.json").write_text('{"traceEvents": []}')
    with pytest.raises(TraceError, match=r"forward\.x: empty trace folder"):
        find_traces(tmp_path)
    bad = case_dir / "w.2.pt.trace.json.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(TraceError, match=r"w\.2\.pt\.trace\.json\.gz: corrupt trace"):
        check_traces(tmp_path)
    bad.unlink()
    (case_dir / "w.3.pt.trace.json").write_text('{"events": []}')
    with pytest.raises(TraceError, match="no 'traceEvents' list"):
        check_traces(tmp_path)


@pytest.mark.slow
def test_profile_summary_of_an_interrupted_run_keeps_its_finished_cases(profile_run, tmp_path):
    lines = (profile_run.run_dir / "profile.jsonl").read_text().splitlines()
    (tmp_path / "profile.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:100])
    assert load_profile(tmp_path)["case_id"].nunique() == 2
