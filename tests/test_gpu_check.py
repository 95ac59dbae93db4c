"""``python -m bench gpu-check`` without a GPU: its CPU path (every check skipped, named, and the
summaries written), a check that raises recorded while the others run, the bounds' comparisons,
the commands it would run, and its plumbing (children, budget, the reader, TensorBoard's REST API)
on CPU runs. What needs a GPU is listed in docs/gpu/README.md."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.__main__ import main as bench_main
from bench.commands import gpu_check as gc
from bench.commands import gpu_measure, gpu_record, gpu_suite
from bench.commands.gpu_record import (Bound, Reading, Record, above, at_least, equal, listing, relative_difference,
                                       show, status_of, strictly_between, within)
from bench.schema.case import Case
from tests.helpers import ROOT

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the checks measure")
CPU_CASE = Case(phase="train_step", model="fashion_mlp", optimizer="adam", device="cpu", mode="eager")


# --- the CPU path -----------------------------------------------------------------------------

@no_cuda
def test_without_cuda_every_check_skips_naming_itself_and_the_summaries_are_written(tmp_path, capsys):
    out = tmp_path / "gpu"
    assert gc.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    names = [c.name for c in gc.CHECKS]
    for name in names:
        assert f"[{name}] skipped: no CUDA: torch {torch.__version__}" in printed
    data = json.loads((out / gpu_record.JSON_NAME).read_text(encoding="utf-8"))
    assert data["cuda"] is False and data["pending"] == []
    assert data["summary"] == f"no CUDA: {len(names)} checks skipped"
    assert [(c["check"], c["status"]) for c in data["checks"]] == [(n, "skip") for n in names]
    assert all("torch.cuda.is_available() is False" in c["note"] for c in data["checks"])
    markdown = (out / gpu_record.MARKDOWN_NAME).read_text(encoding="utf-8")
    assert f"**no CUDA: {len(names)} checks skipped**" in markdown
    assert all(f"| {n} | skip | | no CUDA: " in markdown for n in names)
    # Only the two summaries: no temporary file left behind, nothing measured.
    assert sorted(p.name for p in out.iterdir()) == sorted([gpu_record.JSON_NAME, gpu_record.MARKDOWN_NAME])


@no_cuda
def test_require_cuda_exits_2_without_cuda_and_writes_nothing(tmp_path, capsys):
    assert bench_main(["gpu-check", "--require-cuda", "--out", str(tmp_path / "gpu")]) == 2
    assert "--require-cuda: torch" in capsys.readouterr().err
    assert not (tmp_path / "gpu").exists()


@pytest.mark.parametrize("argv, message", [
    (["--checks", "timing,nope"], "unknown check 'nope' for --checks; valid choices: timing, memory"),
    (["--budget-s", "0"], "expected positive seconds"),
])
def test_bad_input_exits_2_naming_the_value(argv, message, tmp_path, capsys):
    assert gc.main([*argv, "--out", str(tmp_path / "gpu")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "gpu").exists()


def test_a_folder_that_is_not_empty_is_refused(tmp_path, capsys):
    (tmp_path / "old.json").write_text("{}")
    assert gc.main(["--out", str(tmp_path), "--checks", "peak"]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.slow
def test_list_prints_each_check_its_bound_and_the_commands_without_running_them(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "gpu-check", "--list"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for check in gc.CHECKS:
        assert f"{check.name}: {check.title}\n    bound: {check.bounds}" in proc.stdout
    assert "within ±5%" in proc.stdout and "within ±1%" in proc.stdout
    assert "python -m pytest --preset smoke --models fashion_mlp,lenet,gpt2_124m" in proc.stdout
    assert "python -m bench tune fashion_mlp --phase train_step --batch-size 64 --device cuda" in proc.stdout
    assert "reads run core (above)" in proc.stdout
    assert not (ROOT / "OUT").exists()


@pytest.mark.slow
def test_the_nox_session_runs_the_command_and_exits_with_its_status(tmp_path):
    pytest.importorskip("nox", reason="nox is not installed (pip install -e .[test])")
    session = [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "--no-venv", "-s", "gpu-check", "--"]
    refused = subprocess.run([*session, "--checks", "nope"], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "unknown check 'nope' for --checks" in refused.stderr
    listed = subprocess.run([*session, "--list"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "timing: the suite's CUDA medians agree" in listed.stdout + listed.stderr


# --- one check's failure never stops the others ------------------------------------------------

def fake_context(tmp_path: Path, cuda: bool = True) -> gc.Context:
    runs = gpu_suite.Runs(work=tmp_path / "work", deadline=1e12, max_time=0.1)
    return gc.Context(runs=runs, cuda=cuda, no_cuda="" if cuda else "planted: no GPU here")


def planted(name: str, measure) -> gc.Check:
    return gc.Check(name, f"planted {name}", "planted bound", measure, needs_cuda=False)


def raising(ctx: gc.Context) -> gc.Found:
    raise RuntimeError("planted failure")


def passing(ctx: gc.Context) -> gc.Found:
    return [Reading("case", "difference", 0.01, "rel", within(0.05))], "fine"


def failing(ctx: gc.Context) -> gc.Found:
    return [Reading("case", "difference", 0.06, "rel", within(0.05))], "too far"


def over_budget(ctx: gc.Context) -> gc.Found:
    raise gpu_suite.BudgetSkip("3 s of the budget left; run 'x' needs about 60 s")


def test_a_check_that_raises_is_an_error_and_the_others_still_run(tmp_path, capsys):
    checks = [planted("boom", raising), planted("fine", passing), planted("far", failing),
              planted("late", over_budget)]
    meta = dict(started_at="now", cuda=True, environment={"torch": "planted"})
    records = gc.run_checks(checks, fake_context(tmp_path), tmp_path, meta)
    assert [(r.check, r.status) for r in records] == [("boom", "error"), ("fine", "pass"), ("far", "fail"),
                                                       ("late", "skip")]
    assert records[0].note.startswith("RuntimeError: planted failure")
    assert records[3].note.startswith("budget: 3 s of the budget left")
    data = json.loads((tmp_path / gpu_record.JSON_NAME).read_text(encoding="utf-8"))
    assert [c["status"] for c in data["checks"]] == ["error", "pass", "fail", "skip"]
    assert data["summary"] == "1 passed, 1 failed, 1 error, 1 skipped"
    far = data["checks"][2]["figures"][0]
    assert far["ok"] is False and far["bound"] == "within ±5%" and far["shown"] == "+6.00%"
    printed = capsys.readouterr().out
    assert "[boom] error" in printed and "case: difference: +6.00%   bound: within ±5% FAIL" in printed


def test_a_case_that_cannot_be_had_is_one_reading_and_the_other_cases_are_read():
    def read(case: Case) -> list[Reading]:
        if case.model == "lenet":
            raise gc.CaseFailed("train_step[lenet-adam-cuda-eager-b64]: oom: CUDA out of memory")
        return [Reading(case.id, "difference", 0.0, "rel", within(0.05))]

    readings = gc.per_case((gc.FASHION, gc.LENET, gc.GPT2), read)
    assert [r.case for r in readings] == [gc.FASHION.id, gc.LENET.id, gc.GPT2.id]
    assert readings[1].error.startswith("CaseFailed: train_step[lenet") and readings[1].ok is None
    assert status_of(readings) == "error"


def test_a_row_that_was_not_measured_raises_with_its_status_and_error():
    with pytest.raises(gc.CaseFailed, match="oom: CUDA out of memory"):
        gc.measured_row({"case_id": "x", "status": "oom", "error": "CUDA out of memory"})
    assert gc.measured_row({"case_id": "x", "status": "wrong_result"}, allowed=("wrong_result",))["status"]


def test_without_cuda_the_context_skips_every_cuda_check_before_it_measures(tmp_path):
    record = gc.run_check(gc.CHECKS[0], fake_context(tmp_path, cuda=False))
    assert record.status == "skip" and record.note == "no CUDA: planted: no GPU here"
    assert not (tmp_path / "work").exists()


# --- the bounds: pure comparisons, each end tested --------------------------------------------

@pytest.mark.parametrize("value, reference, holds", [
    (105.0, 100.0, True), (95.0, 100.0, True),  # exactly 5% either way is within ±5%
    (104.9, 100.0, True), (95.1, 100.0, True), (100.0, 100.0, True),
    (105.1, 100.0, False), (94.9, 100.0, False),  # the lower side counts: |difference|, not difference
    (None, 100.0, False), (100.0, None, False), (100.0, 0.0, False),
])
def test_agreement_within_5_percent(value, reference, holds):
    assert within(0.05).holds(relative_difference(value, reference)) is holds


@pytest.mark.parametrize("value, reference, holds", [
    (1010, 1000, True), (990, 1000, True), (1000, 1000, True),
    (1011, 1000, False), (989, 1000, False), (2000, 1000, False),
])
def test_memory_within_1_percent(value, reference, holds):
    assert within(0.01).holds(relative_difference(value, reference)) is holds


@pytest.mark.parametrize("share, holds", [
    (0.30, False), (0.3001, True), (0.5, True), (0.9999, True), (1.0, False), (1.2, False), (0.1, False),
    (float("nan"), False), (None, False),
])
def test_peak_share_strictly_between_30_and_100_percent(share, holds):
    assert strictly_between(0.30, 1.00).holds(share) is holds


def test_a_speedup_above_1_with_its_whole_interval():
    bound = above(1.0, "above 1× with its 95% interval", whole_interval=True)
    assert bound.holds(1.5, (1.1, 2.0))
    assert not bound.holds(1.5, (0.9, 2.0))  # the interval reaches below 1: not shown faster
    assert not bound.holds(1.0, (1.0, 1.0))  # above, not at
    assert bound.holds(1.5, None)  # no interval: the value alone


def test_at_least_equal_and_listing():
    assert at_least(3.0, "goal").holds(3.0) and not at_least(3.0, "goal").holds(2.999)
    assert equal(True).holds(True) and not equal(True).holds(False) and not equal(True).holds(None)
    assert equal(False).holds(False)  # a required False is a value, not "no requirement"
    assert equal("GPU").holds("GPU") and not equal("GPU").holds("CPU")
    assert listing("Kernel").holds(["Overview", "Operator", "Kernel", "Trace"])
    assert not listing("Kernel").holds(["Overview", "Operator", "Trace"]) and not listing("Kernel").holds(None)
    assert not Bound("numbers", low=0.0).holds("not a number")


def test_a_reading_without_a_bound_is_reported_not_judged():
    assert Reading("c", "median", 1e-3, "s").ok is None
    assert Reading("c", "share", None, "share", strictly_between(0.3, 1.0)).ok is False  # missing: breaks it
    assert Reading("c", "share", 0.5, "share", strictly_between(0.3, 1.0), error="boom").ok is None


def test_status_from_readings():
    ok = Reading("c", "a", 0.0, "rel", within(0.05))
    bad = Reading("c", "b", 0.5, "rel", within(0.05))
    broken = Reading("c", "c", error="raised")
    skipped = Reading("c", "d", skipped="budget")
    assert status_of([ok]) == "pass" and status_of([ok, bad]) == "fail"
    assert status_of([ok, bad, broken]) == "error" and status_of([skipped]) == "skip"
    assert status_of([ok, skipped]) == "pass" and status_of([]) == "skip"


def test_figures_read_with_their_units():
    assert show(0.00015, "s") == "150 µs" and show(0.0123, "s") == "12.3 ms" and show(2.5, "s") == "2.5 s"
    assert show(0.05, "rel") == "+5.00%" and show(-0.012, "rel") == "-1.20%" and show(0.456, "share") == "45.6%"
    assert show(3.4, "x", (3.3, 3.5)) == "3.40× (3.30× – 3.50×)" and show(7.9e14, "flop/s") == "790.0 TFLOP/s"
    assert show(2 * 2**20, "bytes") == "2,097,152 B (2.0 MiB)" and show(None, "s") == "-"
    assert show(math.nan, "s") == "-" and show(["Overview", "Kernel"], "text") == "Overview, Kernel"
    assert show(True, "flag") == "True" and show(12.0, "count") == "12" and show(12.5, "count") == "12.5"


# --- the summaries are written atomically -----------------------------------------------------

def test_a_failed_write_leaves_the_last_summary_whole_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "gpu-check.json"
    gpu_record.write_atomic(path, '{"old": 1}')

    def broken(src, dst):
        raise OSError("disk full (planted)")

    monkeypatch.setattr(gpu_record.os, "replace", broken)
    with pytest.raises(OSError, match="planted"):
        gpu_record.write_atomic(path, '{"new": 2}')
    assert path.read_text() == '{"old": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["gpu-check.json"]


def test_the_markdown_escapes_cells_and_names_pending_checks(tmp_path):
    record = Record("tensorboard", "pass", [Reading("run", "views", ["A|B"], "text", listing("A|B"))], "a\nb")
    meta = dict(started_at="2026-11-24 10:00 UTC", cuda=True, environment={"GPU": "NVIDIA H100 80GB HBM3"})
    text = gpu_record.summary_markdown([record], meta, pending=["nccl", "mfu"])
    assert "**1 passed** (not yet run: nccl, mfu)" in text
    assert "| | | run | views | A\\|B | lists 'A\\|B' | ok |" in text
    assert "- **tensorboard** (pass, 0 s): a" in text


# --- the commands it runs select what the checks read ----------------------------------------

def test_each_selection_holds_its_cases_and_spells_the_axes_pytest_takes():
    from bench.matrix import select as matrix

    for selection in gc.SELECTIONS:
        args = gpu_suite.selection_args(selection.cases)
        axes = dict(zip(args[2::2], args[3::2]))
        overrides = {flag[2:].replace("-", "_"): matrix.parse_axis(flag[2:].replace("-", "_"), value)
                     for flag, value in axes.items()}
        selected = set(matrix.select("smoke", **overrides))
        missing = [c.id for c in selection.cases if c not in selected]
        assert not missing, (selection.name, args, missing)


@pytest.mark.slow
@pytest.mark.parametrize("selection", gc.SELECTIONS, ids=lambda s: s.name)
def test_pytest_collects_every_case_of_each_selection_in_its_order(selection, tmp_path):
    """The command exactly as the check runs it, collected only: CUDA cases collect without a GPU."""
    command = selection.command(tmp_path / "run", 0.5) + ["--collect-only", "-q"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert collected == [gpu_suite.node_id(c) for c in selection.cases]


def test_cases_the_model_defaults_cannot_share_a_run():
    with pytest.raises(ValueError, match="separate runs"):
        gpu_suite.selection_args([gc.RESNET, gc.FASHION])


def test_the_tune_run_has_the_seed_and_every_compile_mode_the_compile_check_reads():
    from bench.commands import tune

    args = tune.parser().parse_args(list(gc.TUNE.args))
    grid = tune.build_grid(tune.check(args), quick=args.quick)
    ids = {c.id for c in grid.cases}
    assert grid.seed.id == gc.TUNE.seed
    for mode in ("default", "reduce-overhead", "max-autotune"):
        assert replace(gc.FASHION, mode="compile", compile_mode=mode).id in ids


def test_a_run_that_cannot_finish_in_the_budget_left_is_skipped_before_it_starts(tmp_path):
    now = [0.0]
    runs = gpu_suite.Runs(work=tmp_path, deadline=60.0, max_time=0.1, clock=lambda: now[0])
    with pytest.raises(gpu_suite.BudgetSkip, match="60 s of the budget left; run 'core' needs about 100 s"):
        runs.suite(gc.CORE)
    assert not list(tmp_path.iterdir())


def test_a_child_past_its_time_is_interrupted_then_killed(tmp_path):
    command = [sys.executable, "-c", "import time\nprint('started', flush=True)\ntime.sleep(60)"]
    returncode, stopped, elapsed = gpu_suite.run_child(command, tmp_path / "child.log", timeout_s=2.0)
    assert stopped and returncode is not None and returncode != 0
    assert elapsed < 30  # SIGINT ended it: no wait for the sleep
    assert "started" in (tmp_path / "child.log").read_text()


def test_cuda_event_rounds_divide_each_round_by_its_calls():
    calls, ticks = [], iter([0.010, 0.012, 0.011])

    def clock(body) -> float:
        body()
        return next(ticks)

    times = gpu_measure.round_times(lambda: calls.append(1), rounds=3, iterations=5, clock=clock)
    assert times == pytest.approx([0.002, 0.0024, 0.0022]) and len(calls) == 15
    assert gpu_measure.rounds_for(1e-6, 1) == gpu_measure.MAX_ROUNDS
    assert gpu_measure.rounds_for(1.0, 1) == gpu_measure.MIN_ROUNDS
    assert gpu_measure.rounds_for(0.01, 2) == 50  # 1 s of rounds of 2 calls of 10 ms
    assert gpu_measure.block_calls(150e-6) == gpu_measure.BLOCK_CALLS and gpu_measure.block_calls(0.03) == 9


# --- the plumbing on CPU runs: the same code as on the GPU, other cases ------------------------

@pytest.fixture(scope="module")
def cpu_measured(tmp_path_factory):
    """A CPU selection run and read as the checks run theirs: --profile, a seed, the traces."""
    other = replace(CPU_CASE, optimizer="sgd")
    selection = gpu_suite.Selection("cpu", (CPU_CASE, other), extra=("--profile", "--benchmark-min-rounds=3"),
                                    traces=True, seeds=(CPU_CASE.id,), estimate_s=1)
    runs = gpu_suite.Runs(work=tmp_path_factory.mktemp("gpu-check") / "work", deadline=1e12, max_time=0.05)
    return runs.suite(selection), other


@pytest.mark.slow
def test_a_selection_runs_as_a_child_and_is_read_back_by_the_reports(cpu_measured):
    measured, other = cpu_measured
    assert measured.returncode == 0 and not measured.timed_out, gpu_suite.log_tail(measured.log)
    row = gc.measured_row(measured.row(CPU_CASE.id))
    assert row["median_s"] > 0 and row["iterations"] >= 1 and row["mem_peak_bytes"] > 0
    assert "times_s" not in row  # the rounds stay in the run folder
    found = measured.speedup(CPU_CASE.id, other.id)
    assert found["speedup"] > 0 and found["low"] <= found["high"]
    with pytest.raises(gpu_suite.RunFailed, match="no row"):
        measured.row("train_step[nope]")


@pytest.mark.slow
def test_the_profiled_cases_breakdown_is_read_from_their_traces(cpu_measured):
    measured, _ = cpu_measured
    found = measured.read["breakdowns"][CPU_CASE.id]
    assert found["steps"] == 3 and "kernel" not in found["parts"]  # CPU: host parts only
    shares = [p["share"] for p in found["parts"].values() if p["lane"] == "host"]
    assert sum(shares) == pytest.approx(1.0)


@pytest.mark.slow
def test_tensorboards_views_are_listed_over_its_rest_api(cpu_measured, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e .[profile])")
    pytest.importorskip("torch_tb_profiler", reason="torch-tb-profiler is not installed (pip install -e .[profile])")
    from bench.passes.profiling import trace_folder_name

    measured, _ = cpu_measured
    run = f"traces/{trace_folder_name(CPU_CASE.id)}"
    found = gpu_suite.tensorboard_views(measured.run_dir, [run], tmp_path / "viewer.log", timeout_s=240)
    views = found[run]
    assert {"Overview", "Operator", "Trace"} <= set(views["views"]) and "Kernel" not in views["views"]
    assert views["device_type"] == "CPU" and views["kernel_rows"] == 0
    assert listing("Kernel").holds(views["views"]) is False  # what the GPU check would call a failure


# --- each check's reading of the suite's rows, on planted rows --------------------------------

def planted_row(case: Case, **figures) -> dict:
    row = dict(case_id=case.id, status="ok", median_s=1e-3, median_ci_low_s=0.99e-3, median_ci_high_s=1.01e-3,
               iterations=1, mem_peak_bytes=1_005_000, mem_held_bytes=500_000, first_call_s=0.5)
    return {**row, **figures}


class Planted(gc.Context):
    """A context whose runs and measurements are planted: the checks' logic without a GPU."""

    def __init__(self, tmp_path: Path, rows: list[dict], probe_s: float = 1.03e-3, **read) -> None:
        super().__init__(runs=gpu_suite.Runs(work=tmp_path, deadline=1e12, max_time=0.1), cuda=True)
        self.planted = gpu_suite.Measured("planted", ["python", "-m", "pytest"], tmp_path, tmp_path / "log", 0,
                                          False, 1.0, read=dict(rows=rows, **read))
        self.probe_s = probe_s
        self.runs.tune = lambda tune: self.planted

    def measured(self, case: Case) -> gpu_suite.Measured:
        return self.planted

    def probe(self, case: Case, row: dict) -> gpu_measure.StepProbe:
        return gpu_measure.StepProbe(case.id, self.probe_s, 20, 1, self.probe_s * 0.9, 50, 500_000, 1_000_000)

    def matmul(self, dtype: str, tf32: bool) -> float:
        return {("bfloat16", False): 790e12, ("float32", True): 380e12, ("float32", False): 50e12}[dtype, tf32]


