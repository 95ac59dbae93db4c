"""The run's pytest plug-in: the selection, parametrization, runners, result rows and summary.

``bench/conftest.py`` registers this module once the command line has passed the checks that
need no torch (``bench.matrix.options``); ``configure`` then does what needs the registries
(model and optimizer names, image sizes), checks the disk space the run will need, and only
then creates the run folder. Each phase is a test function (``forward``, ``backward``,
``optimizer_step``, ``train_step``) parametrized with the selected cases, so ids read
``train_step[fashion_mlp-adam-cpu-eager-b64]``. A case that fails is a row with its status,
and one line of the blitzbench section, not a traceback.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench import environment
from bench.matrix import options, shard, space
from bench.matrix import select as matrix
from bench.matrix.options import refuse
from bench.matrix.progress import PLUGIN_NAME as PROGRESS_PLUGIN
from bench.matrix.progress import Progress
from bench.passes import CATALOG, max_batch, profile_plugin
from bench.passes.flops import cpu_peak
from bench.runners import counting, distributed, isolated
from bench.runners.base import MEASURED_ELSEWHERE, Runner
from bench.runners.distributed import DistributedRunner
from bench.runners.inprocess import InProcessRunner, cuda_available, synced_perf_counter
from bench.runners.isolated import IsolatedRunner
from bench.schema.case import DATA_PHASES, Case
from bench.schema.figures import to_json
from bench.schema.files import BENCHMARK_JSON, CASES_FILE, ENVIRONMENT_FILE, FIGURES_FILE
from bench.schema.results import RunWriter, new_run_dir, write_atomic
from bench.schema.status import CaseFailure, Status, classify, clip_error
from bench.workloads import datasets, pipeline

PLUGIN_NAME = "blitzbench"
_CASES = pytest.StashKey[list]()
_WRITER = pytest.StashKey[RunWriter]()
_ENV = pytest.StashKey[dict]()
_SUMMARY = pytest.StashKey[list]()  # (line, is_a_failure) of the blitzbench section
_DRY_RUN = pytest.StashKey[list]()  # --benchmark-disable: (case id, status, message) of each case run once
_MAX_BATCH = pytest.StashKey["max_batch.MaxBatchConfig | None"]()
_DIST = pytest.StashKey[options.DistSettings]()  # --distributed: nproc, nodes, rendezvous
_OPTIONS = pytest.StashKey[options.RunOptions]()  # the command line, parsed
# pytest-benchmark's table, kept narrow unless --benchmark-columns asks for more.
DEFAULT_COLUMNS = ["median", "iqr", "rounds"]
# A failed case's report carries its status here: pytest then counts it under that status.
CASE_STATUS = "blitzbench_status"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# torch's structured-trace logger: always at DEBUG, never propagating; torch builds its records
# (graphs, guards, as JSON) only while the logger has a handler.
TORCH_TRACE_LOGGER = "torch.__trace"
MAX_LINE_CHARS = 300  # a case's line in the blitzbench section; its whole error is in its row


def configure(config: pytest.Config, checked: options.RunOptions) -> None:
    """Set up the run whose command line passed ``options.check``: what needs the model registry,
    the disk space, then (only now creating anything) the run folder and the history."""
    config.stash[_OPTIONS] = checked
    selected = _select(config, checked)
    _check_image_sizes(selected)
    _check_workloads(selected)
    if any(case.phase in DATA_PHASES for case in selected):
        _configure_data(config, checked, selected)  # synthesizes the data when no --data-root is given
    config.stash[_CASES] = selected
    if getattr(config.option, "benchmark_columns", "absent") is None:  # not given: a short table
        config.option.benchmark_columns = DEFAULT_COLUMNS
    if config.option.bb_isolate:
        # The parent delegates every measurement to a child: its own fixtures stay unused.
        config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used")
    # Emitted at session end, outside pytest's warning capture: with --isolate benchmark.json is
    # merged then, and a run that measured nothing says so in the blitzbench section.
    warnings.filterwarnings("ignore", message="Not saving anything")
    counting.configure(config, checked.count_repeats, checked.count_timeout_s)  # valgrind present, else exit 2
    if config.option.collectonly:
        return
    if dry_run(config):
        config.stash[_DRY_RUN] = []  # each case built and run once: nothing timed, nothing written
        return
    if not config.option.bb_child:  # a child writes one case into the folder its parent checked
        _check_space(config, selected)
    _start_run(config, _run_folder(config))


def _select(config: pytest.Config, checked: options.RunOptions) -> list[Case]:
    """The cases of this run (this shard's part): the registries' axes parsed now."""
    opt = config.option
    try:
        for module in opt.bb_model_module:
            import models

            models.import_model_module(module)
        overrides = dict(checked.axes, **{axis: matrix.parse_axis(axis, getattr(opt, f"bb_{axis}"))
                                          for axis in options.REGISTRY_AXES if getattr(opt, f"bb_{axis}")})
        config.stash[_DIST] = distributed.configure(config, checked.distribution, overrides)  # sets the world sizes
        selected = matrix.select(opt.bb_preset, **overrides)
    except ValueError as exc:  # a SelectionError, a --model-module that does not import
        refuse(str(exc))
    profile_plugin.configure(config, checked.profile_schedule)
    config.stash[_MAX_BATCH] = _max_batch(checked.max_batch)
    whole = len(selected)
    if checked.shard and not opt.bb_child:  # a child is pinned to one case
        selected = shard.shard(selected, *checked.shard)
    if not selected:
        refuse(f"--shard {opt.bb_shard}: this part holds no case (the selection has {whole}); "
               "run fewer shards" if whole else "the selection contains no case")
    return selected


def _max_batch(given: tuple[int | None, int | None] | None) -> max_batch.MaxBatchConfig | None:
    if given is None:
        return None
    budget, limit = given
    return max_batch.MaxBatchConfig(budget_bytes=budget, limit=limit or max_batch.DEFAULT_LIMIT)


def _check_space(config: pytest.Config, selected: list[Case]) -> None:
    """Refuse a run the disk cannot hold (estimated from the selection and the timing options)."""
    opt = config.option
    plan = space.Plan(cases=selected, max_time=float(opt.benchmark_max_time),
                      min_rounds=int(opt.benchmark_min_rounds), profiled=bool(opt.bb_profile),
                      counted=counting.counting(config), isolated=bool(opt.bb_isolate))
    needs = space.needs(plan, options.results_folder(opt)[0], _history_file(options.history_db(opt)))
    try:
        space.check(needs, plan)
    except space.SpaceError as exc:
        refuse(str(exc))


def _history_file(db: str | Path) -> Path | None:
    """The history's SQLite file; None for a server (its disk is not this machine's)."""
    from reports.history import is_server, locate

    return None if is_server(db) else locate(db)


def _run_folder(config: pytest.Config) -> Path:
    """Create the run folder (and check the history, creating it where absent): the first writes."""
    opt = config.option
    try:
        options.make_folder(*options.results_folder(opt))
    except options.OptionError as exc:
        refuse(str(exc))
    if not opt.bb_child:  # the parent of an --isolate run reports for its children
        _check_history(config)  # a history that cannot be written stops the run before it measures anything
        config.pluginmanager.register(Progress(config), PROGRESS_PLUGIN)
    if opt.bb_run_dir:
        return Path(opt.bb_run_dir)
    try:
        return new_run_dir(opt.bb_results_dir)
    except OSError as exc:
        refuse(f"--results-dir {opt.bb_results_dir}: cannot create a run folder in it ({exc.strerror or exc})")


def _start_run(config: pytest.Config, run_dir: Path) -> None:
    config.stash[_WRITER] = RunWriter(run_dir)
    profile_plugin.start(config, run_dir)
    if getattr(config.option, "benchmark_json", None) is None:
        config.option.benchmark_json = run_dir / BENCHMARK_JSON
    if not config.option.bb_child:
        config.stash[_ENV] = record_environment(run_dir, run_settings(config))
        counting.start(config, run_dir, config.stash[_ENV])


def _check_image_sizes(selected: list[Case]) -> None:
    """An --image-sizes value a selected model cannot take stops the run, with the reason."""
    import models

    for model, size in dict.fromkeys((c.model, c.image_size) for c in selected if c.image_size is not None):
        problem = models.get_spec(model).size_problem(size)
        if problem:
            refuse(f"invalid --image-sizes value {size}: {problem}")


def _check_workloads(selected: list[Case]) -> None:
    """What a selected model cannot take (a sequence length, a memory format) or return (no
    floating tensor) stops the run, naming the value and the model."""
    import models

    for model in dict.fromkeys(c.model for c in selected):
        problem = models.output_problem(models.get_spec(model))
        if problem:
            refuse(problem)
    for model, seq in dict.fromkeys((c.model, c.seq_len) for c in selected if c.seq_len is not None):
        problem = models.get_spec(model).seq_problem(seq)
        if problem:
            refuse(f"invalid --seq-lens value {seq}: {problem}")
    for case in selected:
        spec = models.get_spec(case.model)
        if spec.tokens and case.memory_format == "channels_last":
            refuse(f"invalid --memory-formats value channels_last for model {case.model!r}: it takes "
                   f"{spec.inputs.describe()}; channels_last is a layout of 4-D image batches")


def _configure_data(config: pytest.Config, checked: options.RunOptions, selected: list[Case]) -> None:
    """The run's data: the image dataset when an image model's data phases run (--data-root's
    layout was checked with the options), each token model's token file (its vocabulary and
    window need the model)."""
    import models

    opt = config.option
    data = pipeline.DataConfig(root=Path(opt.bb_data_root) if opt.bb_data_root else None, dataset=opt.bb_dataset,
                               size=checked.data_size or datasets.DEFAULT_SIZE,
                               epochs=checked.epochs or pipeline.DEFAULT_EPOCHS)
    loops = [c for c in selected if c.phase in DATA_PHASES]
    try:
        pipeline.configure(data, images=any(not models.get_spec(c.model).tokens for c in loops))
        for model, seq in dict.fromkeys((c.model, c.seq_len) for c in loops if models.get_spec(c.model).tokens):
            inputs = models.get_spec(model).inputs
            pipeline.resolved_tokens(inputs.vocab_size, seq or inputs.seq_len)
    except datasets.DataError as exc:
        refuse(str(exc))


def dry_run(config: pytest.Config) -> bool:
    """--benchmark-disable: every case is built and run once, untimed, and nothing is written."""
    return bool(getattr(config.option, "benchmark_disable", False))


PROFILE_MAX_TIME = 1.0  # pytest-benchmark's default --benchmark-max-time


def run_settings(config: pytest.Config) -> dict[str, Any]:
    """What kind of run this is and its timing settings (compared runs must share them)."""
    max_time = float(config.option.benchmark_max_time)
    profiled = bool(config.option.bb_profile)
    # nox -s profile: short timing beside the traces (below pytest-benchmark's default 1.0 s).
    kind = "profile" if profiled and max_time < PROFILE_MAX_TIME else "bench"
    settings = dict(run_kind=kind, benchmark_max_time=max_time,
                    benchmark_min_rounds=int(config.option.benchmark_min_rounds), profiled=profiled)
    if config.stash[_OPTIONS].shard:  # which part of the selection (python -m reports merge joins them)
        settings["shard"] = "{}/{}".format(*config.stash[_OPTIONS].shard)
    if "://" in str(config.option.bb_history_db or ""):  # a server's password stays out of the results
        from reports.history import masked

        settings["argv"] = masked(" ".join(sys.argv[1:]))
    return settings


def record_environment(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Environment of the run, with the CPU's matmul peak measured once (before any case)."""
    env = environment.collect()
    env.update(settings)
    env["cpu_peak_flops"] = cpu_peak("float32")
    write_atomic(run_dir / ENVIRONMENT_FILE, json.dumps(env, indent=2, default=str))
    return env


