"""Passes: the untimed work after a case's timing, each returning declared figures.

``bench.harness.measure`` times the step, then runs every pass in order and puts what each
returns into the result row (pytest-benchmark's ``extra_info``). A pass has a ``name`` and
``run(step, timing) -> dict[str, Any]`` whose keys are figures declared with
``bench.figures.declare`` (anything else is an error). The built-in passes live beside
their figure declarations (context and throughput in ``bench.timing``, ``bench.compile_watch``,
``bench.memory``, ``bench.flops``); ``--profile`` adds ``bench.profile_plugin``'s.

A plug-in (``-p my_plugin``) adds a figure and the pass that produces it without editing
bench::

    from bench.figures import Figure, Kind, View
    from bench.passes import register_pass

    class Ratio:
        name = "my_ratio"
        def run(self, step, timing):
            return {"my_ratio": timing.median_s / timing.first_call_s}

    register_pass(Ratio(), Figure("my_ratio", Kind.RATIO, "my ratio", "my_ratio",
                                  views=frozenset({View.TABLE, View.HISTORY})))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence

from . import figures as schema

if TYPE_CHECKING:
    from .compile_watch import CompileDelta
    from .step import Step


@dataclass(frozen=True)
class Timing:
    """What the timed part of a measurement produced, for the passes after it."""

    median_s: float
    first_call_s: float  # the first call, setup included (for compile mode: the cold compile)
    compile_first: CompileDelta  # what the first call compiled
    compile_later: CompileDelta  # frames compiled after it, up to the end of the timed rounds
    compile_backend: str


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


# Built-in passes add themselves here from their own modules (which bench.harness imports),
# in the order they run; plug-ins' passes go to _REGISTERED and run after them.
_BUILTIN: list[Pass] = []
_REGISTERED: list[Pass] = []


def builtin(pass_: Pass) -> Pass:
    """Add one of bench's own passes (called by the module that defines it, at import)."""
    _BUILTIN.append(pass_)
    return pass_


def register_pass(pass_: Pass, *figures: schema.Figure) -> Pass:
    """Run ``pass_`` after the built-in passes of every in-process measurement, and declare
    the figures it returns."""
    if any(p.name == pass_.name for p in (*_BUILTIN, *_REGISTERED)):
        raise ValueError(f"a pass named {pass_.name!r} is already registered")
    schema.declare(*figures)
    _REGISTERED.append(pass_)
    return pass_


def unregister_pass(name: str) -> None:
    """Forget a registered pass (for tests and plug-ins that replace one)."""
    _REGISTERED[:] = [p for p in _REGISTERED if p.name != name]


def builtin_passes() -> tuple[Pass, ...]:
    """bench's own passes in a fixed order, that of the modules declaring their figures
    (whichever module a process happened to import first)."""
    order = schema.DECLARING_MODULES

    def rank(pass_: Pass) -> int:
        module = getattr(pass_, "fn", pass_).__module__
        return order.index(module) if module in order else len(order)

    return tuple(sorted(_BUILTIN, key=rank))


def passes(extra: Iterable[Pass] = ()) -> tuple[Pass, ...]:
    """The passes of a measurement, in order: built-in, registered, then ``extra`` (--profile)."""
    return (*builtin_passes(), *_REGISTERED, *extra)


def run_passes(step: Step, timing: Timing, selected: Sequence[Pass]) -> dict[str, Any]:
    """Every pass's figures, checked against the declarations."""
    out: dict[str, Any] = {}
    for pass_ in selected:
        produced = pass_.run(step, timing)
        undeclared = [k for k in produced if schema.get(k) is None]
        if undeclared:
            raise ValueError(f"pass {pass_.name!r} returned undeclared figure(s) {', '.join(undeclared)}; "
                             "declare them with bench.figures.declare (or register_pass(pass, *figures))")
        out.update(produced)
    return out