def statuses(found: gc.Found) -> list[tuple[str, str, bool | None]]:
    return [(r.case, r.name, r.ok) for r in found[0] if r.bound]


def test_timing_and_memory_compare_the_suites_rows_with_this_process(tmp_path):
    ctx = Planted(tmp_path, [planted_row(c) for c in gc.TIMED])
    timing, memory = gc.check_timing(ctx), gc.check_memory(ctx)
    assert status_of(timing[0]) == "pass" and status_of(memory[0]) == "pass"
    assert [r.value for r in timing[0] if r.name == "suite vs CUDA events"] == pytest.approx([1 / 1.03 - 1] * 4)
    assert [r.value for r in memory[0] if r.name == "suite vs here"] == pytest.approx([0.005] * 4)
    slower = Planted(tmp_path, [planted_row(c) for c in gc.TIMED], probe_s=1.1e-3)
    assert status_of(gc.check_timing(slower)[0]) == "fail"


def test_a_case_missing_from_the_run_is_an_error_of_that_case_only(tmp_path):
    ctx = Planted(tmp_path, [planted_row(c) for c in gc.TIMED if c != gc.GPT2])
    readings, _ = gc.check_timing(ctx)
    errors = [r for r in readings if r.error]
    assert [r.case for r in errors] == [gc.GPT2.id] and "no row" in errors[0].error
    assert len([r for r in readings if r.ok]) == 3


