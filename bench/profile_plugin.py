"""pytest glue for ``--profile``: after a case's timing has finished, profile the same step.

``bench/conftest.py`` adds the options (``addoption``), validates them before the run
folder exists (``configure``), starts the per-run state once it does (``start``) and
re-exports the ``pytest_runtest_call`` wrapper below. The wrapper runs the profiling pass
only after the benchmark function returned, so the timed rounds never run under the
profiler; the pass adds ``trace_dir`` and the per-step counts to ``benchmark.extra_info``
before the result row is written, and appends the case's summary to ``profile.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from reports.profile import PROFILE_FILE, aggregate, record

from .profiling import TRACES_DIR, ProfileConfig, capture, check_budget, parse_schedule, trace_folder_name
from .results import RunWriter

_CONFIG = pytest.StashKey[ProfileConfig]()
_STATE = pytest.StashKey["ProfileState"]()


@dataclass
class ProfileState:
    config: ProfileConfig
    run_dir: Path
    writer: RunWriter


def addoption(group: pytest.OptionGroup) -> None:
    group.addoption("--profile", dest="bb_profile", action="store_true",
                    help="after timing each case, profile it in a separate pass: a trace in "
                         "<run>/traces/<case>/ and a summary in report.md (see nox -s profile)")
    group.addoption("--profile-schedule", dest="bb_profile_schedule", default="1,1,3",
                    metavar="WAIT,WARMUP,ACTIVE",
                    help="profiler schedule: steps skipped, warmed up, recorded (default: 1,1,3)")
    group.addoption("--profile-with-stack", dest="bb_profile_with_stack", action="store_true",
                    help="record Python stacks in the traces (larger files)")


def configure(config: pytest.Config) -> None:
    """Validate the profiling options; a bad value stops the run before anything starts."""
    if not config.option.bb_profile:
        return
    try:
        wait, warmup, active = parse_schedule(config.option.bb_profile_schedule)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_CONFIG] = ProfileConfig(wait=wait, warmup=warmup, active=active,
                                          with_stack=config.option.bb_profile_with_stack)


def start(config: pytest.Config, run_dir: Path) -> None:
    """Enable the profiling pass for this run (only when --profile was given)."""
    profile_config = config.stash.get(_CONFIG, None)
    if profile_config is not None:
        config.stash[_STATE] = ProfileState(profile_config, run_dir, RunWriter(run_dir, PROFILE_FILE))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    # The benchmark runs inside this yield (a failed one raises here, and is not profiled):
    # its timing has ended before the profiler starts.
    result = yield
    state = item.config.stash.get(_STATE, None)
    if state is not None:
        profile_item(item, state)  # an error here fails the case with its message
    return result


def profile_item(item: pytest.Item, state: ProfileState) -> None:
    funcargs = getattr(item, "funcargs", {})
    runner, benchmark = funcargs.get("runner"), funcargs.get("benchmark")
    step = getattr(runner, "last_step", None)
    if step is None or benchmark is None:
        return
    case = step.case
    trace_dir = state.run_dir / TRACES_DIR / trace_folder_name(case.id)
    result = capture(step, trace_dir, state.config)
    check_budget(result, case.id)
    ops = aggregate(result.events, result.steps)
    relative = trace_dir.relative_to(state.run_dir).as_posix()
    row = record(case.id, case.device, relative, result.steps, ops)
    benchmark.extra_info.update(
        trace_dir=relative, trace_bytes=result.trace_bytes, profile_steps=result.steps,
        op_calls_per_step=row["op_calls_per_step"],
        kernel_launches_per_step=row["kernel_launches_per_step"])
    state.writer.write(row)
