"""``python -m bench tune MODEL``: the fastest configuration of one model's phase.

The grid is the same work (model, phase, batch size, device) run every way the suite knows:
eager and each compile mode × autocast × memory format × optimizer implementation (× TF32 ×
cuDNN autotuner on CUDA). Each configuration is a case of the suite, measured as
``pytest bench`` measures it (one pytest process; the run folder, its report and the history
as for any run); then ``python -m reports.tune`` prints the configurations sorted by median,
the fastest and its speedup over the seed's configuration (eager, float32, no autocast,
contiguous, the seed's optimizer) with a 95% interval. Settings that do not exist on the
device are left out, and the command says which and why.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

import models
from bench.environment import ROOT
from bench.matrix import select as matrix
from bench.matrix.select import SelectionError
from bench.runners.inprocess import cuda_available
from bench.schema.case import AMPS, COMPILE_MODES, MEMORY_FORMATS, OPTIMIZER_FREE_PHASES, STEP_PHASES, Case
from bench.schema.files import DEFAULT_RESULTS_DIR
from bench.schema.results import new_run_dir
from bench.workloads.build import skip_reason
from bench.workloads.optimizers import implementations, supported_devices

REFUSED = 2  # bad input: the message names the value and the valid choices, nothing measured
# What the grid's "mode" ranges over: eager, or torch.compile in one of its modes.
TUNE_MODES = ("eager", *COMPILE_MODES)
SEED_OPTIMIZER = "adam"  # the Fashion-MNIST seed's optimizer, torch.optim.Adam at its defaults
BENCH_MODULE = "bench/bench_steps.py"  # where the phases' test functions live


@dataclass(frozen=True)
class Grid:
    """The configurations to measure, the seed's among them, and what was left out and why."""

    seed: Case
    cases: tuple[Case, ...]
    left_out: tuple[str, ...]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench tune", description="The fastest configuration of one model's phase: "
                                "eager and each compile mode x autocast x memory format x optimizer implementation.",
                                epilog="Arguments after -- go to pytest (e.g. -- --benchmark-min-rounds=20).")
    p.add_argument("model", help="a registered model, e.g. fashion_mlp")
    p.add_argument("--phase", default="train_step", help="one of " + ", ".join(STEP_PHASES)
                   + " (default: train_step)")
    p.add_argument("--batch-size", default="64", help="samples per step (default: 64, the seed's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--modes", default=",".join(TUNE_MODES),
                   help="comma list of eager and torch.compile modes (default: all: " + ",".join(TUNE_MODES) + ")")
    p.add_argument("--amp", default=",".join(AMPS), help="autocast settings (default: off,bfloat16,float16)")
    p.add_argument("--memory-formats", default=",".join(MEMORY_FORMATS),
                   help="memory formats (default: contiguous,channels_last)")
    p.add_argument("--optimizer", default=SEED_OPTIMIZER,
                   help=f"the seed's optimizer, whose implementations are tried (default: {SEED_OPTIMIZER})")
    p.add_argument("--optimizers", default=None,
                   help="the optimizer entries to try (default: the seed optimizer's implementations, "
                        "e.g. adam,adam_foreach,adam_fused)")
    p.add_argument("--tf32", default="off,on", help="CUDA: TensorFloat-32 off,on (default: both)")
    p.add_argument("--cudnn-benchmark", default="off,on", help="CUDA: cuDNN's autotuner off,on (default: both)")
    p.add_argument("--quick", action="store_true",
                   help="compile each mode only with the seed's other settings (every other setting is "
                        "still tried eagerly): one compile per mode instead of one per configuration")
    p.add_argument("--max-time", type=float, default=1.0,
                   help="seconds of timed rounds per configuration (pytest-benchmark's max time; default 1.0)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (default: inductor; other backends have no modes)")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR,
                   help="folder that receives the run folder (default: results)")
    return p


@dataclass(frozen=True)
class Choices:
    """The parsed and checked options: every value is one the suite knows."""

    model: str
    phase: str
    device: str
    batch_size: int
    modes: tuple[str, ...]
    amps: tuple[str, ...]
    memory_formats: tuple[str, ...]
    optimizers: tuple[str | None, ...]
    seed_optimizer: str | None
    tf32: tuple[bool, ...]
    cudnn_benchmark: tuple[bool, ...]


