"""Correctness beside speed: an untimed check of compile, AMP and channels_last cases.

For a case in compile mode, under ``--amp`` or in ``channels_last``, the pass runs the case's
own path once more (untimed) on the weights it was built with (rebuilt from the seed: the
timed rounds moved them by a number of steps that depends on the machine's speed) and judges
three quantities apart, each on the inputs the exact path had:

- the **output** of the model on the case's batch;
- when training, the **gradient** of every parameter from one backward;
- for the phases with an optimizer step, every parameter's **change** in one step, taken
  from the same gradients on every path (the float64 ones, rounded to the case's dtype), so
  the step is judged alone: fed each path's own gradients, Adam's update (the gradient over
  its running RMS) would turn a rounding difference in a near-zero gradient into a change of
  up to the learning rate, and the gradient's error would be counted twice.

The ruler is PyTorch's own (``torch._dynamo.utils.same``, its compile accuracy check): the
case's distance to an exact run (eager, contiguous, float64) against eager float32's distance
to it (the case's dtype; under the case's autocast for ``--amp``):

    rms(case - exact) <= multiplier * rms(eager - exact) + tol / 10 * scale

with torch's multipliers (2; 3 below float32 or for a tensor of fewer than 1,000 elements),
each parameter judged alone, and ``scale`` the RMS of the whole quantity (all the gradients,
all the changes), where torch takes 1: a tenth of the tolerance at the quantity's own size,
so a gradient that is zero but for rounding passes and a tensor whose values are wrong fails
whatever its magnitude. A fixed multiple of eager's error fails where eager is lucky: on CPU
eager float32 accumulates batch norm's sums in float64 and compiled code in float32, so where
batch norm's inputs sit far from zero (resnet18 after a few Adam steps) compiled gradients
err 1,000x as much as eager's (3e-3 against 2e-6) and are still right. Hence torch's
cosine-similarity fallback: a tensor also passes when it points the way the exact one does
and has its size, ``1 - cos <= slack`` and ``|norm ratio - 1| <= sqrt(2 * slack)`` with
``slack = min(tol, 1e-2)`` (never looser than torch's 0.99): for float32 an error up to about
1.4% of the tensor, far below what a wrong result (a missing term, an update applied twice,
an output off by one) does. A tensor that passes neither ends the case ``wrong_result``
(``bench.schema.status``) with a message naming the quantity and the parameter; otherwise
the row gets ``max_abs_error``, ``max_rel_error`` (the largest normwise error of a whole
quantity against float64) and ``correct``.

Tolerances (relative): float32 1e-4; TF32 on CUDA (cuDNN's default for convolutions) rounds
inputs to 10 mantissa bits, so float32 on CUDA with TF32 on gets 1e-2 as float16 does;
float16 (unit roundoff 2^-11 ~ 5e-4) and bfloat16 (2^-8 ~ 4e-3) accumulate a few roundoffs
over a network's depth: 1e-2 and 3e-2.

This module imports no torch at import (the reports read its figure declarations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from bench.schema.figures import Figure, Kind, View
from bench.schema.status import WrongResult

if TYPE_CHECKING:
    import torch

    from bench.passes.base import Timing
    from bench.workloads.step import Step, Workload
    from models import Batch

    Tensors = dict[str, torch.Tensor]

TOLERANCES = {"float32": 1e-4, "tf32": 1e-2, "float16": 1e-2, "bfloat16": 3e-2}
TRAINING_PHASES = ("backward", "optimizer_step", "train_step")
STEPPING_PHASES = ("optimizer_step", "train_step")  # the phases with an optimizer step
# torch._dynamo.utils.same: how far past eager's own error a case may be; more for a small
# tensor (noise dominates it) and below float32.
MULTIPLIER, NOISY_MULTIPLIER, SMALL_TENSOR = 2.0, 3.0, 1000
FLOOR = 0.1  # torch's tol / 10, here of the quantity's own scale
COSINE_SLACK_CAP = 1e-2  # torch's cosine threshold, 0.99

OUTPUT, GRADIENTS, CHANGES = "output", "gradients", "changes in one step"
SCALE_OF = {OUTPUT: "the output's", GRADIENTS: "all the gradients'", CHANGES: "all the step's changes'"}

FIGURES = (
    Figure("max_abs_error", Kind.NUMBER, "max abs error", "correctness",
           help="largest absolute difference from float64 eager (output, gradients, one step's changes)",
           views=frozenset({View.TABLE, View.HISTORY})),
    Figure("max_rel_error", Kind.RATIO, "max rel error", "correctness",
           help="largest normwise relative difference from float64 eager, ||a-b|| / ||b||, of the output, "
                "all gradients or all of one step's changes",
           views=frozenset({View.TABLE, View.HISTORY})),
    Figure("correct", Kind.FLAG, "correct", "correctness",
           help="every tensor within torch's accuracy ruler at the case's lowest precision",
           views=frozenset({View.HISTORY})),
)


def needs_check(step: Step) -> bool:
    c = step.case
    return step.workload is not None and not step.is_loop and (
        c.mode == "compile" or c.amp != "off" or c.memory_format != "contiguous")


def tolerance(step: Step) -> tuple[str, float]:
    import torch

    c = step.case
    precision = c.amp if c.amp != "off" else c.dtype
    if precision == "float32" and c.device == "cuda" and (
            torch.backends.cudnn.allow_tf32 or torch.get_float32_matmul_precision() != "highest"):
        precision = "tf32"
    return precision, TOLERANCES[precision]


@dataclass(frozen=True)
class Ruler:
    """torch's accuracy ruler at one precision."""

    precision: str
    tol: float

    def multiplier(self, numel: int) -> float:
        return NOISY_MULTIPLIER if self.precision != "float32" or numel < SMALL_TENSOR else MULTIPLIER

    @property
    def slack(self) -> float:
        """How far from 1 the cosine similarity may be (and, squared, the norm ratio)."""
        return min(self.tol, COSINE_SLACK_CAP)


