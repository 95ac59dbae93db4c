"""pytest plumbing for the benchmark modules: selection options, parametrization, results.

Each phase is a test function (``forward``, ``backward``, ``optimizer_step``,
``train_step``) parametrized with the selected cases, so ids read
``train_step[fashion_mlp-adam-cpu-eager-b64]``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from . import cases as matrix
from . import count_plugin, environment, isolate, profile_plugin
from .faults import CaseFailure, Status, classify
from .files import BENCHMARK_JSON, DEFAULT_RESULTS_DIR, ENVIRONMENT_FILE, HISTORY_DB
from .flops import cpu_peak
from .harness import cuda_available, synced_perf_counter
from .progress import PLUGIN_NAME, Progress
from .results import RunWriter, new_run_dir
from .runners import MEASURED_ELSEWHERE, InProcessRunner, IsolatedRunner, Runner

_CASES = pytest.StashKey[list]()
_WRITER = pytest.StashKey[RunWriter]()
_ENV = pytest.StashKey[dict]()
_REPORT = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("blitzbench", "blitzbench case selection")
    for axis in matrix.AXES:
        flag = "--" + axis.replace("_", "-")
        group.addoption(flag, dest=f"bb_{axis}", default=None, metavar="LIST",
                        help=f"comma list replacing the preset's {axis.replace('_', ' ')}")
    group.addoption("--preset", dest="bb_preset", default="default",
                    help=f"case matrix to start from: {', '.join(matrix.PRESETS)} (default: default)")
    group.addoption("--results-dir", dest="bb_results_dir", default=DEFAULT_RESULTS_DIR,
                    help="folder that receives one subfolder per run (default: results)")
    group.addoption("--history-db", dest="bb_history_db", default=None, metavar="PATH|URL",
                    help="SQLite history every finished run is appended to: a path, sqlite:///PATH "
                         "or file:PATH (default: RESULTS_DIR/history.sqlite)")
    group.addoption("--isolate", dest="bb_isolate", action="store_true",
                    help="measure each case in a fresh Python process (cold compile, no shared state)")
    group.addoption("--compile-backend", dest="bb_compile_backend", default="inductor",
                    help="torch.compile backend for compile-mode cases (default: inductor)")
    group.addoption("--run-dir", dest="bb_run_dir", default=None,
                    help="write into this run folder instead of a new timestamped one under --results-dir")
    # Internal: a child of --isolate writes into its parent's run folder and renders nothing.
    group.addoption("--bb-child", dest="bb_child", action="store_true", help="(internal)")
    profile_plugin.addoption(group)
    count_plugin.addoption(group)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: the run folder and JSON path must exist before pytest-benchmark's own
    # pytest_configure reads --benchmark-json.
    if not hasattr(config.option, "bb_preset"):
        return
    try:
        overrides = {
            axis: matrix.parse_axis(axis, value)
            for axis in matrix.AXES
            if (value := getattr(config.option, f"bb_{axis}")) is not None
        }
        selected = matrix.select(config.option.bb_preset, **overrides)
    except matrix.SelectionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not selected:
        raise pytest.UsageError("the selection contains no case")
    config.stash[_CASES] = selected
    if config.option.bb_isolate:
        # The parent delegates every measurement to a child: its own fixtures stay unused.
        config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used")
        # Emitted at session end, outside pytest's warning capture; benchmark.json is merged then.
        warnings.filterwarnings("ignore", message="Not saving anything")
    profile_plugin.configure(config)
    count_plugin.configure(config)
    if config.option.collectonly or getattr(config.option, "benchmark_disable", False):
        return
    if not config.option.bb_child:  # the parent of an --isolate run reports for its children
        _check_history(config)  # a bad history file stops the run before it measures anything
        config.pluginmanager.register(Progress(config), PLUGIN_NAME)
    if config.option.bb_run_dir:
        run_dir = Path(config.option.bb_run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir(config.option.bb_results_dir)
    config.stash[_WRITER] = RunWriter(run_dir)
    profile_plugin.start(config, run_dir)
    if getattr(config.option, "benchmark_json", None) is None:
        config.option.benchmark_json = run_dir / BENCHMARK_JSON
    if not config.option.bb_child:
        config.stash[_ENV] = record_environment(run_dir)
        count_plugin.start(config, run_dir, config.stash[_ENV])


def record_environment(run_dir: Path) -> dict[str, Any]:
    """Environment of the run, with the CPU's matmul peak measured once (before any case)."""
    env = environment.collect()
    env["cpu_peak_flops"] = cpu_peak("float32")
    (run_dir / ENVIRONMENT_FILE).write_text(json.dumps(env, indent=2, default=str), encoding="utf-8")
    return env


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    env = config.stash.get(_ENV, None)
    if env is not None:
        output_json["blitzbench_environment"] = env


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    phase = metafunc.function.__name__
    params = []
    for case in metafunc.config.stash[_CASES]:
        if case.phase != phase:
            continue
        marks = []
        if case.device == "cuda":
            # Time whole rounds of GPU work: synchronize at each round's edges.
            marks.append(pytest.mark.benchmark(timer=synced_perf_counter))
        params.append(pytest.param(case, id=case.params_id, marks=marks))
    if not params:
        # Keep the phase out of the run (rather than a parametrize-empty skip line per phase).
        metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(reason="not selected"))],
                             ids=["none-selected"], indirect=True)
        return
    # indirect: the ``case`` fixture below gets each value and can skip what cannot run here.
    metafunc.parametrize("case", params, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Drop the placeholders of unselected phases so the summary counts only real cases.
    kept = [it for it in items if not it.name.endswith("[none-selected]")]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[it for it in items if it not in kept])
        items[:] = kept


