"""Issue #25, item 3: the correctness check judges a case's output, its gradients and (with an
optimizer step) every parameter's change in one step apart, each by torch's accuracy ruler
(``torch._dynamo.utils.same``): against float64, a multiple of eager float32's own error plus
a floor at the quantity's scale, or the cosine-similarity fallback."""

from __future__ import annotations

import json

import pytest
import torch

from bench.passes import correctness
from bench.passes.correctness import CHANGES, GRADIENTS, OUTPUT, Ruler, judge, judge_quantity
from bench.schema.case import Case
from bench.schema.status import Status, WrongResult
from tests.helpers import run_bench

FLOAT32 = Ruler("float32", 1e-4)


def exact_and_eager(numel: int = 4096, eager_error: float = 1e-7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    exact = torch.randn(numel, generator=gen, dtype=torch.float64)
    return exact, exact + eager_error * torch.randn(numel, generator=gen, dtype=torch.float64)


def noise(like: torch.Tensor, relative: float, seed: int = 1) -> torch.Tensor:
    """Random error of ``relative`` times the tensor's RMS."""
    gen = torch.Generator().manual_seed(seed)
    return relative * like.square().mean().sqrt() * torch.randn(like.shape, generator=gen, dtype=like.dtype)


def test_rounding_far_beyond_a_lucky_eager_passes_by_its_direction_and_size():
    # What compiled batch norm does where eager accumulates in float64 (resnet18, Adam, b16, 64 px:
    # gradients 3e-3 off against eager's 2e-6): a multiple of eager's error rejects it, the cosine takes it.
    exact, eager = exact_and_eager(eager_error=2e-6)
    j = judge(GRADIENTS, "conv1.weight", exact + noise(exact, 3e-3), eager, exact, scale=1.0, ruler=FLOAT32)
    assert j.error > j.bound and j.within_cosine and j.correct


def test_a_gradient_that_is_zero_but_for_rounding_passes_at_its_quantitys_scale():
    # A conv bias before batch norm: mathematically zero, so float32's rounding is 100% of it.
    exact = 1e-18 * torch.randn(64, dtype=torch.float64)
    j = judge(GRADIENTS, "conv1.bias", exact + 1e-9, exact - 1e-12, exact, scale=1e-2, ruler=FLOAT32)
    assert not j.within_cosine and j.error <= j.bound and j.correct


@pytest.mark.parametrize(("label", "wrong"), [
    ("doubled", lambda t: 2 * t),  # an update applied twice: the right direction, twice the size
    ("a term missing", lambda t: t - t[0]),  # off by one value everywhere
    ("sign", lambda t: -t),
    ("5% off", lambda t: t + noise(t, 5e-2)),
])
def test_wrong_values_fail_whatever_their_size(label, wrong):
    # A tensor a thousand times smaller than its quantity's typical value is still judged on its own
    # values (only below a 1e-5 of that scale, where zero gradients' rounding lives, is it let go).
    for magnitude in (1.0, 1e-3):
        exact, eager = exact_and_eager()
        exact, eager = magnitude * exact, magnitude * eager
        j = judge(CHANGES, "fc.bias", wrong(exact), eager, exact, scale=1.0, ruler=FLOAT32)
        assert not j.correct, (label, magnitude, j)


def test_each_parameter_is_judged_alone_and_a_missing_gradient_counts_as_zeros():
    exact, eager = exact_and_eager()
    big, small = exact, exact[:10] / 100
    judged = judge_quantity(GRADIENTS, {"big": big}, {"big": eager, "small": small}, {"big": big, "small": small},
                            FLOAT32)
    assert [(j.name, j.correct) for j in judged] == [("big", True), ("small", False)]  # 0.1% of the norm, still wrong


def test_smaller_tensors_and_lower_precisions_get_torchs_larger_multiplier():
    assert FLOAT32.multiplier(4096) == 2.0 and FLOAT32.multiplier(999) == 3.0
    assert Ruler("bfloat16", 3e-2).multiplier(4096) == 3.0
    assert FLOAT32.slack == 1e-4 and Ruler("bfloat16", 3e-2).slack == 1e-2  # never looser than torch's 0.99


@pytest.mark.slow
def test_an_optimizer_step_applied_twice_ends_wrong_result_naming_the_parameter(tmp_path):
    # The planted backend runs each graph twice: forward and gradients are right, every update lands twice.
    run = run_bench(tmp_path, "--model-module", "tests.compile_plant", "--compile-backend", "twice",
                    "--models", "fashion_mlp", "--phases", "forward,train_step", "--optimizers", "sgd",
                    "--modes", "compile", "--batch-sizes", "16")
    rows = {r["extra_info"]["case_id"]: r["extra_info"]
            for r in map(json.loads, (run.run_dir / "cases.jsonl").read_text().splitlines())}
    forward, train = rows["forward[fashion_mlp-cpu-compile-b16]"], rows["train_step[fashion_mlp-sgd-cpu-compile-b16]"]
    assert forward["status"] == Status.OK.value and forward["correct"] is True, forward
    assert train["status"] == Status.WRONG_RESULT.value, train
    assert "wrong result: the change of " in train["error"] and " in one step is off float64 eager by 1 " in train["error"]
    assert "norm ratio 2)" in train["error"]


@pytest.mark.slow
def test_resnet18_compiled_adam_steps_are_right():
    # Issue #25's trial: after a few Adam steps on one gradient the compiled gradients were 1,000x
    # as far from float64 as eager's and the case ended wrong_result. Now the check runs on the
    # weights the case was built with, and judges the step on the same gradients on every path.
    case = Case(phase="optimizer_step", model="resnet18", optimizer="adam", device="cpu", mode="compile",
                batch_size=16, image_size=64)
    from bench.workloads.build import build_step

    step = build_step(case)
    for _ in range(10):  # as the first call, warm-up and a few rounds would
        step.run()
    try:
        figures = correctness.check(step, timing=None)
    except WrongResult as exc:
        pytest.fail(str(exc))
    assert figures["correct"] is True and 0 < figures["max_rel_error"] < 1e-2
    judged = correctness.compare(step)
    assert {j.quantity for j in judged} == {OUTPUT, GRADIENTS, CHANGES}
    assert len([j for j in judged if j.quantity == CHANGES]) == len(list(step.model.parameters()))
