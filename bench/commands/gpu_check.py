"""``python -m bench gpu-check``: prove the suite's CUDA paths on a real GPU (``nox -s gpu-check``).

    python -m bench gpu-check --list                         # the checks, their bounds and commands
    python -m bench gpu-check --out $OUT/gpu --budget-s 540  # on a GPU: every check, within 9 minutes
    python -m bench gpu-check --checks timing,memory         # some of them

Each check measures through the suite's own commands (``pytest bench`` selections and ``python -m
bench tune``, children writing run folders under ``OUT/work/``, read back by ``python -m
reports.gpu_check``) and, where it needs a reference, measures the same thing itself in this
process: CUDA events, ``torch.cuda.max_memory_allocated``, a large matmul. It prints each figure
beside its bound and ends as pass, fail, error (it raised: recorded, and the next check runs) or
skip (no CUDA, too little of the time budget left, a package missing), naming why.
``OUT/gpu-check.json`` and ``OUT/gpu-check.md`` are rewritten (atomically) after every check, so a
run stopped from outside keeps what it found.

Exit status: 0 every check passed or was skipped (no CUDA: all are skipped, and the summary says
so); 1 a check failed or raised; 2 a refusal (an unknown check, a bad value, a non-empty --out,
--require-cuda without CUDA), before anything runs; 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from bench.commands.gpu_record import (ERROR, JSON_NAME, MARKDOWN_NAME, PASS, SKIP, Bound, Reading, Record, above,
                                       at_least, equal, listing, relative_difference, show, status_of,
                                       strictly_between, summary_line, within, write_summaries)
from bench.commands.gpu_suite import (RESERVE_S, BudgetSkip, Measured, Runs, RunFailed, Selection, Tune, shown,
                                      tensorboard_views)
from bench.schema.case import COMPILE_MODES, Case
from bench.schema.files import DEFAULT_RESULTS_DIR
from bench.schema.results import new_run_dir

if TYPE_CHECKING:
    from bench.commands.gpu_measure import StepProbe

REFUSED, FAILED, INTERRUPTED = 2, 1, 130
DEFAULT_BUDGET_S = 540.0  # one device command runs at most 10 minutes: this leaves a minute spare
DEFAULT_MAX_TIME = 0.5  # pytest-benchmark's seconds of rounds per case: enough for a GPU median
PROBE_S = 30.0  # the longest of this process's own measurements of one case (GPT-2's build included)
TOLERANCE_TIMING = 0.05
TOLERANCE_MEMORY = 0.01
PEAK_SHARE = (0.30, 1.00)
TUNE_GOAL = 3.0
TF32_MATMUL_GOAL = 1.5
MATMUL_LABEL = "8192³ float32 matmul"


# --- what the checks measure: cases and the suite's commands --------------------------------

def train_case(model: str, batch: int, optimizer: str = "adam", **fields: Any) -> Case:
    return Case(phase="train_step", model=model, optimizer=optimizer, device="cuda", mode="eager",
                batch_size=batch, **fields)


FASHION = train_case("fashion_mlp", 64)
LENET = train_case("lenet", 64)
RESNET = train_case("resnet18", 16, image_size=224)
# GPT-2 124M at its 1024-token block (the model's default, so the id leaves it out), bf16 autocast.
GPT2 = train_case("gpt2_124m", 8, optimizer="adamw", amp="bfloat16")
TIMED = (FASHION, LENET, RESNET, GPT2)
# Matmul-bound in float32: at 8192 samples the MLP's three matmuls dwarf its launches.
TF32_OFF = train_case("fashion_mlp", 8192)
TF32_ON = replace(TF32_OFF, tf32=True)
RESNET_AUTOTUNED = replace(RESNET, cudnn_benchmark=True)
DDP1 = replace(FASHION, distributed="ddp")
GPT2_COMPILED = replace(GPT2, mode="compile")

# Cases that can share a run share one (each child costs an interpreter and a CUDA context);
# resnet18 at 224 px cannot run beside the 28 px models, and the profiled, distributed and
# compiled runs stand alone so that their cost is skipped alone when the budget is short.
CORE = Selection("core", (FASHION, LENET, GPT2, TF32_OFF, TF32_ON), estimate_s=100, seeds=(TF32_OFF.id,))
RESNET_RUN = Selection("resnet18", (RESNET, RESNET_AUTOTUNED), estimate_s=50, seeds=(RESNET.id,))
PROFILED = Selection("profile", (FASHION, GPT2), extra=("--profile",), traces=True, estimate_s=70)
NCCL = Selection("nccl", (DDP1,), extra=("--nproc", "1"), estimate_s=60)
MFU = Selection("mfu", (GPT2_COMPILED,), estimate_s=150)
SELECTIONS = (CORE, RESNET_RUN, PROFILED, NCCL, MFU)
TUNE = Tune("tune", ("fashion_mlp", "--phase", "train_step", "--batch-size", "64", "--device", "cuda", "--quick",
                     "--max-time", "0.3", "--amp", "off,bfloat16"), seed=FASHION.id, estimate_s=240)


class CaseFailed(RuntimeError):
    """The suite's row for a case says it was not measured; the message has its status and error."""


