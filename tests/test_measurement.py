"""Memory, FLOPs, statistics and environment figures: their values, not just their presence."""

import json
import subprocess
import warnings

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models
from bench.schema.case import Case
from bench.schema.status import NonFiniteLoss, UnsupportedCase, classify
from bench.passes.flops import CPU_PEAK_MIN_SIZE, count_flops, cpu_peak_size, device_peak, gpu_peak
from bench.passes.memory import held_bytes, measure_memory
from bench.workloads.optimizers import list_optimizers
from bench.workloads.build import build_step
from reports import load
from reports.environment import EnvironmentMismatchWarning, differing_fields
from reports.stats import median_ci, summarize
from tests.helpers import ROOT

FASHION_PARAM_BYTES = 235_146 * 4
FASHION_MATMUL_MACS = 784 * 256 + 256 * 128 + 128 * 10  # 234,752


def case(phase="train_step", model="fashion_mlp", optimizer="sgd", **kw) -> Case:
    return Case(phase=phase, model=model, optimizer=optimizer, device="cpu", mode="eager", **kw)


def memory_after_warm_up(c: Case) -> dict:
    step = build_step(c)
    step.run()
    step.run()
    return measure_memory(step)


def test_adam_holds_two_extra_parameter_copies():
    adam = memory_after_warm_up(case(optimizer="adam"))
    sgd = memory_after_warm_up(case(optimizer="sgd"))
    # exp_avg and exp_avg_sq: 2 x 940,584 = 1,881,168 bytes.
    assert adam["mem_held_bytes"] - sgd["mem_held_bytes"] == pytest.approx(2 * FASHION_PARAM_BYTES, rel=0.01)
    # Adam's temporaries show in the peak, not in the held bytes.
    assert adam["mem_peak_bytes"] - adam["mem_held_bytes"] > sgd["mem_peak_bytes"] - sgd["mem_held_bytes"]
    assert adam["mem_peak_bytes"] > sgd["mem_peak_bytes"]


def test_memory_breakdown_of_fashion_mlp_with_adam():
    step = build_step(case(optimizer="adam"))
    step.run()
    step.run()
    figures = measure_memory(step)
    assert figures["mem_param_bytes"] == figures["mem_grad_bytes"] == FASHION_PARAM_BYTES
    # exp_avg and exp_avg_sq per parameter tensor, and its step counter (a float32 scalar).
    counters = sum(s["step"].nbytes for s in step.optimizer.state.values())
    assert counters == 4 * len(list(step.model.parameters())) == 24
    assert figures["mem_optimizer_bytes"] == 2 * FASHION_PARAM_BYTES + counters
    inputs, target = step.batch.first, step.batch.target
    assert figures["mem_held_bytes"] == (figures["mem_param_bytes"] + figures["mem_grad_bytes"]
                                         + figures["mem_optimizer_bytes"] + inputs.nbytes + target.nbytes)
    assert figures["mem_activation_bytes"] == figures["mem_peak_bytes"] - figures["mem_held_bytes"] > 0
    # The activations of a batch of 64 at least: 64 x (256 + 128 + 10) float32.
    assert figures["mem_activation_bytes"] >= 64 * 394 * 4


@pytest.mark.parametrize("optimizer", list_optimizers())
def test_train_step_peak_at_least_held_at_least_params_and_grads(optimizer):
    figures = memory_after_warm_up(case(optimizer=optimizer))
    assert figures["mem_param_bytes"] == FASHION_PARAM_BYTES
    assert figures["mem_peak_bytes"] >= figures["mem_held_bytes"] >= 2 * FASHION_PARAM_BYTES


def test_peak_sees_activations_of_a_larger_batch():
    small = memory_after_warm_up(case(phase="backward", optimizer=None, batch_size=64))
    large = memory_after_warm_up(case(phase="backward", optimizer=None, batch_size=1024))
    # 1024 x (256 + 128 + 10) float32 activations at least, beyond what the batch itself adds.
    extra_batch = (1024 - 64) * (784 * 4 + 8)
    assert large["mem_peak_bytes"] - small["mem_peak_bytes"] >= extra_batch + (1024 - 64) * 394 * 4