def test_peak_shares_use_the_suites_data_sheet(tmp_path, monkeypatch):
    ctx = Planted(tmp_path, [])
    monkeypatch.setattr(gc, "gpu_name", lambda: "NVIDIA H100 80GB HBM3")
    readings, note = gc.check_peak(ctx)
    shares = [r.value for r in readings if r.name == "share of peak"]
    assert shares == pytest.approx([790 / 989.4, 380 / 494.7, 50 / 66.9]) and status_of(readings) == "pass"
    monkeypatch.setattr(gc, "gpu_name", lambda: "NVIDIA Z9000")
    readings, _ = gc.check_peak(ctx)
    assert status_of(readings) == "fail" and "'NVIDIA Z9000' is not in GPU_PEAKS" in readings[1].note


def test_tf32_needs_the_whole_interval_above_1(tmp_path):
    rows = [planted_row(gc.TF32_OFF, median_s=3e-3), planted_row(gc.TF32_ON)]
    faster = {gc.TF32_OFF.id: [dict(case_id=gc.TF32_ON.id, speedup=3.0, low=2.9, high=3.1)]}
    assert status_of(gc.check_tf32(Planted(tmp_path, rows, speedups=faster))[0]) == "pass"
    unclear = {gc.TF32_OFF.id: [dict(case_id=gc.TF32_ON.id, speedup=1.02, low=0.97, high=1.08)]}
    readings, _ = gc.check_tf32(Planted(tmp_path, rows, speedups=unclear))
    assert ("train_step[fashion_mlp-adam-cuda-eager-b8192-tf32]", "speedup with TF32 on", False) in statuses(
        (readings, ""))


