"""What torch.compile did for a case: graphs, graph breaks (with reasons), recompiles.

Read from dynamo's own counters (``torch._dynamo.utils.counters``: a frame conversion
per compile, ``unique_graphs``, ``graph_break`` reasons) and ``guard_failures`` (why a
recompile happened) before and after each stage of a measurement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .figures import Figure, Kind, View, declare
from .passes import FunctionPass, builtin

if TYPE_CHECKING:
    from .passes import Timing
    from .step import Step

_T, _H, _D = (frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY}),
              frozenset({View.DETAIL, View.HISTORY}))
FIGURES = declare(
    Figure("compile_time_s", Kind.SECONDS, "compile", "compile", "the first, compiling call", views=_T),
    Figure("compile_backend", Kind.TEXT, "backend", "compile", views=_H),
    Figure("compile_cache", Kind.TEXT, "compile cache", "compile",
           "warm: an earlier case of this process compiled, or a compile cache (FX graph, AOTAutograd) "
           "hit; cold otherwise", views=_T),
    Figure("graph_count", Kind.COUNT, "graphs", "compile", deterministic=True, views=_D),
    Figure("graph_break_count", Kind.COUNT, "graph breaks", "compile", deterministic=True, views=_D),
    Figure("graph_breaks", Kind.TEXT, "break reasons", "compile", views=_D),
    Figure("recompiles", Kind.COUNT, "recompiles", "compile", deterministic=True, views=_D),
    Figure("recompile_reasons", Kind.TEXT, "recompile reasons", "compile", views=_D),
)


@dataclass(frozen=True)
class CompileSnapshot:
    frames: int = 0
    graphs: int = 0
    breaks: Counter = field(default_factory=Counter)
    guard_failures: dict = field(default_factory=dict)
    cache_hits: int = 0  # inductor's FX-graph cache and AOTAutograd's cache

    def since(self, earlier: "CompileSnapshot") -> "CompileDelta":
        reasons = []
        for code, failures in self.guard_failures.items():
            reasons += [_guard(f) for f in failures[len(earlier.guard_failures.get(code, ())):]]
        return CompileDelta(
            frames=self.frames - earlier.frames,
            graphs=self.graphs - earlier.graphs,
            breaks=self.breaks - earlier.breaks,
            guard_failures=reasons,
            cache_hits=self.cache_hits - earlier.cache_hits,
            frames_before=earlier.frames,
        )


@dataclass(frozen=True)
class CompileDelta:
    frames: int  # frames (re)compiled
    graphs: int
    breaks: Counter
    guard_failures: list[str]
    cache_hits: int = 0
    frames_before: int = 0  # frames this process compiled before the delta began

    @property
    def cache(self) -> str:
        """"warm" when this compile could reuse earlier work (this process's, a cache's)."""
        return "warm" if self.frames_before or self.cache_hits else "cold"

    @property
    def break_reasons(self) -> list[str]:
        return [_first_line(reason) for reason in self.breaks]


def _guard(failure: object) -> str:
    """'2/3: self.calls == 3   # source comment (HINT ...)' -> '2/3: self.calls == 3'."""
    return " ".join(_first_line(str(failure)).split("  #")[0].split())


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def snapshot() -> CompileSnapshot:
    try:
        from torch._dynamo.utils import counters, guard_failures
    except ImportError:  # pragma: no cover - a torch without dynamo
        return CompileSnapshot()
    return CompileSnapshot(
        frames=int(counters["frames"].get("total", 0)),
        graphs=int(counters["stats"].get("unique_graphs", 0)),
        breaks=Counter(dict(counters["graph_break"])),
        guard_failures={code: list(failures) for code, failures in guard_failures.items()},
        cache_hits=int(counters["inductor"].get("fxgraph_cache_hit", 0))
        + int(counters["aot_autograd"].get("autograd_cache_hit", 0)),
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


COMPILE = builtin(FunctionPass("compile", compile_figures))
