import time
from types import SimpleNamespace

import pytest
import torch

from bench.schema.case import Case
from bench.passes import CATALOG
from bench.runners import inprocess as harness
from bench.schema.figures import Figure, Kind
from bench.runners.inprocess import first_call, measure, pedantic_rounds, warm_up
from bench.workloads.optimizers import ManualSGD, list_optimizers, make_optimizer
from bench.passes import PASSES, register_pass, unregister_pass
from bench.workloads.phases import PHASE_BUILDERS
from bench.workloads.step import Step
from bench.workloads.build import build_step
from tests.helpers import FakeBenchmark


def case(phase: str, model: str = "fashion_mlp", optimizer: str | None = "adam", **kw) -> Case:
    return Case(phase=phase, model=model, optimizer=optimizer, device="cpu", mode=kw.pop("mode", "eager"), **kw)


def snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("optimizer", list_optimizers())
def test_each_optimizer_changes_parameters_in_one_train_step(optimizer):
    step = build_step(case("train_step", "lenet", optimizer, batch_size=8))
    before = snapshot(step.model)
    step.run()
    changed = [not torch.equal(a, b) for a, b in zip(before, step.model.parameters())]
    assert all(changed), f"{optimizer} left {changed.count(False)} parameter tensors unchanged"


def test_forward_leaves_gradients_untouched():
    step = build_step(case("forward", optimizer=None))
    assert not step.model.training  # forward is measured in eval mode
    step.run()
    assert all(p.grad is None for p in step.model.parameters())
    existing = [torch.ones_like(p) for p in step.model.parameters()]
    for p, g in zip(step.model.parameters(), existing):
        p.grad = g.clone()
    step.run()
    assert all(torch.equal(p.grad, g) for p, g in zip(step.model.parameters(), existing))


def test_backward_times_only_backward_on_a_graph_built_by_setup():
    step = build_step(case("backward", optimizer=None))
    assert step.model.training and step.setup is not None
    args, kwargs = step.setup()
    assert all(p.grad is None for p in step.model.parameters())  # setup built the graph only
    step.fn(*args, **kwargs)
    assert all(p.grad is not None for p in step.model.parameters())


def test_optimizer_step_moves_parameters_without_new_gradients():
    step = build_step(case("optimizer_step", optimizer="sgd"))
    grads = [p.grad.clone() for p in step.model.parameters()]
    before = snapshot(step.model)
    step.run()
    for p, b, g in zip(step.model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), b - 0.01 * g)  # plain SGD, lr 0.01
        assert torch.equal(p.grad, g)


def test_manual_sgd_is_the_blitz_update_rule():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    p.grad = torch.tensor([10.0, -10.0])
    opt = make_optimizer("manual_sgd", [p])
    assert isinstance(opt, ManualSGD)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, 2.1]))


def test_unknown_optimizer_lists_known_ones():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; known optimizers: manual_sgd, sgd"):
        make_optimizer("lamb", [])


def test_fifty_adam_train_steps_lower_the_fashion_mlp_loss():
    step = build_step(case("train_step", optimizer="adam"))
    spec_loss = _loss_of(step)
    start = spec_loss()
    for _ in range(50):
        step.run()
    end = spec_loss()
    assert end < 0.5 * start, (start, end)


def _loss_of(step):
    import models

    spec = models.get_spec(step.case.model)
    batch = spec.make_batch(step.case.batch_size)  # same rng_seed (0): the batch trained on
    criterion = spec.make_criterion()

    def loss() -> float:
        with torch.no_grad():
            return criterion(batch.call(step.model), batch.target).item()

    return loss


def test_dropout_model_trains_in_train_mode_and_infers_in_eval_mode():
    assert build_step(case("train_step", "fashion_mlp_dropout")).model.training
    assert not build_step(case("forward", "fashion_mlp_dropout", None)).model.training


