"""The command line of a run: every blitzbench option, parsed and checked without torch.

pytest imports ``bench/conftest.py`` (which adds these options with ``add_options``), parses
the command line, then calls ``pytest_configure``, where ``check`` runs before anything
imports torch: a bad value is refused (exit status 2) in about a second, not after torch's
import (10 s and more) and the matrix. It returns the values parsed (``RunOptions``), so
nothing parses them again. What needs a registry that imports torch (model and optimizer
names, the sizes a model takes) is checked after, by ``bench/plugin.py``, still before
anything is collected or measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Sequence

import pytest

from bench.matrix import select as matrix
from bench.matrix.shard import parse_shard
from bench.schema.case import AXES, Case
from bench.schema.files import DEFAULT_RESULTS_DIR, HISTORY_DB

# Every blitzbench refusal (a bad option value, an unusable folder or history) exits with this.
REFUSED = 2
# Axes whose values come from registries that import torch: parsed once the models are in.
REGISTRY_AXES = ("models", "optimizers")
METRICS = ("time", "instructions")
DEFAULT_RDZV_TIMEOUT_S = 300.0
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


class OptionError(ValueError):
    """An option value that cannot be used; the message names the option, the value and what is valid."""


def refuse(message: str) -> NoReturn:
    """Stop before anything is measured: one message naming the value, exit status 2."""
    pytest.exit(message, returncode=REFUSED)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("blitzbench", "blitzbench case selection")
    for axis in AXES:
        group.addoption("--" + axis.replace("_", "-"), dest=f"bb_{axis}", default=None, metavar="LIST",
                        help=f"comma list replacing the preset's {axis.replace('_', ' ')}")
    _add_run_options(group)
    _add_data_options(group)
    _add_profile_options(group)
    _add_count_options(group)
    _add_max_batch_options(group)
    _add_distributed_options(group)


def _add_run_options(group: pytest.OptionGroup) -> None:
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


def _add_data_options(group: pytest.OptionGroup) -> None:
    group.addoption("--data-root", dest="bb_data_root", default=None, metavar="PATH",
                    help="data and epoch phases: a dataset you have, as PATH/<dataset>/raw/*-ubyte (images) or "
                         "PATH/train.bin (uint16 token ids, nanoGPT's layout) (default: a synthetic one in the "
                         "same format, written once to a cache folder)")
    group.addoption("--dataset", dest="bb_dataset", default="FashionMNIST",
                    help="data and epoch phases: FashionMNIST (the seed's) or MNIST")
    group.addoption("--data-size", dest="bb_data_size", default=None, metavar="N",
                    help="training images of the synthetic dataset (default 6400: 100 batches of 64)")
    group.addoption("--epochs", dest="bb_epochs", default=None, metavar="N",
                    help="timed epochs per data/epoch case, after one untimed (default 3)")
    group.addoption("--hf-config", dest="bb_hf_config", default=None, metavar="KEY=VALUE,...",
                    help="hf:/hf-cls: models: config values over the small default (2 layers, 128 hidden, "
                         "2 heads), e.g. num_hidden_layers=4,hidden_size=256")


def _add_profile_options(group: pytest.OptionGroup) -> None:
    group.addoption("--profile", dest="bb_profile", action="store_true",
                    help="after timing each case, profile it in a separate pass: a trace in "
                         "<run>/traces/<case>/ and a summary in report.md (see nox -s profile)")
    group.addoption("--profile-schedule", dest="bb_profile_schedule", default="1,1,3",
                    metavar="WAIT,WARMUP,ACTIVE",
                    help="profiler schedule: steps skipped, warmed up, recorded (default: 1,1,3)")
    group.addoption("--profile-with-stack", dest="bb_profile_with_stack", action="store_true",
                    help="record Python stacks in the traces (larger files)")


# The defaults of the next options belong to the modules that use them (bench.passes.counts,
# bench.runners.counting, bench.passes.max_batch), which import torch: None here means "theirs".
def _add_count_options(group: pytest.OptionGroup) -> None:
    group.addoption("--metric", dest="bb_metric", default="time", metavar="METRIC",
                    help="what to measure: time (pytest-benchmark's rounds) or instructions "
                         "(CPU instructions per call under valgrind's callgrind; see nox -s count) "
                         "(default: time)")
    group.addoption("--count-repeats", dest="bb_count_repeats", default=None, metavar="N",
                    help="--metric instructions: measured repeats per case, after a discarded one (default: 5)")
    group.addoption("--count-timeout", dest="bb_count_timeout", default=None, metavar="S",
                    help="--metric instructions: seconds a case may wait for the valgrind worker (default: 1800)")


def _add_max_batch_options(group: pytest.OptionGroup) -> None:
    group.addoption("--max-batch", dest="bb_max_batch", action="store_true",
                    help="after measuring each step case, find the largest batch that fits in the "
                         "memory budget (figure max_batch)")
    group.addoption("--max-batch-memory", dest="bb_max_batch_memory", default=None, metavar="SIZE",
                    help="the budget for --max-batch, e.g. 2GiB (default: the CUDA device's free "
                         "memory; on CPU a quarter of the memory available at the start)")
    group.addoption("--max-batch-limit", dest="bb_max_batch_limit", default=None, metavar="N",
                    help="the largest batch --max-batch tries (default: 65536)")


def _add_distributed_options(group: pytest.OptionGroup) -> None:
    group.addoption("--nproc", dest="bb_nproc", default=None, metavar="N",
                    help="--distributed: ranks per node; world size = nodes × N, and the same cases "
                         "on 1 rank are the scaling baseline")
    group.addoption("--nnodes", dest="bb_nnodes", default=None, metavar="M",
                    help="--distributed: nodes (each runs the same command; default 1)")
    group.addoption("--node-rank", dest="bb_node_rank", default=None, metavar="K",
                    help="--distributed with --nnodes: this node's rank, 0..M-1 (node 0 records the rows)")
    group.addoption("--rdzv-endpoint", dest="bb_rdzv_endpoint", default=None, metavar="HOST:PORT",
                    help="--nnodes > 1: where the nodes meet (torchrun's c10d rendezvous; node 0's address)")
    group.addoption("--rdzv-timeout", dest="bb_rdzv_timeout", default=None, metavar="S",
                    help=f"seconds to wait for every node of a case (default {DEFAULT_RDZV_TIMEOUT_S:g})")


# --- the values, parsed ----------------------------------------------------------------------


@dataclass(frozen=True)
class DistSettings:
    """A run's distribution: processes per node, nodes, this node's rank, where they meet."""

    nproc: int | None = None  # None: each world size on one node (nproc = world size)
    nnodes: int = 1
    node_rank: int = 0
    endpoint: str | None = None
    rdzv_timeout_s: float = DEFAULT_RDZV_TIMEOUT_S
    threads: int = 1  # torch threads per rank (bench.runners.distributed.threads_per_rank)

    @property
    def world(self) -> int | None:
        return None if self.nproc is None else self.nnodes * self.nproc

    def multi_node(self, case: Case) -> bool:
        return self.nnodes > 1 and case.world_size > 1

    def records_rows(self) -> bool:
        """Node 0 writes the rows; the other nodes only lend their ranks."""
        return self.node_rank == 0


@dataclass(frozen=True)
class RunOptions:
    """The options of a run, parsed; ``axes`` lacks the registry axes (parsed after torch)."""

    axes: dict[str, tuple]
    shard: tuple[int, int] | None
    profile_schedule: tuple[int, int, int] | None  # None without --profile
    max_batch: tuple[int | None, int | None] | None  # (budget bytes, limit); None without --max-batch
    distribution: DistSettings
    count_repeats: int | None
    count_timeout_s: float | None
    data_size: int | None
    epochs: int | None


def check(option: argparse.Namespace) -> RunOptions:
    """Every check that needs no torch; raises OptionError naming the option and its value."""
    try:
        axes = parse_axes(option)
        if option.bb_preset not in matrix.PRESETS:
            matrix.preset_blocks(option.bb_preset)  # raises before it imports anything, naming the presets
        distributed = axes.get("distributed", ("off",))
        parsed = RunOptions(
            axes=axes, shard=parse_shard(option.bb_shard) if option.bb_shard else None,
            profile_schedule=profile_schedule(option), max_batch=max_batch(option),
            distribution=parse_distribution(option, distributed),
            count_repeats=integer("--count-repeats", option.bb_count_repeats, 1),
            count_timeout_s=seconds("--count-timeout", option.bb_count_timeout),
            data_size=integer("--data-size", option.bb_data_size, 1),
            epochs=integer("--epochs", option.bb_epochs, 1))
        check_metric(option, distributed)
        check_benchmark_options(option)
        check_no_workers(option)
        check_data(option)
        check_hf_config(option)
    except ValueError as exc:  # SelectionError, ShardError, DataError: each names the value
        raise OptionError(str(exc)) from None
    for module in option.bb_model_module:
        check_model_module(module)
    return parsed


def parse_axes(option: argparse.Namespace) -> dict[str, tuple]:
    return {axis: matrix.parse_axis(axis, value) for axis in AXES
            if axis not in REGISTRY_AXES and (value := getattr(option, f"bb_{axis}")) is not None}


def integer(flag: str, text: str | None, minimum: int) -> int | None:
    """An integer option of at least ``minimum``; None when not given."""
    if text is None:
        return None
    if not str(text).strip().isdigit() or int(text) < minimum:
        raise OptionError(f"invalid value {text!r} for {flag}; expected an integer of at least {minimum}, "
                          f"e.g. {flag} {max(minimum, 2)}")
    return int(text)


def seconds(flag: str, text: str | None) -> float | None:
    """A positive, finite number of seconds; None when not given."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise OptionError(f"invalid value {text!r} for {flag}; expected seconds > 0")
    return value