def test_held_bytes_counts_each_storage_once():
    step = build_step(case(phase="forward", optimizer=None))
    inputs, target = step.batch.first, step.batch.target
    expected = FASHION_PARAM_BYTES + inputs.nbytes + target.nbytes
    assert held_bytes(step) == expected


@pytest.mark.parametrize("batch", [1, 64])
def test_fashion_forward_flops_are_exact(batch):
    step = build_step(case(phase="forward", optimizer=None, batch_size=batch))
    assert count_flops(step) == 2 * batch * FASHION_MATMUL_MACS


def test_fashion_backward_flops():
    batch = 64
    forward = 2 * batch * FASHION_MATMUL_MACS
    step = build_step(case(phase="backward", optimizer=None, batch_size=batch))
    # The seed's input needs no gradient, so layer 1 computes no input gradient:
    # weight gradients (= forward) plus input gradients of layers 2 and 3.
    assert count_flops(step) == forward + 2 * batch * (256 * 128 + 128 * 10)
    # With an input that needs a gradient, backward is twice the forward.
    model = models.get_model("fashion_mlp")
    x = torch.randn(batch, 784, requires_grad=True)
    loss = model(x).sum()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    assert counter.get_total_flops() == 2 * forward


def test_optimizer_step_has_no_matmul_flops_and_train_step_adds_up():
    assert count_flops(build_step(case(phase="optimizer_step"))) == 0
    fwd = count_flops(build_step(case(phase="forward", optimizer=None)))
    bwd = count_flops(build_step(case(phase="backward", optimizer=None)))
    assert count_flops(build_step(case(phase="train_step"))) == fwd + bwd


def test_gpu_peak_table():
    assert gpu_peak("NVIDIA H100 80GB HBM3", "bfloat16", tf32=False) == pytest.approx(989.4e12)
    assert gpu_peak("NVIDIA H100 80GB HBM3", "float32", tf32=True) == pytest.approx(494.7e12)
    assert gpu_peak("NVIDIA H100 PCIe", "float32", tf32=False) == pytest.approx(51.2e12)
    assert gpu_peak("Some Future GPU", "float32", tf32=False) is None


def test_median_ci_covers_the_median_and_narrows_with_rounds():
    rng = np.random.default_rng(1)
    few, many = rng.normal(1.0, 0.05, 30), rng.normal(1.0, 0.05, 3000)
    for sample in (few, many):
        low, high = median_ci(sample)
        assert low <= np.median(sample) <= high
    assert np.subtract(*median_ci(many)[::-1]) < np.subtract(*median_ci(few)[::-1]) / 5
    # Order statistics: the bounds are observed values.
    assert set(median_ci(few)) <= set(few)


def test_noisy_flag():
    rng = np.random.default_rng(2)
    steady = rng.normal(1.0, 0.01, 200)
    bimodal = np.concatenate([rng.normal(1.0, 0.01, 100), rng.normal(1.5, 0.01, 100)])
    assert summarize(steady)["noisy"] is False
    assert summarize(bimodal)["noisy"] is True
    assert summarize(steady)["iqr_rel"] == pytest.approx(0.0135, abs=0.004)


