"""Correctness beside speed: an untimed check of compile, AMP and channels_last cases.

For a case in compile mode, under ``--amp`` or in ``channels_last``, the pass runs the step's
path once more (untimed) and compares its output, and for the training phases the gradients
of one backward, with an exact run: eager, contiguous, float64, on the same weights and
batch. Eager float32 contiguous (the case's dtype; under the case's autocast for ``--amp``)
runs beside it: the case may err by ``CONDITIONING`` times eager's own error plus the
tolerance of its precision. The error of a quantity is normwise, ``||a - b|| / ||b||``
(2-norms; elementwise relative errors blow up where the reference is near zero), the
gradients of all parameters taken as one vector. Past its bound the case ends
``wrong_result`` (``bench.schema.status``) with its largest error in the message; within it the row
gets ``max_abs_error``, ``max_rel_error`` (against float64) and ``correct``.

Tolerances (relative, normwise): float32 1e-4 — reordered float32 reductions (inductor's
fusions, channels_last convolutions) differ by a few units of 2^-24 per operation, far
below it; TF32 on CUDA (cuDNN's default for convolutions) rounds inputs to 10 mantissa bits,
so float32 on CUDA with TF32 on gets 1e-2 as float16 does; float16 (10 bits, unit
roundoff 2^-11 ~ 5e-4) and bfloat16 (7 bits, 2^-8 ~ 4e-3) accumulate a few roundoffs
over a network's depth: 1e-2 and 3e-2, wide enough for that, far below a wrong result.

This module imports no torch at import (the reports read its figure declarations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.schema.figures import Figure, Kind, View
from bench.schema.status import WrongResult

if TYPE_CHECKING:
    from bench.passes.base import Timing
    from bench.workloads.step import Step, Workload
    from models import Batch

TOLERANCES = {"float32": 1e-4, "tf32": 1e-2, "float16": 1e-2, "bfloat16": 3e-2}
TRAINING_PHASES = ("backward", "optimizer_step", "train_step")
# How far past eager's own error (against float64) a case may be: a path that only reorders
# the arithmetic errs by about eager's amount; where train-mode batch norm over a handful of
# values makes the model ill-conditioned it varies by more (measured: resnet18 at 16 px,
# batch 2, channels_last vs contiguous float32: 5x eager's error). A wrong result (an output
# off by one, a missing term) is off by far more.
CONDITIONING = 10.0

FIGURES = (
    Figure("max_abs_error", Kind.NUMBER, "max abs error", "correctness",
           help="largest absolute difference from eager (outputs, and gradients when training)",
           views=frozenset({View.TABLE, View.HISTORY})),
    Figure("max_rel_error", Kind.RATIO, "max rel error", "correctness",
           help="largest normwise relative difference from eager: ||a-b|| / ||b|| (output; all gradients)",
           views=frozenset({View.TABLE, View.HISTORY})),
    Figure("correct", Kind.FLAG, "correct", "correctness",
           help="within the tolerance of the case's lowest precision", views=frozenset({View.HISTORY})),
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


def _outcome(w: Workload, run_model: Any, model: Any, batch: Batch, autocast: Any, training: bool) -> list:
    """Every floating output and (training) all gradients as one vector, in float64 for comparing.
    One forward: with the targets for a model that computes its own loss, when training."""
    import torch

    import models

    with torch.set_grad_enabled(training):
        with autocast():
            out = batch.call(run_model, with_target=training and w.criterion is None)
            loss = w.loss_of(out, batch) if training else None
        outputs = [t.detach().double().flatten() for t in models.floating_tensors(out) if t.dim()]
        result = [torch.cat(outputs) if outputs else torch.zeros(0, dtype=torch.float64)]
        if training:
            model.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
            result.append(torch.cat(grads).double() if grads else torch.zeros(0, dtype=torch.float64))
    return result


def _errors(got: list, want: list) -> list[tuple[float, float]]:
    """(max absolute, normwise relative) error of each quantity."""
    import torch

    out = []
    for a, b in zip(got, want):
        a = a.to(b.device).view_as(b)
        norm, err = torch.linalg.vector_norm(b).item(), torch.linalg.vector_norm(a - b).item()
        diff = (a - b).abs().max().item() if b.numel() else 0.0
        out.append((diff, err / norm if norm > 0 else (0.0 if err == 0 else float("inf"))))
    return out


def compare(step: Step) -> dict[str, Any]:
    """The case's errors against an exact (float64, eager) run on the same weights and batch,
    and the bound it must stay within: CONDITIONING times eager's own error at the case's precision (what
    the precision costs on this model and batch) plus the precision's tolerance. Train-mode
    batch norm on small batches makes gradients ill-conditioned (measured: resnet18 at 16 px,
    batch 2, channels_last float32 vs contiguous: 0.7 normwise), so a fixed tolerance alone
    would call rounding wrong; eager's own error measures that conditioning."""
    import copy
    from contextlib import nullcontext

    import torch

    w, c = step.workload, step.case
    training = c.phase in TRAINING_PHASES

    def eager(dtype: torch.dtype) -> torch.nn.Module:
        # A copy, not a fresh build: the same weights and any state a module keeps besides them.
        return copy.deepcopy(w.model).to(dtype=dtype, memory_format=torch.contiguous_format)

    exact, base = eager(torch.float64), eager(getattr(torch, c.dtype))
    # Dropout draws differ between paths: compare with it off (the rest of training mode kept).
    for m in (w.model, exact, base):
        for sub in m.modules():
            if isinstance(sub, torch.nn.modules.dropout._DropoutNd):
                sub.eval()
    batch = w.batch.map(lambda t: t.contiguous())  # floating tensors only change dtype below
    want = _outcome(w, exact, exact, batch.floating(lambda t: t.double()), nullcontext, training)
    got = _outcome(w, w.run_model, w.model, w.batch, w.autocast, training)
    ref = _outcome(w, base, base, batch, w.autocast, training)
    _, tol = tolerance(step)
    worst = {"max_abs_error": 0.0, "max_rel_error": 0.0, "where": "output", "bound": tol, "correct": True}
    for where, (diff, rel), (_, base_rel) in zip(("output", "gradients"), _errors(got, want), _errors(ref, want)):
        bound = CONDITIONING * base_rel + tol
        worst["max_abs_error"] = max(worst["max_abs_error"], diff)
        if not rel <= bound:  # NaN is wrong too
            worst.update(correct=False, where=where, bound=bound, max_rel_error=rel)
        elif worst["correct"] and rel >= worst["max_rel_error"]:
            worst.update(where=where, bound=bound, max_rel_error=rel)
    return worst


def check(step: Step, timing: Timing) -> dict[str, Any]:
    if not needs_check(step):
        return {}
    worst = compare(step)
    precision, tol = tolerance(step)
    if not worst["correct"]:
        raise WrongResult(
            f"wrong result: relative error {worst['max_rel_error']:.3g} in the {worst['where']} (max absolute "
            f"error {worst['max_abs_error']:.3g}) exceeds {worst['bound']:.3g}: {CONDITIONING:g}x eager {step.case.dtype} "
            f"contiguous's own error plus the {precision} tolerance {tol:g} (both against float64 eager)")
    return {"max_abs_error": worst["max_abs_error"], "max_rel_error": worst["max_rel_error"], "correct": True}
