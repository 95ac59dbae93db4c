"""What issue #16 adds for GPU users, tested on CPU: optimizer implementations as registry
entries, compile modes reaching torch.compile, TF32 and cuDNN settings applied and restored,
and ``python -m bench tune``. CUDA itself is not needed: the flags exist on CPU-only torch."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from bench.commands import tune
from bench.__main__ import main as bench_main
from bench.schema.case import Case
from bench.schema.status import UnsupportedCase
from bench.workloads.optimizers import (implementations, make_optimizer, register_optimizer, unavailable_reason,
                                        unregister_optimizer)
from bench.workloads.backend import backend_settings, hold_backend_settings, release_backend_settings
from bench.workloads.build import build_step, check_supported
from reports.load import load
from reports.tune import tune_table
from tests.helpers import ROOT

SEED_ID = "train_step[fashion_mlp-adam-cpu-eager-b64]"


def case(**kw) -> Case:
    fields = dict(phase="train_step", model="fashion_mlp", optimizer="adam", device="cpu", mode="eager")
    return Case(**{**fields, **kw})


@pytest.mark.parametrize("base", ["adam", "adamw", "sgd"])
def test_foreach_and_fused_entries_take_the_plain_optimizers_steps(base):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x, y = torch.randn(32, 8), torch.randn(32, 4)
    after = {}
    for name in implementations(base):
        m = copy.deepcopy(model)
        opt = make_optimizer(name, m.parameters())
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()
        impl = name.removeprefix(base).lstrip("_")
        # The entry really is that implementation (the plain one picks neither on CPU).
        assert bool(opt.defaults.get("foreach")) == (impl == "foreach")
        assert bool(opt.defaults.get("fused")) == (impl == "fused")
        after[name] = [p.detach() for p in m.parameters()]
    plain = after.pop(base)
    assert set(after) == {f"{base}_foreach", f"{base}_fused"}
    assert not torch.equal(plain[0], model[0].weight)  # the steps moved the weights
    for name, params in after.items():
        for a, b in zip(plain, params):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_an_optimizer_kernel_this_torch_lacks_skips_the_case_with_the_reason():
    # A device without fused kernels in any torch: the probe names torch's refusal.
    assert "has no fused Adam on meta" in unavailable_reason("adam_fused", "meta")
    assert unavailable_reason("adam_fused", "cpu") is None  # torch 2.4+ has CPU fused Adam
    assert unavailable_reason("adam", "meta") is None
    register_optimizer("probe_sgd", seed=False, check=lambda device: f"no probe kernel on {device}")(
        lambda params: torch.optim.SGD(params, lr=0.1))
    try:
        with pytest.raises(pytest.skip.Exception, match="no probe kernel on cpu"):
            check_supported(case(optimizer="probe_sgd"))
    finally:
        unregister_optimizer("probe_sgd")


@pytest.mark.slow
def test_compile_mode_reaches_torch_compile_and_the_id(monkeypatch):
    compiled = case(mode="compile", compile_mode="max-autotune")
    assert compiled.id == "train_step[fashion_mlp-adam-cpu-compile-max-autotune-b64]"
    calls = []
    real_compile = torch.compile
    # Record the arguments and compile nothing (a compile costs ~20 s here; tune's test does one).
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or fn)
    resets = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(1))
    build_step(compiled)
    assert calls == [dict(backend="inductor", mode="max-autotune")] * 2  # the model and optimizer.step
    assert resets == [1]  # each compiled case starts from dynamo's empty caches
    build_step(case())
    assert resets == [1]  # an eager one leaves them
    calls.clear()
    build_step(replace(compiled, compile_mode="default"))
    assert calls == [dict(backend="inductor")] * 2
    with pytest.raises(UnsupportedCase, match="'reduce-overhead' is a mode of the inductor backend; "
                                              "--compile-backend aot_eager has none"):
        build_step(replace(compiled, compile_mode="reduce-overhead"), compile_backend="aot_eager")
    # torch accepts each mode with inductor (checked lazily: nothing compiles before a call).
    for mode in ("reduce-overhead", "max-autotune"):
        real_compile(torch.nn.Linear(2, 2), backend="inductor", mode=mode)


@pytest.fixture
def cuda_flags():
    """Known process-wide values before the test, the originals restored after it."""
    cudnn = torch.backends.cudnn
    saved = (torch.get_float32_matmul_precision(), cudnn.allow_tf32, cudnn.benchmark)
    torch.set_float32_matmul_precision("medium")  # one allow_tf32 alone could not restore
    cudnn.allow_tf32, cudnn.benchmark = True, False  # torch's defaults
    yield
    release_backend_settings()
    torch.set_float32_matmul_precision(saved[0])
    cudnn.allow_tf32, cudnn.benchmark = saved[1], saved[2]


def flags() -> tuple:
    cudnn = torch.backends.cudnn
    return torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark


def test_tf32_and_cudnn_benchmark_are_applied_per_cuda_case_and_restored(cuda_flags):
    before = flags()
    assert before == ("medium", True, True, False)
    on = case(device="cuda", tf32=True, cudnn_benchmark=True)
    with backend_settings(on):
        assert flags() == ("high", True, True, True)
    assert flags() == before
    # A CUDA case without tf32 runs without it, convolutions included (torch's default has them on).
    with backend_settings(replace(on, tf32=False, cudnn_benchmark=False)):
        assert flags() == ("highest", False, False, False)
    assert flags() == before
    with backend_settings(case()):  # CPU cases leave the process's settings alone
        assert flags() == before
    # Held while a step runs (after build_step returns), restored when the next step is built.
    hold_backend_settings(on)
    assert flags() == ("high", True, True, True)
    build_step(case())
    assert flags() == before


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"),
                    reason="torch before 2.9 has no fp32_precision settings")
def test_settings_made_with_torchs_new_tf32_api_are_restored_as_they_were(cuda_flags):
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    # Set through the new API alone: torch 2.15 then refuses the old readers ("mix of the legacy
    # and new APIs"); the case still runs with its settings, and the new values come back.
    matmul.fp32_precision, conv.fp32_precision = "tf32", "ieee"
    with backend_settings(case(device="cuda", tf32=False)):
        assert flags()[1:3] == (False, False)
    assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "ieee")


def test_environment_records_the_process_defaults():
    from bench.environment import collect

    env = collect()
    assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert (env["tf32_matmul"], env["tf32_cudnn"], env["cudnn_benchmark"]) == (
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch 2.9+: the per-backend settings too
        assert env["fp32_precision_cuda_matmul"] == torch.backends.cuda.matmul.fp32_precision
        assert env["fp32_precision_cudnn_conv"] == torch.backends.cudnn.conv.fp32_precision


def grid(*argv: str, quick: bool = False) -> tune.Grid:
    return tune.build_grid(tune.check(tune.parser().parse_args(list(argv))), quick=quick)


def test_the_cpu_grid_leaves_out_cuda_settings_and_says_why():
    full = grid("fashion_mlp")
    assert full.seed.id == SEED_ID and full.seed in full.cases
    ids = {c.id for c in full.cases}
    # eager, compile default, compile max-autotune x amp off/bfloat16 x adam, adam_foreach, adam_fused
    assert len(ids) == 3 * 2 * 3
    assert "train_step[fashion_mlp-adam_fused-cpu-compile-max-autotune-b64-amp_bfloat16]" in ids
    assert not any(word in i for i in ids for word in ("amp_float16", "reduce-overhead", "tf32", "cudnn", "channels_last"))
    said = "\n".join(full.left_out)
    for word in ("amp float16", "reduce-overhead", "tf32 on", "cudnn_benchmark on", "channels_last needs 4-D"):
        assert word in said
    quick = grid("fashion_mlp", quick=True)  # compile modes only with the seed's other settings
    assert {c.id for c in quick.cases if c.mode == "compile"} == {
        "train_step[fashion_mlp-adam-cpu-compile-b64]", "train_step[fashion_mlp-adam-cpu-compile-max-autotune-b64]"}
    assert len(quick.cases) == 2 * 3 + 2


def test_the_cuda_grid_varies_tf32_and_the_autotuner_where_there_are_convolutions():
    lenet = grid("lenet", "--device", "cuda", "--modes", "eager", "--amp", "off", "--optimizers", "adam")
    assert {(c.tf32, c.cudnn_benchmark) for c in lenet.cases} == {(False, False), (False, True), (True, False),
                                                                 (True, True)}
    assert {c.memory_format for c in lenet.cases} == {"contiguous", "channels_last"}
    mlp = grid("fashion_mlp", "--device", "cuda", "--modes", "eager,reduce-overhead", "--amp", "float16")
    assert {c.cudnn_benchmark for c in mlp.cases} == {False}
    assert any("fashion_mlp has no convolution" in line for line in mlp.left_out)
    assert "train_step[fashion_mlp-adam-cuda-compile-reduce-overhead-b64-amp_float16-tf32]" in {c.id for c in mlp.cases}
    forward = grid("fashion_mlp", "--phase", "forward", "--modes", "eager")
    assert {c.optimizer for c in forward.cases} == {None} and forward.seed.id == "forward[fashion_mlp-cpu-eager-b64]"


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown value 'nosuch' for MODEL; valid choices: lenet, "),
    (["fashion_mlp", "--phase", "epoch"], "'epoch' for --phase; valid choices: forward, backward, optimizer_step"),
    (["fashion_mlp", "--modes", "eager,turbo"], "'turbo' for --modes; valid choices: eager, default, reduce-overhead"),
    (["fashion_mlp", "--optimizers", "adam_turbo"], "'adam_turbo' for --optimizers; valid choices: manual_sgd"),
    (["fashion_mlp", "--device", "gpu"], "'gpu' for --device; valid choices: cpu, cuda"),
])
def test_bad_input_exits_2_naming_the_choices_before_measuring(argv, message, tmp_path, capsys):
    assert bench_main(["tune", *argv, "--results-dir", str(tmp_path / "results")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # nothing measured, no run folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: tune --device cuda measures")
def test_tune_on_cuda_without_cuda_exits_2(tmp_path, capsys):
    assert bench_main(["tune", "fashion_mlp", "--device", "cuda", "--results-dir", str(tmp_path / "r")]) == 2
    assert "--device cuda: CUDA is not available on this machine" in capsys.readouterr().err


def test_an_unknown_command_exits_2():
    assert bench_main(["tunes", "fashion_mlp"]) == 2


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One real tune: two eager optimizer implementations and one compile (the seed's, --quick)."""
    results = tmp_path_factory.mktemp("tune")
    proc = subprocess.run([sys.executable, "-m", "bench", "tune", "fashion_mlp", "--modes", "eager,default",
                           "--quick", "--amp", "off", "--optimizers", "adam,adam_fused", "--max-time", "0.05",
                           "--results-dir", str(results), "--", "--benchmark-min-rounds=5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    runs = [p for p in results.iterdir() if p.is_dir()]
    return proc, runs


@pytest.mark.slow
def test_tune_runs_the_grid_through_the_suite_and_names_the_fastest(tuned):
    proc, runs = tuned
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(runs) == 1
    rows = [json.loads(line) for line in (runs[0] / "cases.jsonl").read_text().splitlines()]
    assert {r["extra_info"]["case_id"] for r in rows} == {
        SEED_ID, "train_step[fashion_mlp-adam_fused-cpu-eager-b64]", "train_step[fashion_mlp-adam-cpu-compile-b64]"}
    assert all(r["extra_info"]["status"] == "ok" for r in rows)
    assert (runs[0] / "report.md").is_file() and (runs[0] / "environment.json").is_file()
    out = proc.stdout
    assert "left out: channels_last needs 4-D" in out
    assert "fastest: train_step[fashion_mlp-" in out
    assert f"speedup over the seed's configuration ({SEED_ID}: eager, adam, amp off, contiguous): " in out


@pytest.mark.slow
def test_the_summary_sorts_by_median_and_prices_each_configuration_against_the_seed(tuned):
    _, runs = tuned
    table = tune_table(load(runs[0]), SEED_ID)
    assert list(table["median_s"]) == sorted(table["median_s"])
    seed = table[table["is_seed"]].iloc[0]
    assert seed["speedup"] == 1 and seed["speedup_low"] <= 1 <= seed["speedup_high"]
    for _, row in table.iterrows():
        assert row["speedup"] == pytest.approx(seed["median_s"] / row["median_s"])
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]
    assert set(table["mode_label"]) == {"eager", "compile"}
