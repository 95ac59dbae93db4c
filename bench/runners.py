"""Runners: who measures a case. conftest picks one per run; the phase functions call it.

``InProcessRunner`` builds, times and measures the step in the pytest process itself;
``IsolatedRunner`` (``--isolate``) hands each case to a fresh child pytest (``bench.isolate``)
that measures it in-process and records its row; ``DistributedRunner`` launches a
distributed case's ranks with torchrun (``bench.distributed``) and records the row rank 0
gathered. Another runner is one more class with this ``measure`` method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from . import distributed, isolate
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


@dataclass
class DistributedRunner:
    """A distributed case (``--distributed ddp|fsdp``): its ranks run under torchrun, and node 0
    records the row of what rank 0 gathered. A rendezvous that never happens stops the run
    (exit 2, the rows already written kept); a rank that fails fails its case only."""

    launch: distributed.Launch
    node: pytest.Item
    writer: RunWriter
    last_step: Step | None = None  # never set: the step lived in the ranks

    def measure(self, benchmark: Any, case: Case) -> None:
        settings = self.launch.settings
        if not settings.records_rows():
            self.node.stash[MEASURED_ELSEWHERE] = True  # node 0 records every row
            if not settings.multi_node(case):
                pytest.skip(f"the {case.world_size}-rank case runs on node 0 alone")
        try:
            result = distributed.run_case(self.launch, case)
        except distributed.RendezvousFailure as exc:
            pytest.exit(str(exc), returncode=2)
        except distributed.RankFailure as exc:
            if exc.status is Status.SKIPPED:
                pytest.skip(str(exc))
            raise
        if result is None:
            return  # this node lent its ranks; node 0 has the row
        self.node.stash[MEASURED_ELSEWHERE] = True
        self.writer.write(distributed.row(case, result, self.writer.run_dir, self.node.name, self.node.nodeid))