def measured_row(row: dict[str, Any], allowed: Sequence[str] = ()) -> dict[str, Any]:
    """The row when the case was measured (or ended in one of ``allowed``), else CaseFailed."""
    if row.get("status") == "ok" or row.get("status") in allowed:
        return row
    why = row.get("error") or row.get("invalid_reason") or "no reason recorded"
    raise CaseFailed(f"{row.get('case_id')}: {row.get('status')}: {str(why)[:500]}")


@dataclass
class Context:
    """What the checks share: the suite's runs, this process's own measurements, and CUDA."""

    runs: Runs
    cuda: bool
    no_cuda: str = ""  # why there is no CUDA, for the skip lines
    probes: dict[str, StepProbe] = field(default_factory=dict)
    matmuls: dict[tuple[str, bool], float] = field(default_factory=dict)

    def measured(self, case: Case) -> Measured:
        selection = next((s for s in SELECTIONS if case in s.cases), None)
        if selection is None:
            raise KeyError(f"{case.id} is in none of the check's selections")
        return self.runs.suite(selection)

    def row(self, case: Case, allowed: Sequence[str] = ()) -> dict[str, Any]:
        return measured_row(self.measured(case).row(case.id), allowed)

    def probe(self, case: Case, row: dict[str, Any]) -> StepProbe:
        """The case's step measured here (once: the timing and memory checks share it)."""
        if case.id not in self.probes:
            from bench.commands.gpu_measure import probe_step

            self._afford(PROBE_S, f"measuring {case.id} here")
            self.probes[case.id] = probe_step(case, int(row.get("iterations") or 1), float(row["median_s"]))
        return self.probes[case.id]

    def matmul(self, dtype: str, tf32: bool) -> float:
        if (dtype, tf32) not in self.matmuls:
            from bench.commands.gpu_measure import matmul_flops

            self._afford(10.0, f"a {dtype} matmul")
            self.matmuls[dtype, tf32] = matmul_flops(dtype, tf32)
        return self.matmuls[dtype, tf32]

    def _afford(self, seconds: float, what: str) -> None:
        if self.runs.left() - RESERVE_S < seconds:
            raise BudgetSkip(f"{max(self.runs.left(), 0):.0f} s of the budget left; {what} needs about {seconds:.0f} s")


def guarded(label: str, read: Callable[[], list[Reading]]) -> list[Reading]:
    """``read()``; when it cannot be had, one reading saying why (the check's other parts still run)."""
    try:
        return read()
    except BudgetSkip as exc:
        return [Reading(label, "not measured", skipped=f"budget: {exc}")]
    except Exception as exc:  # an OOM, a run that measured nothing, a row that says error
        return [Reading(label, "not measured", error=f"{type(exc).__name__}: {exc}")]


def per_case(cases: Sequence[Case], read: Callable[[Case], list[Reading]]) -> list[Reading]:
    """Each case's readings, a case that cannot be had saying why in its own reading."""
    return [r for case in cases for r in guarded(case.id, functools.partial(read, case))]


def interval_of(found: dict[str, Any] | None) -> tuple[float, float] | None:
    if not found or found.get("low") is None or found.get("high") is None:
        return None
    return (found["low"], found["high"])


# --- the checks -----------------------------------------------------------------------------

Found = tuple[list[Reading], str]