@dataclass(frozen=True)
class Judgement:
    """One tensor of one quantity, judged against float64."""

    quantity: str  # OUTPUT, GRADIENTS or CHANGES
    name: str  # the parameter ("" for the output)
    numel: int
    error: float  # rms(case - exact)
    eager_error: float  # rms(eager - exact)
    scale: float  # rms(exact)
    bound: float  # multiplier * eager_error + the floor
    multiplier: float
    cosine: float
    norm_ratio: float
    max_abs: float
    within_cosine: bool

    @property
    def correct(self) -> bool:
        return self.error <= self.bound or self.within_cosine  # NaN fails both

    @property
    def what(self) -> str:
        """``the output``, ``the gradient of fc.bias``, ``the change of fc.bias in one step``."""
        if self.quantity == OUTPUT:
            return f"the output {self.name}" if self.name else "the output"
        return f"the gradient of {self.name}" if self.quantity == GRADIENTS else f"the change of {self.name} in one step"

    def relative(self, error: float) -> float:
        return error / self.scale if self.scale > 0 else (0.0 if error == 0 else math.inf)


def _rms(t: torch.Tensor) -> float:
    return t.square().mean().sqrt().item() if t.numel() else 0.0


def judge(quantity: str, name: str, got: torch.Tensor, eager: torch.Tensor, exact: torch.Tensor,
          scale: float, ruler: Ruler) -> Judgement:
    """One tensor against torch's ruler; ``scale`` is the RMS of its whole quantity."""
    import torch

    got, eager = got.to(exact.device).reshape(exact.shape), eager.to(exact.device).reshape(exact.shape)
    error, eager_error = _rms(got - exact), _rms(eager - exact)
    multiplier = ruler.multiplier(exact.numel())
    norm = torch.linalg.vector_norm(exact).item()
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), exact.flatten(), dim=0, eps=1e-300).item()
    norm_ratio = torch.linalg.vector_norm(got).item() / norm if norm > 0 else math.nan
    return Judgement(quantity, name, exact.numel(), error, eager_error, _rms(exact),
                     multiplier * eager_error + FLOOR * ruler.tol * scale, multiplier, cosine, norm_ratio,
                     (got - exact).abs().max().item() if exact.numel() else 0.0,
                     1 - cosine <= ruler.slack and abs(norm_ratio - 1) <= math.sqrt(2 * ruler.slack))


