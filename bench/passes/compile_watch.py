"""What torch.compile did for a case: graphs, graph breaks (with reasons), recompiles.

The figures of the ``compile`` pass, from what dynamo's counters said around the first call and
the timed rounds (``bench.passes.compile_counters``, read by the runner while it times).
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
    Figure("compile_time_s", Kind.SECONDS, "compile", "compile", "the first, compiling call", views=_T),
    Figure("compile_backend", Kind.TEXT, "backend", "compile", views=_H),
    Figure("compile_cache", Kind.TEXT, "compile cache", "compile",
           "warm: an earlier case of this process compiled, or a compile cache (FX graph, AOTAutograd) "
           "hit; cold otherwise", views=_T),
    Figure("graph_count", Kind.COUNT, "graphs", "compile", deterministic=True, views=_D),
    Figure("graph_break_count", Kind.COUNT, "graph breaks", "compile", deterministic=True, views=_D),
    Figure("graph_breaks", Kind.TEXT, "break reasons", "compile",
           "each graph break's reason and where: file:line, '(inside torch)' for torch's own code (then the "
           "nearest caller outside it)", views=_D),
    Figure("recompiles", Kind.COUNT, "recompiles", "compile", deterministic=True, views=_D),
    Figure("recompile_reasons", Kind.TEXT, "recompile reasons", "compile", views=_D),
)


def compile_figures(step: Step, timing: Timing) -> dict[str, Any]:
    """Graphs and breaks of the cold compile; every frame compiled after it is a recompile."""
    if step.case.mode != "compile":
        return dict(compile_time_s=None, compile_backend=None, compile_cache=None)
    first, later = timing.compile_first, timing.compile_later
    return dict(compile_time_s=timing.first_call_s, compile_backend=timing.compile_backend,
                compile_cache=first.cache,
                graph_count=first.graphs + later.graphs, graph_break_count=sum(first.breaks.values()),
                graph_breaks=first.break_reasons, recompiles=later.frames,
                recompile_reasons=later.guard_failures[:5])