def check_timing(ctx: Context) -> Found:
    def read(case: Case) -> list[Reading]:
        row = ctx.row(case)
        probe = ctx.probe(case, row)
        suite = row["median_s"]
        return [Reading(case.id, "suite median", suite, "s", interval=(row.get("median_ci_low_s"),
                                                                        row.get("median_ci_high_s"))),
                Reading(case.id, f"CUDA events median ({probe.event_rounds} rounds of {probe.iterations})",
                        probe.event_median_s, "s"),
                Reading(case.id, "suite vs CUDA events", relative_difference(suite, probe.event_median_s), "rel",
                        within(TOLERANCE_TIMING)),
                Reading(case.id, f"CUDA events, {probe.block_calls} calls between two events",
                        probe.blocked_median_s, "s", note="no synchronization per round: the step's throughput")]

    return per_case(TIMED, read), ("suite: pytest-benchmark's median (rounds synchronized at their edges) in "
                                   "a pytest bench child; here: the same case built anew in this process, "
                                   "timed between CUDA events in rounds of the suite's iterations")


def check_memory(ctx: Context) -> Found:
    def read(case: Case) -> list[Reading]:
        row = ctx.row(case)
        probe = ctx.probe(case, row)
        suite = row.get("mem_peak_bytes")
        return [Reading(case.id, "suite mem_peak_bytes", suite, "bytes"),
                Reading(case.id, "torch.cuda.max_memory_allocated here", probe.peak_bytes, "bytes"),
                Reading(case.id, "suite vs here", relative_difference(suite, probe.peak_bytes), "rel",
                        within(TOLERANCE_MEMORY)),
                Reading(case.id, "held at the step's start, suite / here", f"{row.get('mem_held_bytes')} / "
                        f"{probe.held_bytes}", "text")]

    return per_case(TIMED, read), ("here: the case built alone in this process after the others were freed, "
                                   "warmed up as the harness does, the allocator's peak over two steps")


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


PRECISIONS = (("bfloat16", False), ("float32", True), ("float32", False))  # (dtype, TF32)


def check_peak(ctx: Context) -> Found:
    from bench.commands.gpu_measure import MATMUL_SIZE
    from bench.passes.flops import gpu_peak

    name = gpu_name()

    def label(dtype: str, tf32: bool) -> str:
        return f"{MATMUL_SIZE}³ matmul, {'tf32' if tf32 else dtype}"

    def read(dtype: str, tf32: bool) -> list[Reading]:
        achieved, peak = ctx.matmul(dtype, tf32), gpu_peak(name, dtype, tf32)
        return [Reading(label(dtype, tf32), "achieved", achieved, "flop/s"),
                Reading(label(dtype, tf32), "data-sheet peak (bench.passes.flops)", peak, "flop/s",
                        note="" if peak else f"{name!r} is not in GPU_PEAKS"),
                Reading(label(dtype, tf32), "share of peak", achieved / peak if peak else None, "share",
                        strictly_between(*PEAK_SHARE))]

    readings = [r for dtype, tf32 in PRECISIONS
                for r in guarded(label(dtype, tf32), functools.partial(read, dtype, tf32))]
    return readings, f"GPU: {name}; random data, median of 10 products between CUDA events"


def check_tf32(ctx: Context) -> Found:
    def suite() -> list[Reading]:
        off, on = ctx.row(TF32_OFF), ctx.row(TF32_ON)
        found = ctx.measured(TF32_ON).speedup(TF32_OFF.id, TF32_ON.id)
        return [Reading(TF32_ON.id, "suite median, TF32 off", off["median_s"], "s"),
                Reading(TF32_ON.id, "suite median, TF32 on", on["median_s"], "s"),
                Reading(TF32_ON.id, "speedup with TF32 on", found and found["speedup"], "x",
                        above(1.0, "above 1× with its 95% interval", whole_interval=True),
                        interval=interval_of(found))]

    def matmul() -> list[Reading]:
        speedup = ctx.matmul("float32", True) / ctx.matmul("float32", False)
        return [Reading(MATMUL_LABEL, "speedup with TF32 on (the suite's switch)", speedup, "x",
                        at_least(TF32_MATMUL_GOAL, f"at least {TF32_MATMUL_GOAL:g}×"))]

    return (guarded(TF32_ON.id, suite) + guarded(MATMUL_LABEL, matmul),
            "TF32 set as the suite sets it for a case with tf32 in its id (bench.workloads.backend)")


