"""Profiler traces read offline (issue 14): the step breakdown, the timeline in report.html, the
trace diff and its place in gate.md, and bad input. Real traces come from two short profiled
runs of one small model (``tests/trace_plant.py``), the current one with a planted slow
operator; the GPU parts are checked on a synthetic GPU-style trace (no GPU here)."""

from __future__ import annotations

import base64
import functools
import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
import torch

from bench.schema.case import Case
from bench.passes.profiling import FORWARD_LABEL, TIMED_LABEL, ProfileConfig, capture, trace_folder_name
from bench.workloads.build import build_step
from reports.__main__ import main as reports_main
from reports.traces import case_trace, read_trace
from reports.traces.breakdown import breakdown, read_cases, timeline, wide
from reports.traces.diff import case_diff, diff_markdown, gate_traces, op_table, trace_diff
from reports.traces.events import Trace, self_times
from reports.traces.profile import load_profile
from tests.browser import is_blank, open_page
from tests.helpers import ROOT, Run, run_bench
from tests.test_light_env import NO_TORCH

TRAIN = "train_step[slow_op_mlp-sgd-cpu-eager-b64]"
EPOCH = "epoch[slow_op_mlp-sgd-cpu-eager-b64]"
PLANTED = "aten::_cdist_forward"  # torch.cdist with p=1 does its work in this operator
# 256 synthetic images in batches of 64: an epoch is 4 steps of the seed's loop.
PROFILED = ["--model-module", "tests.trace_plant", "--models", "slow_op_mlp", "--phases", "train_step,epoch",
            "--optimizers", "sgd", "--modes", "eager", "--data-size", "256", "--epochs", "2", "--profile"]


class Runs(NamedTuple):
    base: Run
    current: Run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The same selection profiled twice; the current run's model also runs torch.cdist."""
    cache = {"BLITZBENCH_DATA_CACHE": str(tmp_path_factory.mktemp("data-cache"))}
    base = run_bench(tmp_path_factory.mktemp("base"), *PROFILED, env=cache)
    current = run_bench(tmp_path_factory.mktemp("current"), *PROFILED, env={**cache, "BLITZBENCH_SLOW_OP": "1"})
    for run in (base, current):
        assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    return Runs(base, current)


def real_trace(run: Run, case_id: str) -> dict:
    return read_case_trace(run.run_dir / "traces" / trace_folder_name(case_id))


@functools.lru_cache(maxsize=None)
def read_case_trace(folder: Path) -> dict:
    """Read once: the epoch's trace is about 1 MB of gzipped JSON (the tests only read it)."""
    return read_trace(case_trace(folder))


def cli(*args: str) -> int:
    return reports_main([str(a) for a in args])


# --- the step breakdown ------------------------------------------------------------------


@pytest.mark.slow
def test_real_traces_split_each_step_into_shares_that_sum_to_one(runs):
    for case_id in (TRAIN, EPOCH):
        shares = breakdown(real_trace(runs.base, case_id)).set_index("part")
        assert set(shares["lane"]) == {"host"}  # a CPU case: no device parts
        assert shares["share"].sum() == pytest.approx(1.0, abs=1e-9)
        assert shares["seconds_per_step"].sum() > 0
        for part in ("forward", "backward", "optimizer"):
            assert shares.loc[part, "share"] > 0, (case_id, part)
    train = breakdown(real_trace(runs.base, TRAIN)).set_index("part")
    assert "data loading" not in train.index  # train_step works on a made batch
    epoch = breakdown(real_trace(runs.base, EPOCH)).set_index("part")
    assert epoch.loc["data loading", "share"] > 0  # the seed's loop waits for its DataLoader


@pytest.mark.slow
def test_forward_is_labelled_in_the_trace_but_not_counted_as_an_operator(runs):
    trace = real_trace(runs.base, TRAIN)
    labels = [e["name"] for e in trace["traceEvents"] if e.get("cat") == "user_annotation"]
    assert labels.count(TIMED_LABEL) == 3  # three active steps...
    assert labels.count(FORWARD_LABEL) == 2 * 3  # ...each with the model's call and the loss
    profile = load_profile(runs.base.run_dir)
    assert FORWARD_LABEL not in set(profile["name"])  # a container, like the step's own label