def test_profiling_reads_launches_and_the_device_shares(tmp_path):
    parts = {"kernel": dict(lane="device", share=0.2), "idle": dict(lane="device", share=0.8),
             "launch overhead": dict(lane="device", share=0.6)}
    rows = [planted_row(c, kernel_launches_per_step=41.0, op_calls_per_step=120.0) for c in gc.PROFILED.cases]
    ctx = Planted(tmp_path, rows, breakdowns={c.id: dict(steps=3, parts=parts) for c in gc.PROFILED.cases})
    assert status_of(gc.check_profiling(ctx)[0]) == "pass"
    cpu_only = Planted(tmp_path, rows, breakdowns={c.id: dict(steps=3, parts={}) for c in gc.PROFILED.cases})
    assert status_of(gc.check_profiling(cpu_only)[0]) == "fail"  # no kernels in the trace


def test_mfu_and_nccl_bounds(tmp_path):
    mfu = Planted(tmp_path, [planted_row(gc.GPT2_COMPILED, tokens_per_s=4.1e5, peak_share=0.45, mfu_estimate=0.41,
                                         correct=True, compile_time_s=60.0, peak_source="data sheet")])
    assert status_of(gc.check_mfu(mfu)[0]) == "pass"
    over = Planted(tmp_path, [planted_row(gc.GPT2_COMPILED, peak_share=1.3, mfu_estimate=0.41, correct=True)])
    assert status_of(gc.check_mfu(over)[0]) == "fail"  # above 100%: a wrong peak or FLOP count
    ddp = Planted(tmp_path, [planted_row(gc.DDP1, allreduce_s=2e-5, ranks_in_sync=True)])
    readings, _ = gc.check_nccl(ddp)
    assert [r.ok for r in readings if r.name == "all-reduce of the gradients' size"] == [True]


