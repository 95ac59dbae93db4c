"""``--max-batch``: the largest batch that fits, found per case and reported as a figure.

A batch is never shrunk silently (timm #1226): an out-of-memory case is a row with status
``oom``, and the batch the model does fit is a figure of its own, ``max_batch``.

"Fits" means one step runs (two, as the memory pass does) without running out of memory
and its peak stays within the budget:
- CUDA: the device's memory (``--max-batch-memory`` can lower it); the allocator's own
  out-of-memory error is the usual answer.
- CPU: ``--max-batch-memory`` (default: a quarter of the memory available when the run
  starts): the memory pass's peak of live tensor bytes must stay within it. A CPU machine
  swaps or has its process killed long before torch reports running out, so the budget,
  not an error, is the limit there.

The search doubles from the case's batch size until a batch does not fit (halving first if
the case's own batch does not), then bisects to the exact largest batch. ``--max-batch-limit``
bounds it; a case still fitting there reports the limit, with ``max_batch_capped`` set.
Each try builds the case anew at that batch size, outside the timed rounds, after the
other passes.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from bench.passes.base import Timing
from bench.schema.case import STEP_PHASES, Case
from bench.schema.figures import Figure, Kind, View
from bench.schema.status import Status, classify

if TYPE_CHECKING:
    from bench.workloads.step import Step

FIGURES = (
    Figure("max_batch", Kind.COUNT, "max batch", "max_batch",
           "the largest batch whose step fits in the memory budget (--max-batch)",
           views=frozenset({View.TABLE, View.HISTORY})),
    Figure("max_batch_budget_bytes", Kind.BYTES, "max-batch budget", "max_batch",
           "the memory a step's peak had to stay within", views=frozenset({View.HISTORY})),
    Figure("max_batch_capped", Kind.FLAG, "capped", "max_batch",
           "the search stopped at --max-batch-limit with the batch still fitting",
           views=frozenset({View.HISTORY})),
)

DEFAULT_LIMIT = 65536


@dataclass(frozen=True)
class MaxBatchConfig:
    budget_bytes: int | None  # None: the device's own memory (CUDA) or the CPU default
    limit: int = DEFAULT_LIMIT


def default_cpu_budget() -> int:
    """A quarter of the memory available now: room for the interpreter, the allocator's caches
    and whatever else the machine runs."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


def budget_for(case: Case, config: MaxBatchConfig) -> int:
    if case.device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return min(free, config.budget_bytes or free)
    return config.budget_bytes or default_cpu_budget()


def fits(case: Case, batch_size: int, budget: int, compile_backend: str) -> bool:
    """Whether ``case`` at ``batch_size`` runs its step with a peak within ``budget``."""
    from bench.passes.memory import measure_memory
    from bench.workloads.build import build_step

    step = None
    try:
        step = build_step(replace(case, batch_size=batch_size), compile_backend=compile_backend)
        peak = measure_memory(step)["mem_peak_bytes"]
    except Exception as exc:  # out of memory is an answer; anything else is the case's failure
        if classify(exc) is not Status.OOM:
            raise
        return False
    finally:
        step = None  # free the try's model and batch before the next one is built
        gc.collect()
        if case.device == "cuda":
            import torch

            torch.cuda.empty_cache()
    return peak is not None and peak <= budget


def search(fit: Callable[[int], bool], start: int, limit: int = DEFAULT_LIMIT) -> tuple[int, bool]:
    """The largest batch in [1, limit] for which ``fit`` holds, assuming that whatever fits,
    every smaller batch fits too; and whether the search stopped at ``limit`` still fitting.
    0 when not even one sample fits."""
    good, bad = 0, None
    batch = min(max(start, 1), limit)
    if fit(batch):
        good = batch
        while batch < limit:
            batch = min(batch * 2, limit)
            if not fit(batch):
                bad = batch
                break
            good = batch
        if bad is None:
            return good, True
    else:
        bad = batch
        while batch > 1:
            batch //= 2
            if fit(batch):
                good = batch
                break
            bad = batch
        if good == 0:
            return 0, False
    while bad - good > 1:  # bisect: good fits, bad does not
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fit(middle) else (good, middle)
    return good, False


@dataclass(frozen=True)
class MaxBatchPass:
    config: MaxBatchConfig
    name: str = "max_batch"

    def run(self, step: Step, timing: Timing) -> dict[str, Any]:
        case = step.case
        if case.phase not in STEP_PHASES:  # a loader's batch is the data's, not the model's
            return {}
        budget = budget_for(case, self.config)
        found, capped = search(lambda b: fits(case, b, budget, timing.compile_backend),
                               case.batch_size, self.config.limit)
        return dict(max_batch=found, max_batch_budget_bytes=budget, max_batch_capped=capped)