@pytest.mark.slow
def test_timeline_has_one_step_of_top_level_spans_named_by_phase(runs):
    spans = timeline(real_trace(runs.base, EPOCH))
    assert set(spans["lane"]) == {"main thread"}
    assert {"forward", "backward", "optimizer", "data loading"} <= set(spans["phase"])
    # One step of the seed's loop: 4 batches, each loaded, run forward (model and loss) and stepped.
    assert (spans["phase"] == "data loading").sum() >= 4
    assert (spans["name"] == FORWARD_LABEL).sum() == 2 * 4
    assert spans["start_s"].min() >= 0
    ordered = spans.sort_values("start_s")
    assert (ordered["start_s"].iloc[1:].to_numpy() >= (ordered["start_s"] + ordered["dur_s"]).iloc[:-1].to_numpy()
            - 1e-9).all()  # top level: no span inside another


@pytest.mark.slow
def test_report_shows_the_breakdown_and_a_timeline_per_case(runs, tmp_path):
    run_dir = runs.base.run_dir
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    profiles = markdown[markdown.index("## Profiles"):]
    table = profiles[profiles.index("### Where a step goes"):].split("###")[1]
    assert "| forward" in table and "| data loading" in table and "| other" in table
    for case_id in (TRAIN, EPOCH):
        row = next(line for line in table.splitlines() if line.startswith(f"| {case_id}"))
        shares = [float(v) for v in re.findall(r"([\d.]+)%", row)]
        assert sum(shares) == pytest.approx(100, abs=0.3)  # rounded to 0.1% each
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="profiles"'):]
    section = section[:section.index("</section>")]
    timelines = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="Timeline of one profiled step of ([^:"]+)',
                           section)
    assert sorted(case for _, case in timelines) == sorted([EPOCH, TRAIN])
    image = tmp_path / "timeline.png"
    image.write_bytes(base64.b64decode(timelines[0][0]))
    assert not is_blank(image)
    shot = tmp_path / "profiles.png"
    with open_page((run_dir / "report.html").as_uri()) as (page, errors):
        page.locator("#profiles").screenshot(path=str(shot))
        sizes = page.evaluate("Array.from(document.querySelectorAll('#profiles img')).map(i => i.naturalWidth)")
    assert errors.all == []  # offline: nothing fetched, nothing failed
    assert len(sizes) == 2 and all(w > 0 for w in sizes)
    assert not is_blank(shot)


# --- the trace diff --------------------------------------------------------------------------


@pytest.mark.slow
def test_planted_slow_operator_tops_the_diff(runs):
    diff = trace_diff(runs.base.run_dir, runs.current.run_dir)
    assert list(dict.fromkeys(diff["case_id"])) == [TRAIN, EPOCH]
    for case_id, calls in ((TRAIN, 1.0), (EPOCH, 4.0)):  # once per forward: 1 per step, 4 per epoch
        top = diff[diff["case_id"] == case_id].iloc[0]
        assert top["name"] == PLANTED
        assert (top["calls_base"], top["calls_current"]) == (0.0, calls)
        assert top["self_change_s"] > 0
    # Calls per step are exact: the unplanted operators' counts are equal on both sides.
    train = diff[diff["case_id"] == TRAIN].set_index("name")
    assert train.loc["aten::addmm", "calls_change"] == 0 and train.loc["aten::addmm", "calls_base"] == 2


@pytest.mark.slow
def test_trace_diff_command_prints_and_writes_the_diff(runs, tmp_path, capsys):
    out = tmp_path / "diff.md"
    assert cli("trace-diff", runs.base.run_dir, runs.current.run_dir, "--cases", "train_step[*]",
               "--top", "3", "--output", out) == 0
    text = out.read_text(encoding="utf-8")
    assert text in capsys.readouterr().out
    assert f"## `{TRAIN}`" in text and EPOCH not in text
    first_row = text[text.index("| operator"):].splitlines()[2]
    assert first_row.startswith(f"| `{PLANTED}` (new)")


