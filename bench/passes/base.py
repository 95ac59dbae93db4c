"""What a pass is: the untimed work after a case's timing, returning declared figures.

A runner times the step, then runs every pass in order (``bench.passes.PASSES``, then the
registered plug-ins' and the run's extra ones) and puts what each returns into the result row.
A pass has a ``name`` and ``run(step, timing) -> dict[str, Any]`` whose keys are declared
figures. ``Timing`` is what the timed part produced, for the passes after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from bench.passes.compile_counters import CompileDelta
    from bench.workloads.step import Step


@dataclass(frozen=True)
class Timing:
    """What the timed part of a measurement produced, for the passes after it."""

    median_s: float
    first_call_s: float  # the first call, setup included (compile mode: the cold compile, private empty cache)
    compile_first: CompileDelta  # what the first call compiled
    compile_later: CompileDelta  # frames compiled after it (but the warm compile), up to the end of the timed rounds
    compile_backend: str
    compile_warm_s: float | None = None  # compile mode: the same compile again, on the cache the first filled


class Pass(Protocol):
    name: str

    def run(self, step: Step, timing: Timing) -> dict[str, Any]:
        """Figures of the case: declared names -> plain values (seconds, bytes, counts...)."""
        ...


@dataclass(frozen=True)
class FunctionPass:
    """A pass made of a plain function ``(step, timing) -> figures``."""

    name: str
    fn: Callable[[Step, Timing], dict[str, Any]]

    def run(self, step: Step, timing: Timing) -> dict[str, Any]:
        return self.fn(step, timing)
