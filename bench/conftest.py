"""pytest plumbing for the benchmark modules: selection options, parametrization, results.

Each phase is a test function (``forward``, ``backward``, ``optimizer_step``,
``train_step``) parametrized with the selected cases, so ids read
``train_step[fashion_mlp-adam-cpu-eager-b64]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench import environment
from bench.matrix import select as matrix
from bench.matrix import shard
from bench.matrix.progress import PLUGIN_NAME, Progress
from bench.passes import CATALOG, max_batch, profile_plugin
from bench.passes.flops import cpu_peak
from bench.runners import counting, distributed, isolated
from bench.runners.base import MEASURED_ELSEWHERE, Runner
from bench.runners.distributed import DistributedRunner
from bench.runners.inprocess import InProcessRunner, cuda_available, synced_perf_counter
from bench.runners.isolated import IsolatedRunner
from bench.schema.case import AXES, DATA_PHASES, Case
from bench.schema.figures import to_json
from bench.schema.files import BENCHMARK_JSON, DEFAULT_RESULTS_DIR, ENVIRONMENT_FILE, FIGURES_FILE, HISTORY_DB
from bench.schema.results import RunWriter, new_run_dir
from bench.schema.status import CaseFailure, Status, classify, clip_error
from bench.workloads import datasets, pipeline
from models import hf

_CASES = pytest.StashKey[list]()
_WRITER = pytest.StashKey[RunWriter]()
_ENV = pytest.StashKey[dict]()
_SUMMARY = pytest.StashKey[list]()  # (line, is_a_failure) of the blitzbench section
_DRY_RUN = pytest.StashKey[list]()  # --benchmark-disable: the cases built and run once
_MAX_BATCH = pytest.StashKey["max_batch.MaxBatchConfig | None"]()
_DIST = pytest.StashKey[distributed.Settings]()  # --distributed: nproc, nodes, rendezvous
# Every blitzbench refusal (a bad option value, an unusable folder or history) exits with this.
REFUSED = 2
# pytest-benchmark's table, kept narrow unless --benchmark-columns asks for more.
DEFAULT_COLUMNS = ["median", "iqr", "rounds"]


def refuse(message: str) -> None:
    """Stop before anything is measured: one message naming the value, exit status 2."""
    pytest.exit(message, returncode=REFUSED)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("blitzbench", "blitzbench case selection")
    for axis in AXES:
        flag = "--" + axis.replace("_", "-")
        group.addoption(flag, dest=f"bb_{axis}", default=None, metavar="LIST",
                        help=f"comma list replacing the preset's {axis.replace('_', ' ')}")
    group.addoption("--model-module", dest="bb_model_module", action="append", default=[], metavar="MODULE",
                    help="import MODULE first: it registers models with models.register_model (repeatable)")
    group.addoption("--preset", dest="bb_preset", default="default",
                    help=f"case matrix to start from: {', '.join(matrix.PRESETS)} (default: default)")
    group.addoption("--results-dir", dest="bb_results_dir", default=DEFAULT_RESULTS_DIR,
                    help="folder that receives one subfolder per run (default: results)")
    group.addoption("--history-db", dest="bb_history_db", default=None, metavar="PATH|URL",
                    help="history every finished run is appended to: an SQLite file (a path, sqlite:///PATH "
                         "or file:PATH) or a shared server (postgresql://USER[:PASSWORD]@HOST[:PORT]/DB) "
                         "(default: RESULTS_DIR/history.sqlite)")
    group.addoption("--shard", dest="bb_shard", default=None, metavar="i/N",
                    help="run part i of N of the selection (parts balanced by expected cost; the same "
                         "on every machine): N machines each run one, `python -m reports merge` joins them")
    group.addoption("--isolate", dest="bb_isolate", action="store_true",
                    help="measure each case in a fresh Python process (cold compile, no shared state)")
    group.addoption("--compile-backend", dest="bb_compile_backend", default="inductor",
                    help="torch.compile backend for compile-mode cases (default: inductor)")
    group.addoption("--run-dir", dest="bb_run_dir", default=None,
                    help="write into this run folder instead of a new timestamped one under --results-dir")
    # Internal: a child of --isolate writes into its parent's run folder and renders nothing.
    group.addoption("--bb-child", dest="bb_child", action="store_true", help="(internal)")
    group.addoption("--data-root", dest="bb_data_root", default=None, metavar="PATH",
                    help="data and epoch phases: a dataset you have, as PATH/<dataset>/raw/*-ubyte "
                         "(default: a synthetic one in the same format, written once to a cache folder)")
    group.addoption("--dataset", dest="bb_dataset", default="FashionMNIST",
                    help="data and epoch phases: FashionMNIST (the seed's) or MNIST")
    group.addoption("--data-size", dest="bb_data_size", type=int, default=None, metavar="N",
                    help="training images of the synthetic dataset (default 6400: 100 batches of 64)")
    group.addoption("--epochs", dest="bb_epochs", type=int, default=None, metavar="N",
                    help="timed epochs per data/epoch case, after one untimed (default 3)")
    group.addoption("--hf-config", dest="bb_hf_config", default=None, metavar="KEY=VALUE,...",
                    help="hf:/hf-cls: models: config values over the small default (2 layers, 128 hidden, "
                         "2 heads), e.g. num_hidden_layers=4,hidden_size=256")
    profile_plugin.addoption(group)
    counting.addoption(group)
    max_batch.addoption(group)
    distributed.addoption(group)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: the run folder and JSON path must exist before pytest-benchmark's own
    # pytest_configure reads --benchmark-json.
    if not hasattr(config.option, "bb_preset"):
        return
    try:
        if config.option.bb_hf_config is not None:
            # Read by models.hf when it makes an hf: model, here and in every child process.
            os.environ[hf.ENV] = ",".join(f"{k}={v}" for k, v in hf.parse_overrides(config.option.bb_hf_config).items())
        for module in config.option.bb_model_module:
            import models

            models.import_model_module(module)
        overrides = {
            axis: matrix.parse_axis(axis, value)
            for axis in AXES
            if (value := getattr(config.option, f"bb_{axis}")) is not None
        }
        config.stash[_DIST] = distributed.configure(config, overrides)  # sets the world sizes
        selected = matrix.select(config.option.bb_preset, **overrides)
        profile_plugin.configure(config)
        config.stash[_MAX_BATCH] = max_batch.configure(config.option)
        whole = len(selected)
        if config.option.bb_shard and not config.option.bb_child:  # a child is pinned to one case
            selected = shard.shard(selected, *shard.parse_shard(config.option.bb_shard))
    except ValueError as exc:  # a SelectionError, a ShardError, a bad --profile-schedule or --max-batch-memory
        refuse(str(exc))
    if not selected:
        refuse(f"--shard {config.option.bb_shard}: this part holds no case (the selection has {whole}); "
               "run fewer shards" if whole else "the selection contains no case")
    _check_image_sizes(selected)
    _check_workloads(selected)
    if any(case.phase in DATA_PHASES for case in selected):
        _configure_data(config, selected)  # a bad --data-root stops the run before anything is measured
    config.stash[_CASES] = selected
    if getattr(config.option, "benchmark_columns", "absent") is None:  # not given: a short table
        config.option.benchmark_columns = DEFAULT_COLUMNS
    if config.option.bb_isolate:
        # The parent delegates every measurement to a child: its own fixtures stay unused.
        config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used")
    # Emitted at session end, outside pytest's warning capture: with --isolate benchmark.json is
    # merged then, and a run that measured nothing says so in the blitzbench section.
    warnings.filterwarnings("ignore", message="Not saving anything")
    counting.configure(config)  # --metric instructions: valgrind present, else exit 2
    if config.option.collectonly:
        return
    if dry_run(config):
        config.stash[_DRY_RUN] = []  # each case built and run once: nothing timed, nothing written
        return
    if config.option.bb_run_dir:
        run_dir = Path(config.option.bb_run_dir)
        _make_folder(run_dir, "--run-dir")
    else:
        _make_folder(Path(config.option.bb_results_dir), "--results-dir")
    if not config.option.bb_child:  # the parent of an --isolate run reports for its children
        _check_history(config)  # a bad history file stops the run before it measures anything
        config.pluginmanager.register(Progress(config), PLUGIN_NAME)
    if not config.option.bb_run_dir:
        try:
            run_dir = new_run_dir(config.option.bb_results_dir)
        except OSError as exc:
            refuse(f"--results-dir {config.option.bb_results_dir}: cannot create a run folder in it "
                   f"({exc.strerror or exc})")
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


def _configure_data(config: pytest.Config, selected: list[Case]) -> None:
    import models

    opt = config.option
    for flag, value in (("--data-size", opt.bb_data_size), ("--epochs", opt.bb_epochs)):
        if value is not None and value < 1:
            refuse(f"invalid {flag} {value}; expected a positive integer")
    data = pipeline.DataConfig(root=Path(opt.bb_data_root) if opt.bb_data_root else None, dataset=opt.bb_dataset,
                               size=opt.bb_data_size or datasets.DEFAULT_SIZE,
                               epochs=opt.bb_epochs or pipeline.DEFAULT_EPOCHS)
    loops = [c for c in selected if c.phase in DATA_PHASES]
    token_loops = {(c.model, c.seq_len) for c in loops if models.get_spec(c.model).tokens}
    try:
        pipeline.configure(data, images=any(not models.get_spec(c.model).tokens for c in loops))
        for model, seq in sorted(token_loops, key=str):
            inputs = models.get_spec(model).inputs
            pipeline.resolved_tokens(inputs.vocab_size, seq or inputs.seq_len)
    except datasets.DataError as exc:
        refuse(str(exc))


def dry_run(config: pytest.Config) -> bool:
    """--benchmark-disable: every case is built and run once, untimed, and nothing is written."""
    return bool(getattr(config.option, "benchmark_disable", False))


def _make_folder(path: Path, flag: str) -> None:
    """Create a results folder the run will write into, or refuse naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        refuse(f"{flag} {path}: is a file, not a folder; give a folder (created if absent)")
    except OSError as exc:
        refuse(f"{flag} {path}: cannot create this folder ({exc.strerror or exc}); give a writable folder")