def record_figures(run_dir: Path) -> None:
    """Write the run's figure declarations beside its results (plug-ins' included), so any
    later reader labels and gates them as this run declared them."""
    declared = [to_json(f) for f in CATALOG.figures()]
    write_atomic(run_dir / FIGURES_FILE, json.dumps(declared, indent=1))


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_generate_json(config: pytest.Config, benchmarks: list, include_data: bool,
                                   machine_info: dict, commit_info: dict):
    """A case cut short by Ctrl-C before its first timed round (building, warming up, pytest-
    benchmark's calibration) has statistics with no data: pytest-benchmark would fail on them
    (``min()`` of nothing) and write no benchmark.json at all. Marked as errors, they are left
    out; their rows in cases.jsonl say what happened."""
    for bench in benchmarks:
        if "status" not in (bench.extra_info or {}) or not bench.stats.data:
            bench.fixture.has_error = True
    return (yield)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    env = config.stash.get(_ENV, None)
    if env is not None:
        output_json["blitzbench_environment"] = env
    # A case stopped before its status was set (Ctrl-C during its rounds, a pass that raised)
    # holds partial numbers: its row in cases.jsonl says what happened; keep it out of here. So
    # is a case whose row could not be written (a full disk): the two files hold the same cases.
    writer = config.stash.get(_WRITER, None)
    output_json["benchmarks"] = [b for b in output_json.get("benchmarks", [])
                                 if "status" in (extra := b.get("extra_info") or {})
                                 and (writer is None or extra.get("case_id") in writer.case_ids)]


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
    if counting.counting(config) and not dry_run(config):
        return counting.runner(config, request.node, config.stash[_WRITER])
    case = getattr(request.node, "callspec", None) and request.node.callspec.params.get("case")
    if case and case.distributed != "off" and not dry_run(config):
        return DistributedRunner(distributed.Launch(
            config.stash[_DIST], config.stash[_WRITER].run_dir, float(opt.benchmark_max_time),
            int(opt.benchmark_min_rounds), opt.bb_compile_backend, tuple(opt.bb_model_module)),
            request.node, config.stash[_WRITER])
    if opt.bb_isolate and not dry_run(config):
        return IsolatedRunner(config, request.node, config.stash[_WRITER])
    return InProcessRunner(max_time=float(opt.benchmark_max_time), min_rounds=int(opt.benchmark_min_rounds),
                           compile_backend=opt.bb_compile_backend,
                           extra_passes=extra_passes(config), dry_run=dry_run(config))