def parse_schedule(text: str) -> tuple[int, int, int]:
    """``"1,1,3"`` -> (wait, warmup, active); a message naming the value otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[2]) < 1:
        raise OptionError(f"invalid --profile-schedule {text!r}; expected WAIT,WARMUP,ACTIVE as "
                          "non-negative integers with ACTIVE >= 1, e.g. 1,1,3")
    wait, warmup, active = (int(p) for p in parts)
    return wait, warmup, active


def profile_schedule(option: argparse.Namespace) -> tuple[int, int, int] | None:
    return parse_schedule(option.bb_profile_schedule) if option.bb_profile else None


def parse_bytes(text: str) -> int:
    """``512MiB``, ``4GB``, ``1e9`` -> bytes; OptionError naming the value and the units."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
        raise OptionError(f"invalid memory size {text!r}; expected a positive number with an optional "
                          f"unit, one of {', '.join(u for u in _UNITS if u)} (e.g. 512MiB, 4GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def max_batch(option: argparse.Namespace) -> tuple[int | None, int | None] | None:
    """(budget bytes, limit) for --max-batch, each None for the pass's default; None without it."""
    given = {"--max-batch-memory": option.bb_max_batch_memory, "--max-batch-limit": option.bb_max_batch_limit}
    if not option.bb_max_batch:
        for flag, value in given.items():
            if value is not None:
                raise OptionError(f"{flag} is given without --max-batch; add --max-batch or drop {flag}")
        return None
    budget = parse_bytes(option.bb_max_batch_memory) if option.bb_max_batch_memory is not None else None
    return budget, integer("--max-batch-limit", option.bb_max_batch_limit, 1)


def parse_distribution(option: Any, distributed: Sequence[str]) -> DistSettings:
    """The distribution options, checked; an OptionError names the bad value and what is valid."""
    nproc = integer("--nproc", option.bb_nproc, 1)
    nnodes = integer("--nnodes", option.bb_nnodes, 1) or 1
    node_rank = integer("--node-rank", option.bb_node_rank, 0) or 0
    given = [f for f, v in (("--nproc", option.bb_nproc), ("--nnodes", option.bb_nnodes),
                            ("--node-rank", option.bb_node_rank), ("--rdzv-endpoint", option.bb_rdzv_endpoint),
                            ("--rdzv-timeout", option.bb_rdzv_timeout)) if v is not None]
    if given and not any(d != "off" for d in distributed):
        raise OptionError(f"{given[0]} applies to distributed cases; add --distributed ddp (or fsdp)")
    if nnodes > 1 and nproc is None:
        raise OptionError("--nnodes needs --nproc N (ranks per node)")
    if node_rank >= nnodes:
        raise OptionError(f"invalid value {node_rank} for --node-rank; expected 0..{nnodes - 1} (--nnodes {nnodes})")
    endpoint = option.bb_rdzv_endpoint
    if nnodes > 1 and endpoint is None:
        raise OptionError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (node 0's address and a free port)")
    if endpoint is not None:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise OptionError(f"invalid value {endpoint!r} for --rdzv-endpoint; expected HOST:PORT, "
                              "e.g. 10.0.0.1:29400")
    timeout = seconds("--rdzv-timeout", option.bb_rdzv_timeout) or DEFAULT_RDZV_TIMEOUT_S
    return DistSettings(nproc=nproc, nnodes=nnodes, node_rank=node_rank, endpoint=endpoint, rdzv_timeout_s=timeout)


def check_metric(option: argparse.Namespace, distributed: Sequence[str]) -> None:
    """--metric and what it does not combine with."""
    if option.bb_metric not in METRICS:
        raise OptionError(f"unknown value {option.bb_metric!r} for --metric; valid choices: {', '.join(METRICS)}")
    if option.bb_metric != "instructions":
        return
    if option.bb_isolate or option.bb_profile:
        raise OptionError("--metric instructions counts every case in one valgrind process: it does not "
                          "combine with --isolate or --profile (valid with them: --metric time)")
    if any(d != "off" for d in distributed):
        raise OptionError("--distributed times steps; it does not combine with --metric instructions")


def check_data(option: argparse.Namespace) -> None:
    """--dataset, and the folder of --data-root when given: an image dataset's (named files,
    sizes, magic numbers), unless the folder holds a token file only, which is checked against
    the token models once they are known."""
    from bench.workloads import datasets, tokens  # numpy: only for the run that reaches this check

    if option.bb_dataset not in datasets.DATASETS:
        raise OptionError(f"unknown value {option.bb_dataset!r} for --dataset; valid choices: "
                          f"{', '.join(datasets.DATASETS)}")
    root = option.bb_data_root
    if root and not (tokens.token_file(root).exists() and not (Path(root) / option.bb_dataset).exists()):
        datasets.check_root(root, option.bb_dataset)


# KEY=VALUE items of --hf-config: a config attribute's name and its value.
_HF_ITEM = re.compile(r"^\s*[A-Za-z_]\w*\s*=\s*\S.*$")
HF_CONFIG_ENV = "BLITZBENCH_HF_CONFIG"  # models.hf reads it: here and in every child process


def check_hf_config(option: argparse.Namespace) -> None:
    """--hf-config KEY=VALUE,...: refused unless every item is one; passed on to models.hf (which
    imports torch) through the environment, so children of --isolate and torchrun get it too."""
    text = option.bb_hf_config
    if text is None:
        return
    bad = [item for item in text.split(",") if item.strip() and not _HF_ITEM.match(item)]
    if bad or not text.strip():
        raise OptionError(f"invalid --hf-config item {(bad or [text])[0].strip()!r}; expected KEY=VALUE,..., "
                          "e.g. num_hidden_layers=4,hidden_size=256")
    os.environ[HF_CONFIG_ENV] = text


# pytest-benchmark's own options, where its parser lets through values that mean nothing
# (it parses --benchmark-max-time as any decimal, the iteration counts as any integer; it
# refuses --benchmark-min-rounds 0 itself, a usage error).
_BENCHMARK_LIMITS = (  # (dest, flag, smallest valid value, what is valid)
    ("benchmark_max_time", "--benchmark-max-time", 0, "seconds >= 0"),
    ("benchmark_min_time", "--benchmark-min-time", 0, "seconds >= 0"),
    ("benchmark_warmup_iterations", "--benchmark-warmup-iterations", 0, "an integer >= 0"),
    ("benchmark_calibration_precision", "--benchmark-calibration-precision", 1, "an integer >= 1"),
    ("benchmark_cprofile_top", "--benchmark-cprofile-top", 1, "an integer >= 1"),
)


def check_benchmark_options(option: argparse.Namespace) -> None:
    """pytest-benchmark's timing options: a negative time or count is refused, naming it."""
    for dest, flag, smallest, valid in _BENCHMARK_LIMITS:
        text = getattr(option, dest, None)
        if text is None:
            continue
        value = float(text)
        if not (math.isfinite(value) and value >= smallest):
            raise OptionError(f"invalid value {text!s} for {flag}; expected {valid}")


def check_no_workers(option: argparse.Namespace) -> None:
    """pytest-xdist's -n is refused: workers would time their cases side by side, each the other's
    noise, and pytest-benchmark switches itself off under xdist (the run would measure nothing)."""
    workers = getattr(option, "numprocesses", None)  # xdist's -n, where xdist is installed
    if workers not in (None, 0):
        raise OptionError(f"invalid value {workers} for -n (pytest-xdist): blitzbench times one case at a time "
                          "in one process; valid: -n 0 or no -n. To split the matrix between machines: --shard i/N")


def check_model_module(module: str) -> None:
    """A --model-module that cannot be found, or whose file does not parse, named without running it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # a parent package that is missing, or a bad name
        spec, missing = None, f"{type(exc).__name__}: {exc}"
    else:
        missing = f"ModuleNotFoundError: No module named {module!r}"
    if spec is None:
        raise OptionError(f"--model-module {module}: cannot import it ({missing}); give an importable "
                          "module (on PYTHONPATH) that calls models.register_model")
    if spec.origin and spec.origin.endswith(".py"):
        try:
            compile(Path(spec.origin).read_bytes(), spec.origin, "exec")
        except SyntaxError as exc:
            raise OptionError(f"--model-module {module}: cannot import it: {exc.filename}, line {exc.lineno}: "
                              f"SyntaxError: {exc.msg}") from None
        except OSError as exc:
            raise OptionError(f"--model-module {module}: cannot read {spec.origin} ({exc.strerror})") from None


# --- the folders and the history a run writes into -------------------------------------------


def results_folder(option: argparse.Namespace) -> tuple[Path, str]:
    """The folder the run writes into, and the option naming it."""
    if option.bb_run_dir:
        return Path(option.bb_run_dir), "--run-dir"
    return Path(option.bb_results_dir), "--results-dir"


def history_db(option: argparse.Namespace) -> str | Path:
    """--history-db, or the history beside the run folders."""
    return option.bb_history_db or Path(option.bb_results_dir) / HISTORY_DB


def _file_in_place(path: Path, flag: str) -> OptionError:
    return OptionError(f"{flag} {path}: is a file, not a folder; give a folder (created if absent)")


def _cannot_create(path: Path, flag: str, why: str) -> OptionError:
    return OptionError(f"{flag} {path}: cannot create this folder ({why}); give a writable folder")


def check_folder(path: Path, flag: str) -> None:
    """Refuse, creating nothing, a folder the run could not write into: a file in its place or
    above it, or a folder it may not write in. (What only creating it shows, ``make_folder`` does.)"""
    if path.exists() and not path.is_dir():
        raise _file_in_place(path, flag)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise _cannot_create(path, flag, f"{existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _cannot_create(path, flag, f"{existing} is not writable")


def make_folder(path: Path, flag: str) -> None:
    """Create a folder the run will write into, or refuse naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _file_in_place(path, flag) from None
    except OSError as exc:
        raise _cannot_create(path, flag, exc.strerror or str(exc)) from None