def check_cudnn_benchmark(ctx: Context) -> Found:
    def flags() -> list[Reading]:
        from bench.commands.gpu_measure import cudnn_benchmark_in_effect

        inside, restored = cudnn_benchmark_in_effect()
        return [Reading("backend settings", "cudnn.benchmark inside a cudnn_bench case", inside, "flag", equal(True)),
                Reading("backend settings", "restored after it", restored, "flag", equal(True))]

    def suite(case: Case) -> list[Reading]:
        off, on = ctx.row(RESNET), ctx.row(RESNET_AUTOTUNED)
        found = ctx.measured(RESNET).speedup(RESNET.id, RESNET_AUTOTUNED.id)
        return [Reading(case.id, "suite median, autotuner off / on",
                        f"{show(off['median_s'], 's')} / {show(on['median_s'], 's')}", "text"),
                Reading(case.id, "speedup with cudnn.benchmark", found and found["speedup"], "x",
                        interval=interval_of(found)),
                Reading(case.id, "first call, autotuner off / on (its search runs there)",
                        f"{show(off.get('first_call_s'), 's')} / {show(on.get('first_call_s'), 's')}", "text")]

    return guarded("backend settings", flags) + per_case((RESNET_AUTOTUNED,), suite), (
        "the speedup is reported without a bound: cuDNN's default algorithm may already be the fastest")


def check_profiling(ctx: Context) -> Found:
    def read(case: Case) -> list[Reading]:
        measured = ctx.measured(case)
        row = measured_row(measured.row(case.id))
        found = measured.read.get("breakdowns", {}).get(case.id)
        if found is None:
            raise RunFailed("no breakdown: " + "; ".join(measured.read.get("breakdown_errors", [])))
        parts = found["parts"]
        share = {p: (parts.get(p) or {}).get("share") for p in ("kernel", "idle", "launch overhead")}
        unit = Bound("between 0% and 100%", low=0.0, high=1.0)
        return [Reading(case.id, "trace has device kernels", "kernel" in parts, "flag", equal(True)),
                Reading(case.id, "kernel launches per step", row.get("kernel_launches_per_step"), "count",
                        above(0, "> 0")),
                Reading(case.id, "operator calls per step", row.get("op_calls_per_step"), "count"),
                Reading(case.id, "kernel share of the device step", share["kernel"], "share", unit),
                Reading(case.id, "idle share of the device step", share["idle"], "share", unit),
                Reading(case.id, "launch overhead share of the host step", share["launch overhead"], "share", unit)]

    return per_case(PROFILED.cases, read), "pytest bench --profile; breakdown: reports.traces.breakdown"


def check_tensorboard(ctx: Context) -> Found:
    import importlib.util

    missing = [m for m in ("tensorboard", "torch_tb_profiler") if importlib.util.find_spec(m) is None]
    if missing:
        return [Reading("viewer", "not measured", skipped=f"{', '.join(missing)} not installed here: carry the "
                        "wheels (docs/gpu/README.md)")], ""
    from bench.passes.profiling import trace_folder_name

    measured = ctx.runs.suite(PROFILED)
    limit = min(ctx.runs.left() - RESERVE_S, 240.0)
    if limit < 60:
        raise BudgetSkip(f"{max(ctx.runs.left(), 0):.0f} s of the budget left; the viewer needs about 60 s")
    runs = {f"traces/{trace_folder_name(c.id)}": c.id for c in PROFILED.cases}
    found = tensorboard_views(measured.run_dir, list(runs), ctx.runs.work / "tensorboard" / "viewer.log", limit)
    readings = []
    for run, views in found.items():
        readings += [Reading(runs[run], "views", views["views"], "text", listing("Kernel")),
                     Reading(runs[run], "overview's device type", views["device_type"], "text", equal("GPU")),
                     Reading(runs[run], "kernels in the kernel view's table", views["kernel_rows"], "count",
                             above(0, "> 0")),
                     Reading(runs[run], "overview has a GPU summary", views["gpu_summary"], "flag")]
    return readings, "python -m reports.tensorboard RUN --port 0, asked over the plugin's REST API"