def extra_passes(config: pytest.Config) -> list:
    """The passes this run's options add after the built-in ones: --profile, --max-batch."""
    searching = config.stash.get(_MAX_BATCH, None)
    return [*profile_plugin.extra_passes(config), *([max_batch.MaxBatchPass(searching)] if searching else [])]


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    case = request.param
    if case.device == "cuda" and not cuda_available():
        pytest.skip("CUDA is not available on this machine")
    return case


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item):
    # Innermost, inside pytest's log capture, which attaches its handlers to every logger that
    # does not propagate, torch's structured-trace logger included: torch then builds a trace
    # record (graphs, guards, as JSON) per compile event for it, work no run asked for, and a
    # failed case's report showed them as hundreds of empty DEBUG lines. torch's own handlers
    # (TORCH_TRACE, TORCH_LOGS) stay.
    keep_pytest_off(logging.getLogger(TORCH_TRACE_LOGGER))
    return (yield)


def keep_pytest_off(logger: logging.Logger) -> None:
    """Detach pytest's capturing handlers from ``logger``."""
    for handler in [h for h in logger.handlers if type(h).__module__ == "_pytest.logging"]:
        logger.removeHandler(handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    if case is not None and (report.when == "call" or (report.when == "setup" and not report.passed)):
        _record(item, case, report, call)
    return report


def _record(item: pytest.Item, case: Case, report: pytest.TestReport, call: pytest.CallInfo) -> None:
    """How the case ended: on its report (a failure), in the dry run's list, in its row."""
    status, message = _outcome(report, call)
    if report.failed:
        # A case that failed is a row and a line of the blitzbench section, not a traceback:
        # pytest counts it under its status (pytest_report_teststatus), not among its failures.
        setattr(report, CASE_STATUS, status.value)
    if _DRY_RUN in item.config.stash:
        item.config.stash[_DRY_RUN].append((case.id, status.value, message))
    writer = item.config.stash.get(_WRITER, None)
    if writer is None or item.stash.get(MEASURED_ELSEWHERE, False):
        return
    try:
        writer.write(_row(item, case, report, status, message))
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        refuse(f"{writer.run_dir}: no space left on the device for {CASES_FILE} ({exc.strerror}); the run "
               f"stops, its {writer.count} finished case{'' if writer.count == 1 else 's'} kept in that file")


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple | None:
    status = getattr(report, CASE_STATUS, None)
    if status is None:
        return None
    # pytest prints the tracebacks of its own "error" category: an error case counts as errored.
    category = "errored" if status == Status.ERROR.value else status
    return category, "F", (status.upper(), {"red": True})


def _outcome(report: pytest.TestReport, call: pytest.CallInfo) -> tuple[Status, str]:
    """How a case's test ended: its status and message (the row's status for a measured case)."""
    if report.passed:
        return Status.OK, ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return Status.SKIPPED, report.longrepr[2].removeprefix("Skipped: ")
    if call.excinfo is not None:
        exc = call.excinfo.value
        # Our own failures say everything in their message; others keep their type name.
        return classify(exc), str(exc) if isinstance(exc, CaseFailure) else call.excinfo.exconly()
    return Status.ERROR, str(report.longrepr)


def _row(item: pytest.Item, case: Case, report: pytest.TestReport, status: Status, message: str) -> dict:
    """The pytest-benchmark entry for a measured case; a status row for anything else."""
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if report.passed and fixture is not None and fixture.stats is not None:
        row = fixture.stats.as_dict(include_data=True)
        row["finished_at"] = time.time()
        return row
    return {
        "name": item.name,
        "fullname": item.nodeid,
        "extra_info": dict(case.as_dict(), case_id=case.id, status=status.value, error=clip_error(message)),
        "stats": None,
        "finished_at": time.time(),
    }


@pytest.hookimpl(specname="pytest_sessionfinish", wrapper=True)
def pytest_sessionfinish_on_a_full_disk(session: pytest.Session):
    # Around the finishers of the run: pytest-benchmark's (benchmark.json, written first, in
    # place), the report and the history (pytest_sessionfinish below); a full disk stops them
    # all. Inside pytest's terminal summary (registered later, so wrapping this), which still runs.
    try:
        return (yield)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        _disk_full_at_the_end(session, exc)


def _disk_full_at_the_end(session: pytest.Session, exc: OSError) -> None:
    config = session.config
    writer = config.stash.get(_WRITER, None)
    json_path = getattr(config.option, "benchmark_json", None)
    if json_path is not None and not _whole_json(Path(json_path)):
        Path(json_path).unlink(missing_ok=True)  # pytest-benchmark's half-written file
    folder = writer.run_dir if writer is not None else Path(json_path or ".").parent
    kept = f"; the finished cases are kept in {writer.path}" if writer is not None else ""
    _say(config, f"{folder}: no space left on the device while finishing the run ({exc.strerror}): "
                 f"{BENCHMARK_JSON}, the report or the history entry is missing{kept}", failed=True)
    session.exitstatus = options.REFUSED


def _whole_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _DRY_RUN in config.stash:
        _dry_run_summary(config)
        return
    writer = config.stash.get(_WRITER, None)
    if writer is None or config.option.bb_child:
        return
    if config.option.bb_isolate:
        isolated.merge_benchmark_json(writer.run_dir)
    if not config.stash[_DIST].records_rows():  # --node-rank K > 0
        _say(config, f"node {config.stash[_DIST].node_rank}: lent its ranks to node 0, which records the rows")
        return
    _say(config, f"results: {writer.run_dir} ({writer.count} case{'' if writer.count == 1 else 's'})")
    _say_problems(config, writer.problems)
    record_figures(writer.run_dir)
    for case_id, losses in writer.epoch_losses():  # as the seed prints them, after each epoch
        _say(config, f"{case_id}: " + " · ".join(f"Training loss: {loss}" for loss in losses))
    if writer.count:
        _write_report(config, writer.run_dir)
    if not writer.measured:
        _say(config, f"no case was measured: {_why_nothing(config, writer)}; nothing appended to the history",
             failed=True)
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif writer.count:
        line, failed = _append_history(session, writer.run_dir, exitstatus)
        _say(config, f"history: {line}", failed=failed)


def _dry_run_summary(config: pytest.Config) -> None:
    outcomes = config.stash[_DRY_RUN]
    count = sum(status == Status.OK.value for _, status, _ in outcomes)
    _say(config, f"dry run (--benchmark-disable): {count} case{'' if count == 1 else 's'} built and run "
                 "once; nothing timed, no results folder, no history")
    _say_problems(config, outcomes)


def _say_problems(config: pytest.Config, problems: list[tuple[str, str, str]]) -> None:
    """One line per case that did not end ok (skips are pytest's to list), its whole error in its row."""
    width = max((len(status) for _, status, _ in problems), default=0)
    for case_id, status, message in problems:
        if status not in (Status.OK.value, Status.SKIPPED.value):
            first = message.strip().splitlines()[0] if message.strip() else ""
            line = f"{status:<{width}}  {case_id}: {first}"
            _say(config, line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 1] + "…", failed=True)


