"""What dynamo compiled, read from its own counters before and after each stage of a measurement.

``torch._dynamo.utils.counters`` holds a frame conversion per compile, ``unique_graphs`` and the
``graph_break`` reasons; ``guard_failures`` says why a recompile happened. A ``CompileSnapshot``
reads them; the difference of two is a ``CompileDelta``. No torch at import.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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