def check(args: argparse.Namespace) -> Choices:
    """Parse every option against its valid choices; a SelectionError names the bad value."""
    model = _one(_parse("models", args.model, "MODEL"), "a model")
    phase = args.phase
    if phase not in STEP_PHASES:
        raise SelectionError(f"unknown value {phase!r} for --phase; valid choices: {', '.join(STEP_PHASES)}")
    modes = tuple(dict.fromkeys(m.strip() for m in args.modes.split(",") if m.strip()))
    bad = [m for m in modes if m not in TUNE_MODES] or ([] if modes else [args.modes])
    if bad:
        raise SelectionError(f"unknown value {bad[0]!r} for --modes; valid choices: {', '.join(TUNE_MODES)}")
    seed_optimizer = _one(_parse("optimizers", args.optimizer, "--optimizer"), "an optimizer")
    optimizers = (matrix.parse_axis("optimizers", args.optimizers) if args.optimizers
                  else tuple(implementations(seed_optimizer)))
    free = phase in OPTIMIZER_FREE_PHASES  # forward, backward: no optimizer involved
    return Choices(
        model=model, phase=phase, device=_one(_parse("devices", args.device, "--device"), "a device"),
        batch_size=_one(_parse("batch_sizes", args.batch_size, "--batch-size"), "a batch size"), modes=modes,
        amps=matrix.parse_axis("amp", args.amp), memory_formats=matrix.parse_axis("memory_formats", args.memory_formats),
        optimizers=(None,) if free else optimizers, seed_optimizer=None if free else seed_optimizer,
        tf32=matrix.parse_axis("tf32", args.tf32), cudnn_benchmark=matrix.parse_axis("cudnn_benchmark", args.cudnn_benchmark))


def _parse(axis: str, text: str, flag: str) -> tuple:
    """``matrix.parse_axis``, its message naming tune's option (``--device``, not ``--devices``)."""
    try:
        return matrix.parse_axis(axis, text)
    except SelectionError as exc:
        raise SelectionError(str(exc).replace("--" + axis.replace("_", "-"), flag)) from None


def _one(values: tuple, what: str) -> object:
    if len(values) != 1:
        raise SelectionError(f"tune takes {what}, not {len(values)}: {', '.join(map(str, values))}")
    return values[0]


def device_left_out(c: Choices) -> tuple[Choices, list[str]]:
    """Drop the settings that do not exist on the device (or for the model), saying why."""
    why: list[str] = []

    def drop(values: tuple, gone: object, shown: str, reason: str) -> tuple:
        if gone in values:
            why.append(f"{shown}: {reason}")
        return tuple(v for v in values if v != gone)

    tf32, cudnn, modes, amps = c.tf32, c.cudnn_benchmark, c.modes, c.amps
    if c.device != "cuda":
        amps = drop(amps, "float16", "amp float16", "float16 autocast runs on CUDA only")
        modes = drop(modes, "reduce-overhead", "compile mode reduce-overhead",
                     "it adds CUDA graphs, which exist on CUDA only (on CPU it compiles as the default mode)")
        tf32 = drop(tf32, True, "tf32 on", "TensorFloat-32 is a CUDA setting")
        cudnn = drop(cudnn, True, "cudnn_benchmark on", "cuDNN's autotuner is a CUDA setting")
    elif True in cudnn and not _has_convolution(c.model):
        cudnn = drop(cudnn, True, "cudnn_benchmark on",
                     f"cuDNN's autotuner picks convolution algorithms; {c.model} has no convolution")
    return replace(c, modes=modes, amps=amps, tf32=tf32 or (False,), cudnn_benchmark=cudnn or (False,)), why


def _has_convolution(model: str) -> bool:
    """Whether the model has a convolution (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        module = models.get_spec(model).build()
    nn = torch.nn
    convolutions = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    return any(isinstance(m, convolutions) for m in module.modules())


def seed_case(c: Choices) -> Case:
    """The seed's configuration of this work: eager, float32, no autocast, contiguous."""
    return Case(phase=c.phase, model=c.model, optimizer=c.seed_optimizer, device=c.device, mode="eager",
                batch_size=c.batch_size)


