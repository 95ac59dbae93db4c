"""The passes: the untimed work after a case's timing, each returning figures it declares.

This is the one place that lists bench's passes and their figures. A runner times the step,
then runs ``passes()``: the built-in ``PASSES`` in this order, then the passes plug-ins
registered, then the run's extra ones (``--profile``, ``--max-batch``). A pass module defines
its ``FIGURES`` and the function (or class) that produces them; adding one is a module here
plus its lines below. ``CATALOG`` holds every declared figure; the reports read it (nothing
here imports torch at import).

A plug-in (``-p my_plugin``) adds a figure and the pass that produces it without editing
bench::

    from bench.passes import Figure, FunctionPass, Kind, View, register_pass

    def ratio(step, timing):
        return {"my_ratio": timing.median_s / timing.first_call_s}

    register_pass(FunctionPass("my_ratio", ratio),
                  Figure("my_ratio", Kind.RATIO, "my ratio", "my_ratio",
                         views=frozenset({View.TABLE, View.HISTORY})))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from bench.passes import (compile_watch, correctness, counts, distributed, flops, max_batch, memory,
                           pipeline, profiling, timing)
from bench.passes.base import FunctionPass, Pass, Timing
from bench.schema.figures import Catalog, Figure, Kind, View

if TYPE_CHECKING:
    from bench.workloads.step import Step

__all__ = ["CATALOG", "PASSES", "Figure", "FunctionPass", "Kind", "Pass", "Timing", "View", "passes",
           "register_pass", "run_passes", "unregister_pass"]

# Every in-process measurement runs these, in this order, after the timed rounds.
PASSES: tuple[Pass, ...] = (
    FunctionPass("context", timing.context_figures),
    FunctionPass("compile", compile_watch.compile_figures),
    FunctionPass("memory", memory.memory_figures),
    FunctionPass("flops", flops.flop_figures),
    FunctionPass("pipeline", pipeline.pipeline_figures),
    FunctionPass("correctness", correctness.check),
)

# Every figure bench produces. The last four come from passes a run adds (--profile,
# --max-batch) or from other runners (instruction counts, distributed ranks).
CATALOG = Catalog(*timing.FIGURES, *compile_watch.FIGURES, *memory.FIGURES, *flops.FIGURES,
                  *profiling.FIGURES, *pipeline.FIGURES, *correctness.FIGURES, *counts.FIGURES,
                  *max_batch.FIGURES, *distributed.FIGURES)

_REGISTERED: list[Pass] = []  # plug-ins' passes, run after the built-in ones


def register_pass(pass_: Pass, *figures: Figure) -> Pass:
    """Run ``pass_`` after the built-in passes of every in-process measurement, and declare
    the figures it returns."""
    if any(p.name == pass_.name for p in (*PASSES, *_REGISTERED)):
        raise ValueError(f"a pass named {pass_.name!r} is already registered")
    CATALOG.declare(*figures)
    _REGISTERED.append(pass_)
    return pass_


def unregister_pass(name: str) -> None:
    """Forget a registered pass (for tests and plug-ins that replace one)."""
    _REGISTERED[:] = [p for p in _REGISTERED if p.name != name]


def passes(extra: Iterable[Pass] = ()) -> tuple[Pass, ...]:
    """The passes of a measurement, in order: built-in, registered, then ``extra`` (--profile)."""
    return (*PASSES, *_REGISTERED, *extra)


def run_passes(step: Step, timing: Timing, selected: Sequence[Pass]) -> dict[str, Any]:
    """Every pass's figures, checked against the declarations."""
    out: dict[str, Any] = {}
    for pass_ in selected:
        produced = pass_.run(step, timing)
        undeclared = [k for k in produced if CATALOG.get(k) is None]
        if undeclared:
            raise ValueError(f"pass {pass_.name!r} returned undeclared figure(s) {', '.join(undeclared)}; "
                             "declare them with register_pass(pass, *figures) (or bench.passes.CATALOG.declare)")
        out.update(produced)
    return out