def check_nccl(ctx: Context) -> Found:
    def available() -> list[Reading]:
        from bench.commands.gpu_measure import nccl_version

        version = nccl_version()
        return [Reading("torch", "NCCL available", version is not None, "flag", equal(True)),
                Reading("torch", "NCCL version", version, "text")]

    def read(case: Case) -> list[Reading]:
        row = ctx.row(case)
        return [Reading(case.id, "all-reduce of the gradients' size", row.get("allreduce_s"), "s", above(0, "> 0")),
                Reading(case.id, "suite median", row.get("median_s"), "s"),
                Reading(case.id, "ranks in sync", row.get("ranks_in_sync"), "flag")]

    return (guarded("torch", available) + per_case((DDP1,), read),
            "one rank through torchrun; CUDA cases use the nccl backend")


def check_mfu(ctx: Context) -> Found:
    def read(case: Case) -> list[Reading]:
        row = ctx.row(case)
        share = strictly_between(0.0, 1.0)
        return [Reading(case.id, "tokens/s", row.get("tokens_per_s"), "tokens/s"),
                Reading(case.id, "MFU (counted FLOPs / median / peak)", row.get("peak_share"), "share", share),
                Reading(case.id, "MFU (6NT estimate)", row.get("mfu_estimate"), "share", share),
                Reading(case.id, "peak", row.get("peak_source"), "text"),
                Reading(case.id, "correct against float64 eager", row.get("correct"), "flag", equal(True)),
                Reading(case.id, "compile time", row.get("compile_time_s"), "s")]

    return per_case((GPT2_COMPILED,), read), "torch.compile (default mode), bf16 autocast, AdamW, batch 8 × 1024 tokens"


def check_compile(ctx: Context) -> Found:
    measured = ctx.runs.tune(TUNE)

    def read(case: Case) -> list[Reading]:
        row = measured_row(measured.row(case.id), allowed=("wrong_result",))
        found = measured.speedup(TUNE.seed, case.id)
        return [Reading(case.id, "correct against float64 eager", row.get("correct", False) is True, "flag",
                        equal(True), note=str(row.get("error") or "")),
                Reading(case.id, "largest error", row.get("max_abs_error"), "count"),
                Reading(case.id, "speedup over eager", found and found["speedup"], "x", interval=interval_of(found)),
                Reading(case.id, "compile time", row.get("compile_time_s"), "s")]

    cases = [replace(FASHION, mode="compile", compile_mode=mode) for mode in COMPILE_MODES]
    return per_case(cases, read), f"the cases of the tune run (seed {TUNE.seed}); speedups with 95% intervals"


def check_tune(ctx: Context) -> Found:
    measured = ctx.runs.tune(TUNE)
    priced = [s for s in measured.read.get("speedups", {}).get(TUNE.seed, []) if s.get("speedup") is not None]
    best = max(priced, key=lambda s: s["speedup"], default=None)
    failed = [r for r in measured.read.get("rows", []) if r.get("status") != "ok"]
    readings = [Reading("tune", "configurations measured", len(priced), "count"),
                Reading("tune", "configurations not measured", len(failed), "count",
                        note="; ".join(f"{r['case_id']}: {r['status']}" for r in failed[:5])),
                Reading("tune", "fastest", best and best["case_id"], "text"),
                Reading("tune", "its speedup over the seed (eager float32)", best and best["speedup"], "x",
                        at_least(TUNE_GOAL, f"at least {TUNE_GOAL:g}× (the goal)"), interval=interval_of(best))]
    reached = best is not None and best["speedup"] >= TUNE_GOAL
    return readings, f"goal of {TUNE_GOAL:g}× {'reached' if reached else 'not reached'}; " + " ".join(
        shown(measured.command))


@dataclass(frozen=True)
class Check:
    """One check: its name, what it proves, its bounds as --list prints them, the function that
    measures it, and the suite runs it reads."""

    name: str
    title: str
    bounds: str
    measure: Callable[[Context], Found]
    runs: tuple[Selection | Tune, ...] = ()
    needs_cuda: bool = True