def test_compile_and_tune_read_the_tune_run(tmp_path):
    compiled = [replace(gc.FASHION, mode="compile", compile_mode=m) for m in ("default", "reduce-overhead",
                                                                            "max-autotune")]
    rows = [planted_row(gc.FASHION, median_s=6e-4)] + [planted_row(c, correct=True, max_abs_error=1e-6)
                                                       for c in compiled]
    rows[-1] = planted_row(compiled[-1], status="wrong_result", correct=False, error="off by 0.3")
    speedups = {gc.TUNE.seed: [dict(case_id=gc.FASHION.id, speedup=1.0, low=0.98, high=1.02),
                               dict(case_id=compiled[1].id, speedup=3.4, low=3.3, high=3.5),
                               dict(case_id=compiled[0].id, speedup=1.5, low=1.4, high=1.6)]}
    ctx = Planted(tmp_path, rows, speedups=speedups)
    readings, _ = gc.check_compile(ctx)
    assert [(r.case, r.ok) for r in readings if r.bound] == [(c.id, c != compiled[-1]) for c in compiled]
    assert status_of(readings) == "fail"
    readings, note = gc.check_tune(ctx)
    assert readings[2].value == compiled[1].id and readings[3].ok is True and note.startswith("goal of 3× reached")
    slow = Planted(tmp_path, rows, speedups={gc.TUNE.seed: speedups[gc.TUNE.seed][::2]})
    readings, note = gc.check_tune(slow)
    assert readings[3].ok is False and note.startswith("goal of 3× not reached")


