"""What a runner is: who measures a case. bench/plugin.py picks one per case; the phase functions call it.

``bench.runners.inprocess.InProcessRunner`` builds, times and measures the step in the pytest
process itself; ``bench.runners.isolated.IsolatedRunner`` (``--isolate``) hands each case to a
fresh child pytest that measures it in-process and records its row;
``bench.runners.distributed.DistributedRunner`` launches a distributed case's ranks with
torchrun and records the row rank 0 gathered; ``bench.runners.counting.CountRunner`` (``--metric
instructions``) reads the case's counts from one valgrind worker. Another runner is one more
module with a class that has this ``measure`` method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pytest

from bench.schema.case import Case

if TYPE_CHECKING:
    from bench.workloads.step import Step

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