@pytest.fixture
def runner(request: pytest.FixtureRequest) -> Runner:
    """The runner of this run: in this process, or each case in a child (--isolate)."""
    config = request.config
    opt = config.option
    if count_plugin.counting(config):
        return count_plugin.runner(config, request.node, config.stash[_WRITER])
    if opt.bb_isolate:
        return IsolatedRunner(config, request.node, config.stash[_WRITER])
    return InProcessRunner(max_time=float(opt.benchmark_max_time), min_rounds=int(opt.benchmark_min_rounds),
                           compile_backend=opt.bb_compile_backend,
                           extra_passes=profile_plugin.extra_passes(config))


@pytest.fixture
def case(request: pytest.FixtureRequest) -> matrix.Case:
    case = request.param
    if case.device == "cuda" and not cuda_available():
        pytest.skip("CUDA is not available on this machine")
    return case


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    writer = item.config.stash.get(_WRITER, None)
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    if writer is None or case is None or item.stash.get(MEASURED_ELSEWHERE, False):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        writer.write(_row(item, case, report, call))


def _row(item: pytest.Item, case: matrix.Case, report: pytest.TestReport, call: pytest.CallInfo) -> dict:
    """The pytest-benchmark entry for a measured case; a status row for anything else."""
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if report.passed and fixture is not None and fixture.stats is not None:
        row = fixture.stats.as_dict(include_data=True)
        row["finished_at"] = time.time()
        return row
    if report.skipped and isinstance(report.longrepr, tuple):
        status, message = Status.SKIPPED, report.longrepr[2].removeprefix("Skipped: ")
    elif call.excinfo is not None:
        exc = call.excinfo.value
        # Our own failures say everything in their message; others keep their type name.
        message = str(exc) if isinstance(exc, CaseFailure) else call.excinfo.exconly()
        status = classify(exc)
    else:
        status, message = Status.ERROR, str(report.longrepr)
    return {
        "name": item.name,
        "fullname": item.nodeid,
        "extra_info": dict(case.as_dict(), case_id=case.id, status=status.value, error=message[-2000:]),
        "stats": None,
        "finished_at": time.time(),
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    writer = session.config.stash.get(_WRITER, None)
    if writer is None or session.config.option.bb_child:
        return
    if session.config.option.bb_isolate:
        isolate.merge_benchmark_json(writer.run_dir)
    # Render from the JSON lines so an interrupted run still gets its report.
    from reports.run import write_report

    if writer.count:
        paths = write_report(writer.run_dir)
        session.config.stash[_REPORT] = paths
        session.config.stash[_HISTORY] = _append_history(session, writer.run_dir, exitstatus)



def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    writer = config.stash.get(_WRITER, None)
    if writer is None:
        return
    terminalreporter.write_sep("-", "blitzbench")
    terminalreporter.write_line(
        f"results: {writer.run_dir} ({writer.count} case{'' if writer.count == 1 else 's'})")
    for kind, path in config.stash.get(_REPORT, {}).items():
        terminalreporter.write_line(f"{kind}: {path}")
    if _HISTORY in config.stash:
        line, failed = config.stash[_HISTORY]
        terminalreporter.write_line(f"history: {line}", red=failed, bold=failed)


_HISTORY = pytest.StashKey[tuple]()


def _history_db(config: pytest.Config) -> str | Path:
    return config.option.bb_history_db or Path(config.option.bb_results_dir) / HISTORY_DB


def _check_history(config: pytest.Config) -> None:
    from reports.history import HistoryError, check

    try:
        check(_history_db(config))
    except HistoryError as exc:
        raise pytest.UsageError(str(exc)) from None


def _append_history(session: pytest.Session, run_dir: Path, exitstatus: int) -> tuple[str, bool]:
    """Append a finished run to the history: the summary line about it, and whether it failed."""
    from reports.history import HistoryError, append_run

    db = _history_db(session.config)
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return f"{db}: not appended, the run was interrupted", False
    try:
        count = append_run(run_dir, db)
    except HistoryError as exc:
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return f"NOT appended: {exc}", True
    return f"{db} (+{count} case{'' if count == 1 else 's'})", False