def test_failures_are_classified():
    assert classify(UnsupportedCase("x")) == "unsupported"
    assert classify(NonFiniteLoss("x")) == "non_finite"
    assert classify(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "oom"
    assert classify(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "oom"
    assert classify(ValueError("shapes do not match")) == "error"


def test_environment_differences_name_the_fields():
    envs = {"a": {"torch_version": "2.15.0", "hostname": "h", "git_commit": "1"},
            "b": {"torch_version": "2.11.0", "hostname": "h", "git_commit": "2"}}
    assert list(differing_fields(envs)) == ["torch_version"]  # a new commit is the point, not a mismatch
    assert differing_fields({"a": envs["a"], "b": {}}) == {}


@pytest.mark.slow
def test_smoke_run_records_the_environment(smoke_run):
    env = json.loads((smoke_run.run_dir / "environment.json").read_text())
    assert env["torch_version"] == torch.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert env["git_commit"] == head
    rows = load(smoke_run.run_dir)
    # The run's settings are the ones its cases ran with: threads, and the CPU peak measured once.
    assert set(rows["num_threads"]) == {env["torch_num_threads"]}
    assert set(rows["peak_flops_per_s"]) == {env["cpu_peak_flops"]}
    raw = json.loads((smoke_run.run_dir / "benchmark.json").read_text())
    assert raw["blitzbench_environment"]["git_commit"] == env["git_commit"]
    report = (smoke_run.run_dir / "report.md").read_text()
    assert "## Environment" in report and torch.__version__ in report


@pytest.mark.slow
def test_smoke_run_rows_carry_every_figure(smoke_run):
    df = load(smoke_run.run_dir).set_index("case_id")
    row = df.loc["train_step[fashion_mlp-adam-cpu-eager-b64]"]
    assert row["mem_peak_bytes"] >= row["mem_held_bytes"] >= 2 * FASHION_PARAM_BYTES
    assert row["flops"] == 3 * 2 * 64 * FASHION_MATMUL_MACS - 2 * 64 * 784 * 256
    assert row["flops_per_s"] == pytest.approx(row["flops"] / row["median_s"])
    assert 0 < row["peak_share"]
    # The measuring code stores the raw rounds, not statistics derived from them (the reports
    # derive those when they read the results).
    stored = [json.loads(line) for line in (smoke_run.run_dir / "cases.jsonl").read_text().splitlines()]
    for entry in stored:
        assert len(entry["stats"]["data"]) == entry["stats"]["rounds"]
        assert not {"median_ci_low_s", "median_ci_high_s", "iqr_rel", "ci_rel_width", "noisy"} & set(
            entry["extra_info"])
    report = (smoke_run.run_dir / "report.md").read_text()
    for header in ("95% CI", "IQR", "peak mem (", "FLOP/s", "MFU"):
        assert header in report


@pytest.mark.slow
def test_loading_runs_from_different_environments_warns(smoke_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "cases.jsonl").write_text((smoke_run.run_dir / "cases.jsonl").read_text())
    env = json.loads((smoke_run.run_dir / "environment.json").read_text())
    (other / "environment.json").write_text(json.dumps(dict(env, torch_version="2.4.0", git_commit="x")))
    with pytest.warns(EnvironmentMismatchWarning, match=r"differing fields: torch_version \("):
        load(smoke_run.run_dir, other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(smoke_run.run_dir)


@pytest.mark.parametrize("n", [6, 7, 10, 31, 500])
def test_median_ci_matches_scipy_quantile_test(n):
    from scipy import stats as sps

    x = np.random.default_rng(n).lognormal(size=n)
    reference = sps.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    assert median_ci(x) == (reference.low, reference.high)


def test_a_long_error_keeps_its_start_and_its_end():
    from bench.schema.status import MAX_ERROR_CHARS, clip_error

    # A count worker's message comes first, then valgrind's long stack lines: both ends matter.
    message = "no result from the valgrind worker within --count-timeout 1800 s; its last lines:\n" + \
        "==1== by 0x8C9263DA: c10::impl::wrap_kernel_functor_unboxed_<...>\n" * 100 + "RuntimeError: the end"
    clipped = clip_error(message)
    assert len(clipped) <= MAX_ERROR_CHARS
    assert clipped.startswith("no result from the valgrind worker within --count-timeout 1800 s")
    assert clipped.endswith("RuntimeError: the end") and "characters left out" in clipped
    assert clip_error("short") == "short"


def test_the_cpu_peak_shrinks_its_matmul_to_fit_its_budget():
    # A dtype this CPU emulates (bfloat16: ~2.4 s a 1024² matmul here) took 26 s a run to
    # measure at 1024²; the side now halves to fit the budget, and the source says which side.
    assert cpu_peak_size("bfloat16", size=1024, budget_s=0.0) == CPU_PEAK_MIN_SIZE
    assert cpu_peak_size("float32", size=256, budget_s=float("inf")) == 256
    peak, source = device_peak("cpu", "float32")
    assert peak > 0 and source.startswith(f"measured: {cpu_peak_size('float32')}² float32 matmul"), source