def judge_quantity(quantity: str, got: Tensors, eager: Tensors, exact: Tensors, ruler: Ruler) -> list[Judgement]:
    """Every tensor of a quantity; one missing on a path (a gradient not computed) counts as zeros."""
    import torch

    total = sum(t.numel() for t in exact.values())
    scale = math.sqrt(sum(t.square().sum().item() for t in exact.values()) / total) if total else 0.0
    return [judge(quantity, name, got.get(name, torch.zeros_like(want)), eager.get(name, torch.zeros_like(want)),
                  want, scale, ruler) for name, want in exact.items()]


def normwise(judged: list[Judgement]) -> float:
    """||case - exact|| / ||exact|| of the quantity as one vector."""
    error = math.fsum(j.error ** 2 * j.numel for j in judged)
    size = math.fsum(j.scale ** 2 * j.numel for j in judged)
    return math.sqrt(error / size) if size > 0 else (0.0 if error == 0 else math.inf)


# --- the three paths ---------------------------------------------------------------------------


@dataclass
class Path:
    """How one path runs the model and its optimizer step: the case's own (compiled, autocast,
    channels_last), eager in the case's dtype, or exact (eager float64)."""

    run_model: Callable[..., Any]
    model: torch.nn.Module
    batch: Batch
    loss_of: Callable[[Any, Batch], torch.Tensor]  # the model's own loss, or the criterion's
    own_loss: bool
    autocast: Callable[[], Any]
    optimizer_step: Callable[[], Any] | None = None


def outputs(out: Any) -> Tensors:
    """Every floating tensor of a model's output but a 0-dim loss, in float64: the output's one
    tensor (named ""), or each of a tuple's or dict's by its place ("#0", "#1", ...)."""
    import models

    found = [t.detach().double() for t in models.floating_tensors(out) if t.dim()]
    return {"": found[0]} if len(found) == 1 else {f"#{i}": t for i, t in enumerate(found)}


def forward_backward(path: Path, training: bool) -> dict[str, Tensors]:
    """The output and (training) every parameter's gradient, in float64 for comparing. One forward:
    with the targets for a model that computes its own loss, when training."""
    import torch

    with torch.set_grad_enabled(training):
        with path.autocast():
            out = path.batch.call(path.run_model, with_target=training and path.own_loss)
            loss = path.loss_of(out, path.batch) if training else None
        result = {OUTPUT: outputs(out)}
        if training:
            path.model.zero_grad(set_to_none=True)
            loss.backward()
            result[GRADIENTS] = {n: p.grad.detach().double() for n, p in path.model.named_parameters()
                                 if p.grad is not None}
    return result


def step_changes(path: Path, grads: Tensors) -> Tensors:
    """Every parameter's change in one optimizer step from ``grads``, in float64."""
    import torch

    params = {n: p for n, p in path.model.named_parameters() if n in grads}
    before = {n: p.detach().double().clone() for n, p in params.items()}
    with torch.no_grad():
        for n, p in params.items():
            p.grad = torch.empty_like(p).copy_(grads[n])  # the parameter's layout, as backward gives
    path.optimizer_step()
    return {n: p.detach().double() - before[n] for n, p in params.items()}


def _eager_copy(w: Workload, dtype: torch.dtype) -> torch.nn.Module:
    import copy

    import torch

    # A copy, not a fresh build: the same weights and any state a module keeps besides them.
    return copy.deepcopy(w.model).to(dtype=dtype, memory_format=torch.contiguous_format)


def _reference_step(w: Workload, model: torch.nn.Module, state: Mapping[str, Any]) -> Callable[[], Any]:
    """The case's optimizer over ``model``'s parameters (in the registration's groups), in the
    state the case's optimizer is in."""
    import copy

    import models
    from bench.workloads.optimizers import make_optimizer

    spec = models.get_spec(w.case.model)
    optimizer = make_optimizer(w.case.optimizer, spec.param_groups(model) if spec.param_groups else model.parameters())
    optimizer.load_state_dict(copy.deepcopy(state))  # cast to the copy's dtype; never shared
    return optimizer.step


