"""Progress for long runs: the case starting, i of N, time elapsed and an estimate of the rest.

The line is written when pytest announces a case (``pytest_runtest_logstart``), before its
setup builds the model: never while a case is being timed. pytest's outcome letter (or
``PASSED`` with ``-v``) then ends the line, so a run reads

    [3/8] backward[lenet-cpu-eager-b64]  0:04 elapsed, ~0:07 left .

The estimate is the mean duration of the finished cases that ran on the same device in
the same mode (a compiled case takes far longer than an eager one), else of all of them.
Turn it off with ``-p no:blitzbench-progress``.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable

import pytest

PLUGIN_NAME = "blitzbench-progress"


def clock_text(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:03``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Estimate:
    """Time left from the durations of finished cases, per kind of case."""

    def __init__(self) -> None:
        self.durations: dict[Hashable, list[float]] = {}

    def add(self, kind: Hashable, seconds: float) -> None:
        self.durations.setdefault(kind, []).append(seconds)

    def left(self, kinds: list[Hashable]) -> float | None:
        """Seconds for cases of ``kinds`` still to run; None before any case has finished."""
        everything = [d for ds in self.durations.values() for d in ds]
        if not everything:
            return None
        overall = statistics.fmean(everything)
        return sum(statistics.fmean(self.durations[k]) if k in self.durations else overall
                   for k in kinds)


class Progress:
    """pytest plugin writing one progress line per case through the terminal reporter."""

    def __init__(self, config: pytest.Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.kinds: dict[str, Hashable] = {}  # nodeid -> kind, in run order
        self.order: list[str] = []
        self.index = 0
        self.started: float | None = None
        self.case_started: dict[str, float] = {}
        self.estimate = Estimate()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.order = [item.nodeid for item in session.items]
        for item in session.items:
            case = getattr(item, "callspec", None) and item.callspec.params.get("case")
            self.kinds[item.nodeid] = (case.device, case.mode) if case is not None else None

    @pytest.hookimpl(trylast=True)  # after pytest's own reporter has written its part
    def pytest_runtest_logstart(self, nodeid: str, location: tuple) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        self.index += 1
        self.case_started[nodeid] = now
        self._write(self.line(nodeid, now))

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple) -> None:
        start = self.case_started.pop(nodeid, None)
        if start is not None:
            self.estimate.add(self.kinds.get(nodeid), self.clock() - start)

    def line(self, nodeid: str, now: float) -> str:
        total = len(self.order) or self.index
        elapsed = clock_text(now - (self.started or now))
        left = self.estimate.left([self.kinds.get(n) for n in self.order[self.index - 1:]])
        timing = f"{elapsed} elapsed" + (f", ~{clock_text(left)} left" if left is not None else "")
        if self.config.get_verbosity() > 0:
            # pytest has just written the node id on this line; add only the figures.
            return f"[{self.index}/{total}, {timing}] "
        return f"[{self.index}/{total}] {nodeid.rpartition('::')[2]}  {timing} "

    def _write(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        writer = reporter._tw  # pytest keeps the line state here; its API has no getter
        if self.config.get_verbosity() <= 0 and writer.width_of_current_line > 0:
            writer.line()
        writer.write(text, flush=True)