def test_every_row_field_the_checks_read_is_a_declared_figure():
    import re

    import reports.schema
    from bench.schema.case import ROW_FIELDS

    source = (ROOT / "bench" / "commands" / "gpu_check.py").read_text(encoding="utf-8")
    read = set(re.findall(r"""\b(?:row|off|on)(?:\.get\(|\[)['"](\w+)['"]""", source))
    assert {"median_s", "mem_peak_bytes", "allreduce_s", "peak_share", "kernel_launches_per_step"} <= read
    assert not read - set(reports.schema.names()) - set(ROW_FIELDS), read - set(reports.schema.names())


def test_the_probe_runs_the_cases_own_step_warmed_up_then_timed(monkeypatch):
    """probe_step on a CPU case with torch.cuda's counters and events planted: the flow, not the GPU."""
    calls = []
    for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: 1_000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 5_000)

    def clock(body) -> float:
        calls.append(1)
        body()
        return 0.004

    monkeypatch.setattr(gpu_measure, "event_clock", clock)
    # Few rounds: the flow is what is tested, and a CPU step is slow.
    monkeypatch.setattr(gpu_measure, "MIN_ROUNDS", 3)
    monkeypatch.setattr(gpu_measure, "BLOCK_CALLS", 2)
    monkeypatch.setattr(gpu_measure, "BLOCK_ROUNDS", 2)
    probe = gpu_measure.probe_step(CPU_CASE, iterations=2, suite_median_s=0.5)
    assert probe.case_id == CPU_CASE.id and probe.held_bytes == 1_000 and probe.peak_bytes == 5_000
    assert probe.event_rounds == gpu_measure.MIN_ROUNDS and probe.event_median_s == pytest.approx(0.002)
    assert probe.block_calls == 1 and probe.blocked_median_s == pytest.approx(0.004)  # a 0.5 s step: 1 a round
    assert len(calls) == gpu_measure.MIN_ROUNDS + gpu_measure.BLOCK_ROUNDS
