"""Runners: who measures a case. conftest picks one per run; the phase functions call it.

``InProcessRunner`` builds, times and measures the step in the pytest process itself;
``IsolatedRunner`` (``--isolate``) hands each case to a fresh child pytest (``bench.isolate``)
that measures it in-process and records its row. Another runner (a torchrun-launched
distributed one, say) is one more class with this ``measure`` method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from . import isolate
from .cases import Case
from .faults import Status
from .harness import dry_run, measure
from .passes import Pass
from .results import RunWriter
from .step import Step

# Set on a test item whose row a child process recorded (the parent writes none for it).
MEASURED_ELSEWHERE = pytest.StashKey[bool]()


class Runner(Protocol):
    # The step the last measure() timed, when it ran in this process (the accuracy check
    # times it again); None otherwise.
    last_step: Step | None

    def measure(self, benchmark: Any, case: Case) -> Step | None:
        """Measure ``case``: its figures end in ``benchmark.extra_info`` or a recorded row;
        a failure raises (or fails/skips the test) with the case's status."""
        ...


@dataclass
class InProcessRunner:
    """Times the step in this process, then runs the passes."""

    max_time: float
    min_rounds: int
    compile_backend: str = "inductor"
    extra_passes: list[Pass] = field(default_factory=list)  # --profile's
    dry_run: bool = False  # --benchmark-disable: build and run each step once, time nothing
    last_step: Step | None = None

    def measure(self, benchmark: Any, case: Case) -> Step:
        if self.dry_run:
            self.last_step = dry_run(benchmark, case, compile_backend=self.compile_backend)
        else:
            self.last_step = measure(benchmark, case, max_time=self.max_time, min_rounds=self.min_rounds,
                                     compile_backend=self.compile_backend, extra_passes=self.extra_passes)
        return self.last_step


@dataclass
class IsolatedRunner:
    """--isolate: each case is measured by a child process writing into the same run folder."""

    config: pytest.Config
    node: pytest.Item
    writer: RunWriter
    last_step: Step | None = None  # never set: the step lived in the child

    def measure(self, benchmark: Any, case: Case) -> None:
        self.node.stash[MEASURED_ELSEWHERE] = True  # the child records the row
        row = isolate.run_case(self.config, case, self.writer.run_dir)
        self.writer.tally(row)
        extra = row.get("extra_info") or {}
        status = Status(extra.get("status", Status.ERROR.value))
        if status is Status.SKIPPED:
            pytest.skip(extra.get("error") or "skipped")
        if not status.measured:
            pytest.fail(f"{status}: {extra.get('error')}", pytrace=False)