PROFILE_MAX_TIME = 1.0  # pytest-benchmark's default --benchmark-max-time


def run_settings(config: pytest.Config) -> dict[str, Any]:
    """What kind of run this is and its timing settings (compared runs must share them)."""
    max_time = float(config.option.benchmark_max_time)
    profiled = bool(config.option.bb_profile)
    # nox -s profile: short timing beside the traces (below pytest-benchmark's default 1.0 s).
    kind = "profile" if profiled and max_time < PROFILE_MAX_TIME else "bench"
    settings = dict(run_kind=kind, benchmark_max_time=max_time,
                    benchmark_min_rounds=int(config.option.benchmark_min_rounds), profiled=profiled)
    if config.option.bb_shard:  # which part of the selection (python -m reports merge joins them)
        settings["shard"] = "{}/{}".format(*shard.parse_shard(config.option.bb_shard))
    if "://" in str(config.option.bb_history_db or ""):  # a server's password stays out of the results
        from reports.history import masked

        settings["argv"] = masked(" ".join(sys.argv[1:]))
    return settings


def record_environment(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Environment of the run, with the CPU's matmul peak measured once (before any case)."""
    env = environment.collect()
    env.update(settings)
    env["cpu_peak_flops"] = cpu_peak("float32")
    (run_dir / ENVIRONMENT_FILE).write_text(json.dumps(env, indent=2, default=str), encoding="utf-8")
    return env


def record_figures(run_dir: Path) -> None:
    """Write the run's figure declarations beside its results (plug-ins' included), so any
    later reader labels and gates them as this run declared them."""
    declared = [to_json(f) for f in CATALOG.figures()]
    (run_dir / FIGURES_FILE).write_text(json.dumps(declared, indent=1), encoding="utf-8")


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    env = config.stash.get(_ENV, None)
    if env is not None:
        output_json["blitzbench_environment"] = env
    # A case stopped before its status was set (Ctrl-C during its rounds, a pass that raised)
    # holds partial numbers: its row in cases.jsonl says what happened; keep it out of here.
    output_json["benchmarks"] = [b for b in output_json.get("benchmarks", [])
                                 if "status" in (b.get("extra_info") or {})]


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    writer = item.config.stash.get(_WRITER, None)
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    if case is not None and report.when == "call" and report.passed and _DRY_RUN in item.config.stash:
        item.config.stash[_DRY_RUN].append(case.id)
    if writer is None or case is None or item.stash.get(MEASURED_ELSEWHERE, False):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        writer.write(_row(item, case, report, call))


def _row(item: pytest.Item, case: Case, report: pytest.TestReport, call: pytest.CallInfo) -> dict:
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
        "extra_info": dict(case.as_dict(), case_id=case.id, status=status.value, error=clip_error(message)),
        "stats": None,
        "finished_at": time.time(),
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _DRY_RUN in config.stash:
        count = len(config.stash[_DRY_RUN])
        _say(config, f"dry run (--benchmark-disable): {count} case{'' if count == 1 else 's'} built and run "
                     "once; nothing timed, no results folder, no history")
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
    record_figures(writer.run_dir)
    for case_id, losses in writer.epoch_losses():  # as the seed prints them, after each epoch
        _say(config, f"{case_id}: " + " · ".join(f"Training loss: {loss}" for loss in losses))
    # Render from the JSON lines so an interrupted run still gets its report.
    from reports import ResultsError
    from reports.run import write_report

    if writer.count:
        try:
            paths = dict(write_report(writer.run_dir))
        except ResultsError as exc:
            paths = {}
            _say(config, f"report: not written: {exc}", failed=True)
        for skipped in paths.pop("skipped", None) or ():
            _say(config, f"skipped input: {skipped}", failed=True)
        for kind, path in paths.items():
            _say(config, f"{kind}: {path}")
    if not writer.measured:
        _say(config, f"no case was measured: {_why_nothing(config, writer)}; nothing appended to the history",
             failed=True)
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif writer.count:
        line, failed = _append_history(session, writer.run_dir, exitstatus)
        _say(config, f"history: {line}", failed=failed)


def _say(config: pytest.Config, line: str, failed: bool = False) -> None:
    config.stash.setdefault(_SUMMARY, []).append((line, failed))


def _why_nothing(config: pytest.Config, writer: RunWriter) -> str:
    """Why a run measured no case: --benchmark-skip, or what its cases' rows say."""
    if getattr(config.option, "benchmark_skip", False):
        return "--benchmark-skip skips every benchmark"
    if not writer.count:
        return "no case ran"
    reasons = Counter(f"{status}: {message}" if message else status for status, message in writer.unmeasured)
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


def _history_db(config: pytest.Config) -> str | Path:
    return config.option.bb_history_db or Path(config.option.bb_results_dir) / HISTORY_DB


def _check_history(config: pytest.Config) -> None:
    from reports.history import HistoryError, check

    try:
        check(_history_db(config))
    except HistoryError as exc:
        refuse(str(exc))


def _append_history(session: pytest.Session, run_dir: Path, exitstatus: int) -> tuple[str, bool]:
    """Append a finished run to the history: the summary line about it, and whether it failed."""
    from reports.history import HistoryError, append_run, describe

    db = _history_db(session.config)
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return f"{describe(db)}: not appended, the run was interrupted", False
    try:
        count = append_run(run_dir, db)
    except (HistoryError, OSError) as exc:  # checked before the run; it may have changed since
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return f"NOT appended: {exc}", True
    return f"{describe(db)} (+{count} case{'' if count == 1 else 's'})", False