@pytest.mark.slow
def test_trace_diff_runs_without_torch(runs):
    code = (NO_TORCH + "import runpy\n"
            f"sys.argv = ['reports', 'trace-diff', {str(runs.base.run_dir)!r}, {str(runs.current.run_dir)!r}]\n"
            "try:\n    runpy.run_module('reports', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert PLANTED in proc.stdout


@pytest.mark.slow
def test_gate_md_says_where_a_flagged_case_changed(runs, tmp_path):
    # The planted operator changes operator calls per step, a deterministic figure: flagged.
    status = cli("gate", runs.base.run_dir, runs.current.run_dir, "--output", tmp_path)
    assert status == 1
    gate = (tmp_path / "gate.md").read_text(encoding="utf-8")
    traces = gate[gate.index("### Where the flagged cases changed (profiler traces)"):]
    for case_id in (TRAIN, EPOCH):
        assert f"#### `{case_id}`" in traces
        first_row = traces[traces.index(f"#### `{case_id}`"):].split("| operator", 1)[1].splitlines()[2]
        assert first_row.startswith(f"| `{PLANTED}` (new)")


@pytest.mark.slow
def test_gate_has_no_trace_section_unless_both_sides_were_profiled(runs, tmp_path):
    unprofiled = copy_run(runs.base, tmp_path)
    shutil.rmtree(unprofiled / "traces")
    (unprofiled / "profile.jsonl").unlink()
    assert gate_traces([unprofiled], [runs.current.run_dir], [TRAIN]) is None
    assert gate_traces([runs.base.run_dir], [runs.current.run_dir], []) is None  # nothing flagged
    found = gate_traces([tmp_path / "no-such-run", runs.base.run_dir], [runs.current.run_dir / "benchmark.json"],
                        [TRAIN])  # a side's first profiled run; a results file stands for its folder
    assert found is not None and found.note is None and set(found.diff["case_id"]) == {TRAIN}


# --- bad input -------------------------------------------------------------------------------


def copy_run(run: Run, where: Path) -> Path:
    return shutil.copytree(run.run_dir, where / run.run_dir.name)


@pytest.mark.slow
def test_a_run_without_traces_is_refused_naming_it(runs, tmp_path, capsys):
    unprofiled = tmp_path / "unprofiled"
    unprofiled.mkdir()
    (unprofiled / "cases.jsonl").write_text("")
    assert cli("trace-diff", unprofiled, runs.current.run_dir) == 2
    err = capsys.readouterr().err
    assert f"{unprofiled}: no profiler traces" in err and "Traceback" not in err
    assert cli("trace-diff", tmp_path / "missing", runs.current.run_dir) == 2
    assert f"{tmp_path / 'missing'}: no such run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_trace_missing_on_one_side_is_refused_naming_the_folder(runs, tmp_path, capsys):
    current = copy_run(runs.current, tmp_path)
    folder = current / "traces" / trace_folder_name(EPOCH)
    for trace in folder.iterdir():
        trace.unlink()
    assert cli("trace-diff", runs.base.run_dir, current) == 2
    assert f"{folder}: no profiler traces" in capsys.readouterr().err


@pytest.mark.slow
def test_a_corrupt_trace_is_refused_naming_the_file_and_shown_as_such_in_reports(runs, tmp_path, capsys):
    current = copy_run(runs.current, tmp_path)
    trace = case_trace(current / "traces" / trace_folder_name(TRAIN))
    trace.write_bytes(gzip.compress(b'{"traceEvents": [')[:-4])
    assert cli("trace-diff", runs.base.run_dir, current) == 2
    assert f"{trace}: corrupt trace" in capsys.readouterr().err
    # The report still renders, the other case with its breakdown; the bad trace is named.
    assert cli(current) == 0
    markdown = (current / "report.md").read_text(encoding="utf-8")
    assert f"Trace not shown: {TRAIN}: {trace}: corrupt trace" in markdown
    assert f"| {EPOCH}" in markdown[markdown.index("### Where a step goes"):]
    # The gate still judges; gate.md says why it has no trace diff.
    assert cli("gate", runs.base.run_dir, current, "--output", tmp_path / "gate") == 1
    assert f"No trace diff: {trace}: corrupt trace" in (tmp_path / "gate" / "gate.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_bad_top_is_refused(runs, capsys):
    with pytest.raises(SystemExit) as exited:
        cli("trace-diff", runs.base.run_dir, runs.current.run_dir, "--top", "0")
    assert exited.value.code == 2
    assert "invalid --top '0'" in capsys.readouterr().err


# --- GPU-style traces (synthetic: no GPU here) --------------------------------------------------


def span(name, start, dur, cat="cpu_op", tid=1, pid=100, **args):
    return {"ph": "X", "name": name, "cat": cat, "ts": start, "dur": dur, "pid": pid, "tid": tid,
            "args": args}


def gpu_trace() -> dict:
    """One 100 µs step: forward 0-40 (a kernel launched at 10), zero 40-45, backward 45-80 (a
    launch at 50), optimizer 85-95. Kernels: 20-50 and 90-130 on stream 7, past the host step."""
    return {"traceEvents": [
        {"ph": "M", "name": "thread_name", "pid": 100, "tid": 1, "args": {"name": "python"}},
        span("ProfilerStep#1", 0, 100, cat="user_annotation"),
        span(TIMED_LABEL, 0, 100, cat="user_annotation"),
        span(FORWARD_LABEL, 0, 40, cat="user_annotation"),
        span("aten::linear", 2, 30),
        span("aten::addmm", 5, 20),
        span("cudaLaunchKernel", 10, 5, cat="cuda_runtime", correlation=1),
        span("aten::zeros", 40, 5),
        span("autograd::engine::evaluate_function: AddmmBackward0", 45, 35, tid=2),
        span("aten::mm", 48, 20, tid=2),
        span("cudaLaunchKernel", 50, 5, cat="cuda_runtime", tid=2, correlation=2),
        span("Optimizer.step#SGD.step", 85, 10, cat="user_annotation"),
        span("gemm_kernel", 20, 30, cat="kernel", pid=0, tid=7, correlation=1),
        span("gemm_backward_kernel", 90, 40, cat="kernel", pid=0, tid=7, correlation=2),
        # Kineto's copies of the annotations on the GPU's lane: not a second step, not host time.
        span(TIMED_LABEL, 20, 110, cat="gpu_user_annotation", pid=0, tid=7),
        span(FORWARD_LABEL, 20, 30, cat="gpu_user_annotation", pid=0, tid=7),
    ]}


def test_gpu_breakdown_adds_kernel_idle_and_launch_overhead():
    shares = breakdown(gpu_trace()).set_index("part")
    host = shares[shares["lane"] == "host"]["share"]
    assert host.to_dict() == pytest.approx({"forward": 0.40, "backward": 0.35, "optimizer": 0.10, "other": 0.15})
    # The device's step runs to the end of the last kernel the step launched: 130 µs.
    assert shares.loc["kernel", "share"] == pytest.approx(70 / 130)
    assert shares.loc["idle", "share"] == pytest.approx(60 / 130)
    assert shares.loc["launch overhead", "share"] == pytest.approx(10 / 100)
    assert shares.loc["kernel", "seconds_per_step"] == pytest.approx(70e-6)


def test_gpu_timeline_has_a_lane_per_thread_and_stream_and_kernels_take_their_launchs_phase():
    spans = timeline(gpu_trace()).set_index("name")
    assert set(spans["lane"]) == {"main thread", "thread 2", "GPU 0 stream 7"}
    assert spans.loc["gemm_kernel", "phase"] == "forward"
    assert spans.loc["gemm_backward_kernel", "phase"] == "backward"
    assert spans.loc["aten::zeros", "phase"] == "other"
    assert "aten::addmm" not in spans.index  # inside forward: not top level
    assert spans.loc["gemm_backward_kernel", "start_s"] == pytest.approx(90e-6)


def test_self_times_and_operator_table_of_a_synthetic_trace():
    t = Trace(gpu_trace())
    own = self_times(t.host).groupby(t.host["name"]).sum()
    assert own["aten::linear"] == pytest.approx(10)  # 30 less its child addmm's 20
    assert own["aten::addmm"] == pytest.approx(15)  # 20 less the launch call's 5
    ops = op_table(t).set_index("name")
    assert ops.loc["aten::linear", "self_s"] == pytest.approx(10e-6)
    assert ops.loc["gemm_kernel", "kind"] == "kernel" and ops.loc["gemm_kernel", "self_s"] == pytest.approx(30e-6)
    assert "cudaLaunchKernel" not in ops.index and FORWARD_LABEL not in ops.index


def test_a_trace_without_step_marks_counts_as_one_step():
    events = [e for e in gpu_trace()["traceEvents"] if e["name"] not in (TIMED_LABEL, "ProfilerStep#1")]
    shares = breakdown({"traceEvents": events}).set_index("part")
    assert shares[shares["lane"] == "host"]["share"].sum() == pytest.approx(1.0)
    assert shares.loc["forward", "share"] == pytest.approx(40 / 95)  # the host's spans: 0 to 95 µs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_real_cuda_trace_adds_kernel_idle_and_launch_overhead(tmp_path):
    step = build_step(Case(phase="train_step", model="fashion_mlp", optimizer="adam", device="cuda", mode="eager",
                           batch_size=64))
    result = capture(step, tmp_path / "t", ProfileConfig(wait=1, warmup=1, active=2))
    trace = read_trace(result.trace_file)
    shares = breakdown(trace).set_index("part")
    host, device = shares[shares["lane"] == "host"], shares[shares["lane"] == "device"]
    assert host["share"].sum() == pytest.approx(1.0) and host.loc["backward", "share"] > 0
    assert set(device.index) == {"kernel", "idle", "launch overhead"}
    assert device.loc["kernel", "share"] > 0 and device.loc["launch overhead", "share"] > 0
    assert device.loc["kernel", "share"] + device.loc["idle", "share"] == pytest.approx(1.0)
    spans = timeline(trace)
    assert spans["lane"].str.startswith("GPU").any()
    assert {"forward", "backward"} <= set(spans.loc[spans["lane"].str.startswith("GPU"), "phase"])


# --- one step in the table and the picture; noise in the diff (issue #25) ---------------------


def three_steps(forward_us: tuple[float, float, float], other_ops: float = 5.0) -> dict:
    """Three timed steps on one thread, each: forward (an addmm inside), a gap, backward (an mm of
    ``other_ops`` µs inside), a gap, optimizer, a gap. Step i's forward lasts ``forward_us[i]``."""
    events, start = [], 0.0
    for i, fwd in enumerate(forward_us):
        backward = other_ops + 25  # the mm inside it, and 25 µs of its own
        length = fwd + backward + 35
        events += [span(f"ProfilerStep#{i}", start, length, cat="user_annotation"),
                   span(TIMED_LABEL, start, length, cat="user_annotation"),
                   span(FORWARD_LABEL, start, fwd, cat="user_annotation"),
                   span("aten::addmm", start + 1, fwd - 2),
                   span("autograd::engine::evaluate_function: AddmmBackward0", start + fwd + 10, backward),
                   span("aten::mm", start + fwd + 11, other_ops),
                   span("Optimizer.step#SGD.step", start + fwd + backward + 15, 10, cat="user_annotation")]
        start += length + 5
    return {"traceEvents": events}


def test_the_breakdown_table_and_the_timeline_show_the_same_step(tmp_path):
    # Compiled fashion_mlp: one of three profiled steps ran its forward 3x as long (5.7 ms against
    # 2 ms); the table averaged all three (forward 59%), the timeline drew the median step (34%).
    folder = tmp_path / "train_step.x-sgd-cpu-eager-b64"
    folder.mkdir()
    with gzip.open(folder / "host_1.pt.trace.json.gz", "wt", encoding="utf-8") as f:
        json.dump(three_steps((40.0, 340.0, 42.0)), f)
    (view,), errors = read_cases({"train_step[x-sgd-cpu-eager-b64]": folder})
    assert errors == []
    table = wide({view.case_id: view.breakdown}).iloc[0]
    assert table["step_s"] == pytest.approx(view.step_s) == pytest.approx(107e-6)  # the median step: 42 + 65 µs
    assert table["forward"] == pytest.approx(42 / 107)
    drawn = view.spans.groupby("phase")["dur_s"].sum()  # the timeline's bars of that step
    for phase in ("forward", "backward", "optimizer"):
        assert table[phase] * view.step_s == pytest.approx(drawn[phase])
    assert (view.fastest_s, view.slowest_s, view.steps) == (pytest.approx(105e-6), pytest.approx(405e-6), 3)


def test_a_change_within_the_steps_spread_is_marked_noise_and_one_beyond_it_is_not():
    base = Trace(three_steps((40.0, 60.0, 50.0)))  # forward's addmm: 38, 58, 48 µs a step
    same_code = Trace(three_steps((45.0, 65.0, 55.0)))  # 5 µs more on average, inside a 20 µs spread
    slower = Trace(three_steps((40.0, 60.0, 50.0), other_ops=25.0))  # mm: 5 -> 25 µs every step
    noise = case_diff("c", base, same_code).set_index("name")
    assert noise.loc["aten::addmm", "self_change_s"] == pytest.approx(5e-6)
    assert noise.loc["aten::addmm", "noise_s"] == pytest.approx(20e-6) and noise.loc["aten::addmm", "within_noise"]
    real = case_diff("c", base, slower)
    assert real.iloc[0]["name"] == "aten::mm" and not real.iloc[0]["within_noise"]  # beyond the noise: first
    assert real.set_index("name").loc["aten::mm", "self_change_s"] == pytest.approx(20e-6)
    text = "\n".join(diff_markdown(pd.concat([case_diff("same", base, same_code), case_diff("slower", base, slower)])))
    same_part, slower_part = text.split("### `slower`")
    assert "No operator's self time changed beyond the run-to-run spread of the profiled steps" in same_part
    assert "within ±20" in same_part and "beyond ±" not in same_part
    assert "1 operator changed self time beyond the spread" in slower_part and "beyond ±0" in slower_part
