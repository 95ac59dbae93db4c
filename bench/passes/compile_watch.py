"""What torch.compile did for a case: its cold and warm compile times, graphs, graph breaks (with
reasons and places), recompiles.

The figures of the ``compile`` pass, from what the runner measured and dynamo's counters said
around the first calls and the timed rounds (``bench.passes.compile_counters``, read by the
runner while it times). The cold compile is the first call on the case's own empty compile
cache (``bench.workloads.backend.private_compile_cache``); the warm one is the same compile
right after, dynamo reset and inductor's in-memory caches emptied, on the on-disk cache the
cold one filled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.schema.figures import Figure, Kind, View

if TYPE_CHECKING:
    from bench.passes.base import Timing
    from bench.workloads.step import Step

_T, _H, _D = (frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY}),
              frozenset({View.DETAIL, View.HISTORY}))
FIGURES = (
    Figure("compile_time_s", Kind.SECONDS, "cold compile", "compile",
           "the first, compiling call, on the case's own empty compile cache: what a machine that never "
           "compiled the model pays", views=_T),
    Figure("compile_warm_s", Kind.SECONDS, "warm compile", "compile",
           "the same compile again at once, dynamo reset, on the on-disk cache the cold compile filled: "
           "what a second run on this machine pays", views=_T),
    Figure("compile_backend", Kind.TEXT, "backend", "compile", views=_H),
    Figure("compile_cache", Kind.TEXT, "compile cache", "compile",
           "of the cold compile: cold when it hit no compile cache (FX graph, AOTAutograd), warm when it did "
           "(its time is then not a cold one)", views=_T),
    Figure("graph_count", Kind.COUNT, "graphs", "compile", deterministic=True, views=_D),
    Figure("graph_break_count", Kind.COUNT, "graph breaks", "compile", deterministic=True, views=_D),
    Figure("graph_breaks", Kind.TEXT, "break reasons", "compile",
           "each graph break's reason and where: file:line, '(inside torch)' for torch's own code (then the "
           "nearest caller outside it)", views=_D),
    Figure("recompiles", Kind.COUNT, "recompiles", "compile", deterministic=True, views=_D),
    Figure("recompile_reasons", Kind.TEXT, "recompile reasons", "compile", views=_D),
)


def compile_figures(step: Step, timing: Timing) -> dict[str, Any]:
    """Graphs and breaks of the cold compile; every frame compiled after the warm one is a recompile."""
    if step.case.mode != "compile":
        return dict(compile_time_s=None, compile_warm_s=None, compile_backend=None, compile_cache=None)
    first, later = timing.compile_first, timing.compile_later
    return dict(compile_time_s=timing.first_call_s, compile_warm_s=timing.compile_warm_s,
                compile_backend=timing.compile_backend, compile_cache=first.cache,
                graph_count=first.graphs + later.graphs, graph_break_count=sum(first.breaks.values()),
                graph_breaks=first.break_reasons, recompiles=later.frames,
                recompile_reasons=later.guard_failures[:5])