CHECKS: tuple[Check, ...] = (
    Check("timing", "the suite's CUDA medians agree with CUDA-event timing of the same step",
          f"suite median vs CUDA events within ±{TOLERANCE_TIMING:.0%}, per case", check_timing, (CORE, RESNET_RUN)),
    Check("memory", "mem_peak_bytes equals torch.cuda.max_memory_allocated measured independently",
          f"within ±{TOLERANCE_MEMORY:.0%}, per case", check_memory, (CORE, RESNET_RUN)),
    Check("peak", "the data-sheet peaks: a large matmul's share of peak FLOP/s",
          f"above {PEAK_SHARE[0]:.0%} and below {PEAK_SHARE[1]:.0%} (bf16, tf32, fp32)", check_peak),
    Check("tf32", "TF32 takes effect: a matmul-bound case speeds up with it on",
          f"suite speedup above 1× (95% interval); matmul at least {TF32_MATMUL_GOAL:g}×", check_tf32, (CORE,)),
    Check("cudnn_benchmark", "cudnn.benchmark takes effect inside a case and is restored",
          "flag on inside, restored after; resnet18's speedup reported", check_cudnn_benchmark, (RESNET_RUN,)),
    Check("profiling", "a CUDA trace with kernels, launches per step, the breakdown's shares",
          "kernels present, launches > 0, shares in [0, 1]", check_profiling, (PROFILED,)),
    Check("tensorboard", "TensorBoard's profiler plugin lists the GPU views of the trace",
          "views list 'Kernel', device type GPU, kernels > 0", check_tensorboard, (PROFILED,)),
    Check("nccl", "DDP train_step on one rank over NCCL runs and records its all-reduce",
          "NCCL available, all-reduce > 0", check_nccl, (NCCL,)),
    Check("compile", "reduce-overhead and max-autotune on train_step: correct, and their speedups",
          "correct against float64 eager; speedups with intervals reported", check_compile, (TUNE,)),
    Check("tune", "python -m bench tune fashion_mlp on the GPU, against the 3× goal",
          f"fastest over the seed at least {TUNE_GOAL:g}× (reported either way)", check_tune, (TUNE,)),
    Check("mfu", "the GPT-2 124M decoder's train_step (compile, bf16): MFU beside tokens/s",
          "MFU above 0% and below 100%; correct", check_mfu, (MFU,)),
)


# --- running the checks ---------------------------------------------------------------------

def run_check(check: Check, ctx: Context) -> Record:
    """One check's record. It never raises (but for Ctrl-C): what it raised is its error."""
    started = time.monotonic()
    if check.needs_cuda and not ctx.cuda:
        return Record(check.name, SKIP, note=f"no CUDA: {ctx.no_cuda}")
    try:
        readings, note = check.measure(ctx)
        record = Record(check.name, status_of(readings), readings, note)
    except BudgetSkip as exc:
        record = Record(check.name, SKIP, note=f"budget: {exc}")
    except Exception as exc:  # one check's failure never stops the others
        record = Record(check.name, ERROR, note=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}")
    record.elapsed_s = time.monotonic() - started
    record.commands = [" ".join(shown(ctx.runs.done[r.name].command)) for r in check.runs if r.name in ctx.runs.done]
    return record


def print_record(record: Record) -> None:
    if record.status == SKIP and not record.readings:
        print(f"[{record.check}] skipped: {record.note.splitlines()[0] if record.note else ''}", flush=True)
        return
    print(f"[{record.check}] {record.status} ({record.elapsed_s:.0f} s)", flush=True)
    for r in record.readings:
        mark = {True: "ok", False: "FAIL", None: ""}[r.ok]
        bound = f"   bound: {r.bound.text} {mark}" if r.bound else ""
        print(f"    {r.case}: {r.name}: {r.text()}{bound}", flush=True)
    if record.note:
        print("    note: " + record.note.replace("\n", "\n          ").rstrip(), flush=True)


def run_checks(checks: Sequence[Check], ctx: Context, out: Path, meta: dict[str, Any]) -> list[Record]:
    """Every check in turn, the summaries rewritten after each; Ctrl-C stops after writing them."""
    records: list[Record] = []
    for i, check in enumerate(checks):
        if ctx.cuda or not check.needs_cuda:
            print(f"[{check.name}] {check.title} ...", flush=True)
        records.append(run_check(check, ctx))
        print_record(records[-1])
        write_summaries(out, records, meta, [c.name for c in checks[i + 1:]])
    return records