def build_grid(c: Choices, quick: bool = False) -> Grid:
    """Every configuration of the choices (the seed's always among them), less what cannot run."""
    c, left_out = device_left_out(c)
    seed = seed_case(c)
    cases: dict[Case, None] = {seed: None}
    skipped: Counter = Counter()
    for mode, amp, fmt, opt, tf32, cudnn in itertools.product(c.modes, c.amps, c.memory_formats, c.optimizers,
                                                              c.tf32, c.cudnn_benchmark):
        case = replace(seed, mode="eager" if mode == "eager" else "compile",
                       compile_mode="default" if mode == "eager" else mode, amp=amp, memory_format=fmt,
                       optimizer=opt, tf32=tf32, cudnn_benchmark=cudnn)
        if quick and case.mode == "compile" and replace(case, mode="eager", compile_mode="default") != seed:
            continue  # --quick: each compile mode with the seed's other settings only
        devices = supported_devices(opt) if opt else None
        reason = (f"optimizer {opt!r} runs on {', '.join(devices)} only" if devices and c.device not in devices
                  else skip_reason(case))
        if reason:
            skipped[reason] += 1
        else:
            cases[case] = None
    left_out += [f"{reason} ({n} configuration{'' if n == 1 else 's'})" for reason, n in skipped.items()]
    if quick:
        left_out.append("--quick: compile modes only with the seed's other settings")
    return Grid(seed=seed, cases=tuple(cases), left_out=tuple(left_out))


def node_id(case: Case) -> str:
    return f"{BENCH_MODULE}::{case.id}"


def pytest_command(grid: Grid, run_dir: Path, results_dir: Path, args: argparse.Namespace,
                   pytest_args: Sequence[str] = ()) -> list[str]:
    """``pytest bench`` with the axes spanning the grid and the grid's cases named one by one."""
    cases = grid.cases

    def values(field: str) -> str:
        chosen = dict.fromkeys(getattr(c, field) for c in cases)
        return ",".join({True: "on", False: "off"}.get(v, str(v)) if isinstance(v, bool) else str(v)
                        for v in chosen)

    axes = {"models": "model", "phases": "phase", "devices": "device", "modes": "mode",
            "compile_modes": "compile_mode", "amp": "amp", "memory_formats": "memory_format",
            "batch_sizes": "batch_size", "tf32": "tf32", "cudnn_benchmark": "cudnn_benchmark"}
    command = [sys.executable, "-m", "pytest", "--preset", "smoke"]
    for axis, field in axes.items():
        command += [f"--{axis.replace('_', '-')}", values(field)]
    if cases[0].optimizer is not None:
        command += ["--optimizers", values("optimizer")]
    command += ["--compile-backend", args.compile_backend, f"--benchmark-max-time={args.max_time}",
                "--results-dir", str(results_dir), "--run-dir", str(run_dir), *pytest_args]
    return command + [node_id(c) for c in cases]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # After --: pytest's own options (argparse's REMAINDER would also swallow tune's options).
    split = argv.index("--") if "--" in argv else len(argv)
    args, pytest_args = parser().parse_args(argv[:split]), argv[split + 1:]
    try:
        choices = check(args)
        if choices.device == "cuda" and not cuda_available():
            raise SelectionError("--device cuda: CUDA is not available on this machine; valid choices here: cpu")
        if not args.max_time > 0:
            raise SelectionError(f"invalid --max-time {args.max_time}; expected a positive number of seconds")
        grid = build_grid(choices, quick=args.quick)
    except SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    print(f"tune: {len(grid.cases)} configuration{'' if len(grid.cases) == 1 else 's'} of "
          f"{choices.phase}[{choices.model}] on {choices.device}, batch {choices.batch_size}")
    for line in grid.left_out:
        print(f"  left out: {line}")
    results_dir = Path(args.results_dir).resolve()
    try:
        run_dir = new_run_dir(results_dir)
    except OSError as exc:
        print(f"error: --results-dir {args.results_dir}: cannot create a run folder in it ({exc})", file=sys.stderr)
        return REFUSED
    # pytest from the project's root (its configuration and bench's conftest), paths absolute.
    measured, interrupted = run_child(pytest_command(grid, run_dir, results_dir, args, pytest_args))
    if measured == REFUSED and not interrupted:  # pytest refused an option: it measured nothing
        _remove_if_empty(run_dir)
        return REFUSED
    # Reading and statistics are the reports' (bench reaches reports only from its pytest wiring).
    summary = subprocess.call([sys.executable, "-m", "reports.tune", str(run_dir), "--seed", grid.seed.id], cwd=ROOT)
    return INTERRUPTED if interrupted else summary or measured


INTERRUPTED = 128 + signal.SIGINT


def run_child(command: list[str]) -> tuple[int, bool]:
    """Run the measuring pytest; on Ctrl-C pass it one SIGINT and wait: it finishes the case in
    hand and writes what it measured (the summary then reads it). Its own process group, so a
    terminal's Ctrl-C reaches it once, through here, whether or not nox stands in between."""
    child = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    try:
        return child.wait(), False
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        return child.wait(), True


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # it holds something: keep it