def _write_report(config: pytest.Config, run_dir: Path) -> None:
    """Render from the JSON lines, so an interrupted run still gets its report."""
    from reports import ResultsError
    from reports.run import write_report

    try:
        paths = dict(write_report(run_dir))
    except (ResultsError, OSError) as exc:  # OSError: a full disk (each file is written whole or not at all)
        paths = {}
        _say(config, f"report: not written: {exc}", failed=True)
    for skipped in paths.pop("skipped", None) or ():
        _say(config, f"skipped input: {skipped}", failed=True)
    for kind, path in paths.items():
        _say(config, f"{kind}: {path}")


def _say(config: pytest.Config, line: str, failed: bool = False) -> None:
    config.stash.setdefault(_SUMMARY, []).append((line, failed))


def _why_nothing(config: pytest.Config, writer: RunWriter) -> str:
    """Why a run measured no case: --benchmark-skip, or what its cases' rows say."""
    if getattr(config.option, "benchmark_skip", False):
        return "--benchmark-skip skips every benchmark"
    if not writer.count:
        return "no case ran"
    reasons = Counter(f"{status}: {message}" if message else status for _, status, message in writer.problems)
    return "; ".join(f"{n} {reason}" for reason, n in reasons.most_common(3))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Last, after pytest-benchmark's table and pytest's own summary: the run's folder, its
    # report, the history and anything wrong are the last lines a user sees.
    lines = config.stash.get(_SUMMARY, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not lines or reporter is None:
        return
    reporter.write_sep("-", "blitzbench")
    for line, failed in lines:
        reporter.write_line(line, red=failed, bold=failed)


def _check_history(config: pytest.Config) -> None:
    from reports.history import HistoryError, check

    try:
        check(options.history_db(config.option))
    except HistoryError as exc:
        refuse(str(exc))


def _append_history(session: pytest.Session, run_dir: Path, exitstatus: int) -> tuple[str, bool]:
    """Append a finished run to the history: the summary line about it, and whether it failed."""
    from reports.history import HistoryError, append_run, describe

    db = options.history_db(session.config.option)
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return f"{describe(db)}: not appended, the run was interrupted", False
    try:
        count = append_run(run_dir, db)
    except (HistoryError, OSError) as exc:  # checked before the run; it may have changed since
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return f"NOT appended: {exc}", True
    return f"{describe(db)} (+{count} case{'' if count == 1 else 's'})", False
