"""What dynamo compiled, read from its own counters before and after each stage of a measurement.

``torch._dynamo.utils.counters`` holds a frame conversion per compile, ``unique_graphs`` and the
``graph_break`` reasons; ``guard_failures`` says why a recompile happened. Where each graph
break happened comes from ``torch._dynamo.utils.graph_break_reasons``, which dynamo fills
during the real compile with the user stack of every break (no second ``explain`` run). A
``CompileSnapshot`` reads them; the difference of two is a ``CompileDelta``. No torch at import.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


@dataclass(frozen=True)
class CompileSnapshot:
    frames: int = 0
    graphs: int = 0
    breaks: Counter = field(default_factory=Counter)
    guard_failures: dict = field(default_factory=dict)
    cache_hits: int = 0  # inductor's FX-graph cache and AOTAutograd's cache
    break_sites: tuple[str, ...] = ()  # every graph break dynamo recorded, with where it happened

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
            break_sites=list(dict.fromkeys(self.break_sites[len(earlier.break_sites):])),
        )


@dataclass(frozen=True)
class CompileDelta:
    frames: int  # frames (re)compiled
    graphs: int
    breaks: Counter
    guard_failures: list[str]
    cache_hits: int = 0
    break_sites: list[str] = field(default_factory=list)  # each break's reason and place, once

    @property
    def cache(self) -> str:
        """"warm" when this compile hit a compile cache (FX graph, AOTAutograd); dynamo's own
        in-memory work is reset before every compiled case."""
        return "warm" if self.cache_hits else "cold"

    @property
    def break_reasons(self) -> list[str]:
        """Each break's reason and where it happened; the reasons alone where dynamo kept no place."""
        return self.break_sites or [_first_line(reason) for reason in self.breaks]


def _guard(failure: object) -> str:
    """'2/3: self.calls == 3   # source comment (HINT ...)' -> '2/3: self.calls == 3'."""
    return " ".join(_first_line(str(failure)).split("  #")[0].split())


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def break_site(reason: str, stack: Sequence[Any], torch_dir: Path) -> str:
    """``REASON at FILE:LINE``: the innermost frame of the break's user stack, its file relative
    to torch's folder and marked ``(inside torch)`` when torch's own code broke the graph (then
    the nearest frame outside torch, if any, as ``called from``), else relative to the
    working folder."""
    if not stack:
        return _first_line(reason)
    inner = stack[-1]
    site = f"{_first_line(reason)} at {_place(inner, torch_dir)}"
    if not _inside(inner.filename, torch_dir):
        return site
    caller = next((f for f in reversed(stack) if not _inside(f.filename, torch_dir)), None)
    return site + (f", called from {_place(caller, torch_dir)}" if caller is not None else "")


def _inside(filename: str, torch_dir: Path) -> bool:
    return Path(filename).resolve().is_relative_to(torch_dir)


def _place(frame: Any, torch_dir: Path) -> str:
    path = Path(frame.filename).resolve()
    if path.is_relative_to(torch_dir):
        return f"{path.relative_to(torch_dir.parent).as_posix()}:{frame.lineno} (inside torch)"
    shown = os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    return f"{Path(shown).as_posix()}:{frame.lineno}"


def _break_sites() -> tuple[str, ...]:
    try:
        import torch
        from torch._dynamo.utils import graph_break_reasons
    except ImportError:  # pragma: no cover - a torch without the records
        return ()
    torch_dir = Path(torch.__file__).resolve().parent
    return tuple(break_site(r.reason, r.user_stack, torch_dir) for r in graph_break_reasons)


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
        break_sites=_break_sites(),
    )
