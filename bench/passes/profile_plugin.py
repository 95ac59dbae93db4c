"""pytest glue for ``--profile``: a pass that profiles the timed step after its timing.

``bench/plugin.py`` hands it the schedule ``bench.matrix.options`` parsed (``configure``),
starts the per-run state once the run folder exists (``start``) and gives the runner this
run's extra passes (``extra_passes``). ``ProfilePass`` runs after the
timed rounds and the other passes, like every pass, so the timed rounds never run under the
profiler; it adds ``trace_dir`` and the per-step counts to the result row and appends the
case's summary to ``profile.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.passes.base import Pass, Timing
from bench.passes.profiling import ProfileConfig, aggregate, capture, check_budget, record, trace_folder_name
from bench.schema.files import PROFILE_FILE, TRACES_DIR
from bench.schema.results import RunWriter
from bench.workloads.step import Step

_CONFIG = pytest.StashKey[ProfileConfig]()
_STATE = pytest.StashKey["ProfileState"]()


@dataclass
class ProfileState:
    config: ProfileConfig
    run_dir: Path
    writer: RunWriter


def configure(config: pytest.Config, schedule: tuple[int, int, int] | None) -> None:
    """Profile this run with ``schedule`` (wait, warmup, active; parsed with the options), or not (None)."""
    if schedule is None:
        return
    wait, warmup, active = schedule
    config.stash[_CONFIG] = ProfileConfig(wait=wait, warmup=warmup, active=active,
                                          with_stack=config.option.bb_profile_with_stack)


def start(config: pytest.Config, run_dir: Path) -> None:
    """Enable the profiling pass for this run (only when --profile was given)."""
    profile_config = config.stash.get(_CONFIG, None)
    if profile_config is not None:
        config.stash[_STATE] = ProfileState(profile_config, run_dir, RunWriter(run_dir, PROFILE_FILE))


def extra_passes(config: pytest.Config) -> list[Pass]:
    """The passes --profile adds to this run's measurements (none without it)."""
    state = config.stash.get(_STATE, None)
    return [] if state is None else [ProfilePass(state)]


@dataclass
class ProfilePass:
    """Profile the step into ``traces/<case>/``; the row gets the trace folder and counts."""

    state: ProfileState
    name: str = "profile"

    def run(self, step: Step, timing: Timing) -> dict[str, Any]:
        state, case = self.state, step.case
        trace_dir = state.run_dir / TRACES_DIR / trace_folder_name(case.id)
        result = capture(step, trace_dir, state.config)
        check_budget(result, case.id)
        ops = aggregate(result.events, result.steps)
        relative = trace_dir.relative_to(state.run_dir).as_posix()
        row = record(case.id, case.device, relative, result.steps, ops)
        state.writer.write(row)
        return dict(trace_dir=relative, trace_bytes=result.trace_bytes, profile_steps=result.steps,
                    op_calls_per_step=row["op_calls_per_step"],
                    kernel_launches_per_step=row["kernel_launches_per_step"])