def paths(w: Workload) -> tuple[Path, Path, Path]:
    """The case's path, eager in its dtype and exact, on the same weights, batch and optimizer state."""
    from contextlib import nullcontext

    import torch

    exact, eager = _eager_copy(w, torch.float64), _eager_copy(w, getattr(torch, w.case.dtype))
    batch = w.batch.map(lambda t: t.contiguous())  # eager's layout; token ids stay integers below
    own = w.criterion is None
    stepping = w.case.phase in STEPPING_PHASES and w.optimizer is not None
    state = w.optimizer.state_dict() if stepping else {}

    def reference_step(model: torch.nn.Module) -> Callable[[], Any] | None:
        return _reference_step(w, model, state) if stepping else None

    return (Path(w.run_model, w.model, w.batch, w.loss_of, own, w.autocast, w.opt_step if stepping else None),
            Path(eager, eager, batch, w.loss_of, own, w.autocast, reference_step(eager)),
            Path(exact, exact, batch.floating(lambda t: t.double()), w.loss_of, own, nullcontext,
                 reference_step(exact)))


def restore_built_weights(w: Workload) -> None:
    """Put back the weights (and buffers) the case was built with, in place: the compiled code
    keeps the same tensors."""
    from bench.workloads.build import seeded_model

    w.model.load_state_dict(seeded_model(w.case, w.rng_seed).state_dict())


def _dropout_off(*modules: torch.nn.Module) -> None:
    """Dropout draws differ between paths: compare with it off (the rest of training mode kept)."""
    import torch

    for module in modules:
        for sub in module.modules():
            if isinstance(sub, torch.nn.modules.dropout._DropoutNd):
                sub.eval()


def compare(step: Step) -> list[Judgement]:
    """Every tensor of every quantity of the case, judged against float64 eager."""
    import torch

    w = step.workload
    restore_built_weights(w)
    case, eager, exact = paths(w)
    _dropout_off(case.model, eager.model, exact.model)
    training = w.case.phase in TRAINING_PHASES
    outcomes = [forward_backward(p, training) for p in (case, eager, exact)]
    if case.optimizer_step is not None:
        dtype = getattr(torch, w.case.dtype)
        shared = {n: g.to(dtype).double() for n, g in outcomes[2][GRADIENTS].items()}  # the same on every path
        for path, outcome in zip((case, eager, exact), outcomes):
            outcome[CHANGES] = step_changes(path, shared)
    ruler = Ruler(*tolerance(step))
    return [j for quantity in outcomes[2]
            for j in judge_quantity(quantity, *(o[quantity] for o in outcomes), ruler)]


def failure(j: Judgement, ruler: Ruler, dtype: str) -> str:
    """Why a tensor is wrong, naming it and both rulers."""
    return (f"wrong result: {j.what} is off float64 eager by {j.relative(j.error):.3g} (normwise; eager {dtype} "
            f"contiguous: {j.relative(j.eager_error):.3g}; max absolute error {j.max_abs:.3g}): beyond {j.multiplier:g}x "
            f"eager's error plus {FLOOR:g}x the tolerance at {SCALE_OF[j.quantity]} scale, and its cosine similarity {j.cosine:.6g} "
            f"(norm ratio {j.norm_ratio:.4g}) is not within 1 - {ruler.slack:g} (norms within "
            f"{math.sqrt(2 * ruler.slack):.2g}): the {ruler.precision} tolerance {ruler.tol:g}")


def _overshoot(j: Judgement) -> float:
    """How far past its bound a tensor is (a NaN error the farthest)."""
    ratio = j.error / j.bound if j.bound > 0 else math.inf
    return math.inf if math.isnan(ratio) else ratio


def check(step: Step, timing: Timing) -> dict[str, Any]:
    if not needs_check(step):
        return {}
    judged = compare(step)
    wrong = [j for j in judged if not j.correct]
    if wrong:
        worst = max(wrong, key=_overshoot)
        raise WrongResult(failure(worst, Ruler(*tolerance(step)), step.case.dtype))
    by_quantity: dict[str, list[Judgement]] = {}
    for j in judged:
        by_quantity.setdefault(j.quantity, []).append(j)
    return {"max_abs_error": max(j.max_abs for j in judged),
            "max_rel_error": max(normwise(js) for js in by_quantity.values()), "correct": True}