# --- the command line -----------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench gpu-check", description=__doc__.split("\n\n")[0],
                                epilog="Exit 0 passed or skipped (no CUDA: all skipped), 1 a check failed or "
                                       "raised, 2 a refusal, 130 interrupted.")
    p.add_argument("--out", type=Path, default=None,
                   help=f"an empty or new folder for {JSON_NAME}, {MARKDOWN_NAME} and, under work/, the runs "
                        f"(default: {DEFAULT_RESULTS_DIR}/gpu-check/<UTC time>)")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help=f"seconds for the whole check; a run that cannot finish in what is left is skipped "
                        f"(default {DEFAULT_BUDGET_S:g})")
    p.add_argument("--max-time", type=float, default=DEFAULT_MAX_TIME,
                   help=f"pytest-benchmark's seconds of rounds per case (default {DEFAULT_MAX_TIME:g})")
    p.add_argument("--checks", default=None, help="comma list of checks (default: all): "
                   + ", ".join(c.name for c in CHECKS))
    p.add_argument("--require-cuda", action="store_true", help="exit 2 when there is no CUDA device")
    p.add_argument("--list", "--dry-run", dest="list", action="store_true",
                   help="print the checks, their bounds and the commands they run; run nothing")
    return p


class Refusal(ValueError):
    """Bad input, refused before anything runs (exit 2); the message names the value."""


def choose(text: str | None) -> tuple[Check, ...]:
    if not text:
        return CHECKS
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {c.name: c for c in CHECKS}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise Refusal(f"unknown check {unknown[0] if unknown else text!r} for --checks; valid choices: "
                      + ", ".join(known))
    return tuple(known[n] for n in dict.fromkeys(names))


def print_list(checks: Sequence[Check], max_time: float) -> None:
    """Each check, its bound and the commands it runs (each command once: checks share runs)."""
    work, printed = Path("OUT") / "work", set()
    for check in checks:
        print(f"{check.name}: {check.title}\n    bound: {check.bounds}")
        for run in check.runs:
            if run.name in printed:
                print(f"    reads run {run.name} (above)")
                continue
            printed.add(run.name)
            command = (run.command(work / run.name / "run", max_time) if isinstance(run, Selection)
                       else run.command(work / run.name))
            print(f"    runs {run.name} (~{run.estimate_s:.0f} s): {' '.join(shown(command))}")


def prepare_out(out: Path | None) -> Path:
    if out is None:
        return new_run_dir(Path(DEFAULT_RESULTS_DIR) / "gpu-check")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Refusal(f"--out {out}: {'not a folder' if not out.is_dir() else 'not empty'}; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def environment(argv: Sequence[str], budget_s: float) -> tuple[dict[str, Any], bool, str]:
    """(the summary's header, whether CUDA is here, why not)."""
    import torch

    from bench.environment import git_info, gpu_info

    cuda = torch.cuda.is_available()
    why = "" if cuda else (f"torch {torch.__version__} (built with CUDA {torch.version.cuda or 'none'}) sees no "
                           "GPU: torch.cuda.is_available() is False")
    gpu = gpu_info()
    env = {"torch": torch.__version__, "CUDA (torch built with)": torch.version.cuda,
           "GPU": gpu.get("gpu_name") or "none", "driver": gpu.get("gpu_driver") or "-",
           "Python": sys.version.split()[0], "git commit": git_info()["git_commit"],
           "command": "python -m bench gpu-check " + " ".join(argv), "budget": f"{budget_s:g} s"}
    meta = dict(started_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cuda=cuda, environment=env)
    return meta, cuda, why


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        checks = choose(args.checks)
        if not (args.budget_s > 0 and args.max_time > 0):
            raise Refusal(f"--budget-s {args.budget_s:g} --max-time {args.max_time:g}: expected positive seconds")
        if args.list:
            print_list(checks, args.max_time)
            return 0
        meta, cuda, why = environment(argv, args.budget_s)
        if args.require_cuda and not cuda:
            raise Refusal(f"--require-cuda: {why}")
        out = prepare_out(args.out)
    except Refusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    runs = Runs(work=out.resolve() / "work", deadline=time.monotonic() + args.budget_s, max_time=args.max_time)
    ctx = Context(runs=runs, cuda=cuda, no_cuda=why)
    try:
        records = run_checks(checks, ctx, out, meta)
    except KeyboardInterrupt:
        print(f"interrupted; summaries so far: {out / JSON_NAME}", file=sys.stderr)
        return INTERRUPTED
    json_path, md_path = write_summaries(out, records, meta)
    print(f"\n{summary_line(records, cuda)}\nsummaries: {json_path} and {md_path}")
    return 0 if all(r.status in (PASS, SKIP) for r in records) else FAILED


if __name__ == "__main__":
    sys.exit(main())