class VirtualClock:
    """A clock that moves only when the step's setup or call says so: timing logic tested
    exactly, whatever the machine is doing."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def sleeping_step(setup_s: float, call_s: float, sleep=time.sleep) -> Step:
    """A step whose untimed setup and timed call take known times."""

    def setup():
        sleep(setup_s)
        return (call_s,), {}

    return Step(case=case("backward", optimizer=None), fn=sleep, setup=setup, model=torch.nn.Linear(1, 1),
                optimizer=None, param_count=2)


def test_first_call_includes_the_setup_and_warm_up_times_only_the_call(monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(harness.time, "perf_counter", clock)
    step = sleeping_step(setup_s=0.05, call_s=0.005, sleep=clock.sleep)
    assert first_call(step) == pytest.approx(0.055)  # the cold call: setup (a compiled forward) included
    assert warm_up(step, calls=2) == pytest.approx(0.005)  # the setup is outside the measured part


def test_run_passes_the_setup_results_to_the_call_and_scopes_only_the_setup():
    entered = []

    class Scope:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    step = sleeping_step(setup_s=0, call_s=0)
    assert step.run(lambda fn, *args, **kwargs: (fn, args, kwargs), setup_scope=Scope()) == (time.sleep, (0,), {})
    assert entered == [True]
    forward = build_step(case("forward", optimizer=None, batch_size=2))
    assert forward.run(lambda fn, *args, **kwargs: args, setup_scope=Scope()) == ()
    assert entered == [True]  # no setup, no setup scope


def test_a_new_phase_is_one_builder_in_the_phase_table(monkeypatch):
    def double_forward(w):
        return (lambda: w.run_model(w.inputs) * 2), None

    monkeypatch.setitem(PHASE_BUILDERS, "double_forward", double_forward)
    step = build_step(case("double_forward", optimizer=None, batch_size=2))
    with torch.no_grad():
        torch.testing.assert_close(step.run(), 2 * step.model(step.batch.first))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unknown phase 'double_forward'; phases with a builder: forward"):
        build_step(case("double_forward", optimizer=None))


def test_measure_times_the_bare_step_then_runs_every_pass_and_a_registered_one():
    class Ratio:
        name = "test_first_to_median"

        def run(self, step, timing):
            return {"test_first_to_median": timing.first_call_s / timing.median_s}

    register_pass(Ratio(), Figure("test_first_to_median", Kind.RATIO, "first/median", "test"))
    try:
        benchmark = FakeBenchmark()
        step = measure(benchmark, case("forward", optimizer=None, batch_size=2), max_time=0.1, min_rounds=3)
    finally:
        unregister_pass("test_first_to_median")
        CATALOG.undeclare("test_first_to_median")
    assert benchmark.calls == [step.fn]  # nothing wraps the timed callable
    info = benchmark.extra_info
    assert info["status"] == "ok" and info["test_first_to_median"] > 0
    assert info["samples_per_s"] == pytest.approx(2 / benchmark.stats.stats.median)
    assert not {"median_ci_low_s", "iqr_rel", "noisy"} & set(info)  # the reports derive those
    assert [p.name for p in PASSES] == ["context", "compile", "memory", "flops", "pipeline", "correctness"]


def test_a_pass_returning_an_undeclared_figure_fails_the_case():
    class Sloppy:
        name = "sloppy"

        def run(self, step, timing):
            return {"not_declared_anywhere": 1}

    register_pass(Sloppy())
    try:
        with pytest.raises(ValueError, match="pass 'sloppy' returned undeclared figure"):
            measure(FakeBenchmark(), case("forward", optimizer=None, batch_size=2), max_time=0.1, min_rounds=3)
    finally:
        unregister_pass("sloppy")


def test_pedantic_rounds_follow_the_time_budget():
    assert pedantic_rounds(0.001, max_time=1.0, min_rounds=5) == 1000
    assert pedantic_rounds(10.0, max_time=1.0, min_rounds=5) == 5
    assert pedantic_rounds(0.0, max_time=1.0, min_rounds=5) == 100_000


@pytest.mark.slow
def test_compiled_forward_matches_eager():
    eager = build_step(case("forward", optimizer=None))
    compiled = build_step(case("forward", optimizer=None, mode="compile"))
    torch.testing.assert_close(compiled.fn(), eager.fn(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("frames_before", "cache_hits", "expected"),
                         [(0, 0, "cold"), (2, 0, "cold"), (0, 1, "warm")])
def test_compile_cache_is_warm_after_a_cache_hit_only(frames_before, cache_hits, expected):
    # An earlier compile of the process leaves nothing to reuse: every compiled case resets dynamo.
    from collections import Counter

    from bench.passes.compile_counters import CompileDelta, CompileSnapshot
    from bench.passes.compile_watch import compile_figures
    from bench.passes.base import Timing

    before = CompileSnapshot(frames=frames_before, cache_hits=5)
    first = CompileSnapshot(frames=frames_before + 1, graphs=1, cache_hits=5 + cache_hits).since(before)
    later = CompileDelta(frames=0, graphs=0, breaks=Counter(), guard_failures=[])
    timing = Timing(median_s=1e-3, first_call_s=2.0, compile_first=first, compile_later=later,
                    compile_backend="inductor")
    compiled = SimpleNamespace(case=case("forward", optimizer=None, mode="compile"))
    assert compile_figures(compiled, timing)["compile_cache"] == expected
    eager = SimpleNamespace(case=case("forward", optimizer=None))
    assert compile_figures(eager, timing)["compile_cache"] is None
