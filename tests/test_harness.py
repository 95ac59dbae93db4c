import pytest
import torch

from bench.cases import Case
from bench.harness import build_step, first_call, pedantic_rounds, warm_up
from bench.optimizers import ManualSGD, list_optimizers, make_optimizer


def case(phase: str, model: str = "fashion_mlp", optimizer: str | None = "adam", **kw) -> Case:
    return Case(phase=phase, model=model, optimizer=optimizer, device="cpu", mode=kw.pop("mode", "eager"), **kw)


def snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("optimizer", list_optimizers())
def test_each_optimizer_changes_parameters_in_one_train_step(optimizer):
    step = build_step(case("train_step", "lenet", optimizer, batch_size=8))
    before = snapshot(step.model)
    step()
    changed = [not torch.equal(a, b) for a, b in zip(before, step.model.parameters())]
    assert all(changed), f"{optimizer} left {changed.count(False)} parameter tensors unchanged"


def test_forward_leaves_gradients_untouched():
    step = build_step(case("forward", optimizer=None))
    assert not step.model.training  # forward is measured in eval mode
    step()
    assert all(p.grad is None for p in step.model.parameters())
    existing = [torch.ones_like(p) for p in step.model.parameters()]
    for p, g in zip(step.model.parameters(), existing):
        p.grad = g.clone()
    step()
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
    step()
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
        step()
    end = spec_loss()
    assert end < 0.5 * start, (start, end)


def _loss_of(step):
    import models

    spec = models.get_spec(step.case.model)
    inputs, target = spec.make_batch(step.case.batch_size)  # same seed: the batch trained on
    criterion = spec.make_criterion()

    def loss() -> float:
        with torch.no_grad():
            return criterion(step.model(spec.prepare(inputs)), target).item()

    return loss


def test_dropout_model_trains_in_train_mode_and_infers_in_eval_mode():
    assert build_step(case("train_step", "fashion_mlp_dropout")).model.training
    assert not build_step(case("forward", "fashion_mlp_dropout", None)).model.training


def test_first_call_and_warm_up_return_durations():
    step = build_step(case("backward", optimizer=None, batch_size=4))
    assert first_call(step) > 0
    assert warm_up(step, calls=2) > 0


def test_pedantic_rounds_follow_the_time_budget():
    assert pedantic_rounds(0.001, max_time=1.0, min_rounds=5) == 1000
    assert pedantic_rounds(10.0, max_time=1.0, min_rounds=5) == 5
    assert pedantic_rounds(0.0, max_time=1.0, min_rounds=5) == 100_000


def test_compiled_forward_matches_eager():
    eager = build_step(case("forward", optimizer=None))
    compiled = build_step(case("forward", optimizer=None, mode="compile"))
    torch.testing.assert_close(compiled.fn(), eager.fn(), rtol=1e-4, atol=1e-5)
