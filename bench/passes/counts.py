"""Instruction counts (``--metric instructions``): the figures, and reading callgrind's output.

Wall-clock time on a shared machine moves by tens of percent between processes; the number
of instructions a step executes does not move with load. A count run measures every CPU case
under valgrind's callgrind, in one worker process (``bench.runners.count_worker``) for the whole
selection: per case a few repeats of ``K`` calls each, collected only around the calls.

This module is light (no torch): the reports read the declarations, the pytest side
(``bench.runners.counting``) and the worker share the parsing and the line format.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.schema.figures import Figure, Kind, View

SOURCE = "instructions"
# Each repeat runs at least this many instructions (K calls of the step), so that the fixed
# cost of switching collection on and off is negligible.
MIN_REPEAT_INSTRUCTIONS = 10_000_000
DEFAULT_REPEATS = 5  # measured repeats per case, after one discarded repeat
DISCARDED_REPEATS = 1
# Uninstrumented calls before counting (cheap under valgrind): the first dozen train steps
# still drift by ~0.5% per call (allocator thresholds settling), then the counts repeat.
WARMUP_CALLS = 20
TOP_FUNCTIONS = 20
DEBIAN_PACKAGE = "valgrind"
CUDA_SKIP_REASON = "instruction counts see CPU work only"
COMPILE_SKIP_REASON = ("torch.compile under valgrind is impractically slow (the compiler itself runs "
                       "instrumented, ~50x slower); instruction counts cover eager cases")
# The worker's environment: one thread, a fixed hash seed (dict/set order, hence the
# instructions of any code that iterates them, repeats between processes).
WORKER_ENV = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "PYTHONUNBUFFERED": "1"}
# The kernels MKL and oneDNN pick under valgrind. Their AVX2 kernels (FMA) run about 100x slower
# under valgrind than their SSE4.2 / AVX ones (measured with valgrind --tool=none, one thread:
# fashion_mlp forward 0.68 s per call with MKL's AVX2 GEMM against 6 ms with SSE4.2; lenet
# train_step 4.4 s with oneDNN's AVX2 convolutions against 0.09 s with AVX), which made a count
# run take hours. So counts take these two libraries' older kernels; ATen's own kernels keep
# their AVX2 path (23 against 35 ms: not the cause). A variable already set in the environment
# wins (MKL_ENABLE_INSTRUCTIONS=AVX2 counts MKL's AVX2 kernels, ~100x slower); the run's
# environment records what was used, and the gate compares only runs that used the same.
LIBRARY_ISA_ENV = {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "AVX"}


def library_isa(environ: Mapping[str, str]) -> dict[str, str]:
    """The library ISA variables a count worker runs with: the defaults, unless ``environ`` sets them."""
    return {key: environ.get(key) or default for key, default in LIBRARY_ISA_ENV.items()}


def describe_library_isa(settings: Mapping[str, str]) -> str:
    """One comparable string for the run's environment: ``MKL_ENABLE_INSTRUCTIONS=SSE4_2 ...``."""
    return " ".join(f"{key}={value}" for key, value in sorted(settings.items()))

FIGURES = (
    Figure("instructions", Kind.COUNT, "instructions", SOURCE,
           help="instructions per call of the timed step under callgrind (median of the repeats)",
           deterministic=True, tolerance=0.01, views=frozenset({View.TABLE, View.HISTORY})),
    Figure("instructions_spread", Kind.RATIO, "instr. spread", SOURCE,
           help="(max - min) / median of the case's repeats"),
    Figure("instruction_repeats", Kind.COUNT, "instr. repeats", SOURCE,
           help="measured repeats (after one discarded)"),
    Figure("instruction_top", Kind.TEXT, "top functions", SOURCE,
           help="up to 20 functions by their own instructions per call (callgrind_annotate of one "
                "repeat), largest first: [{function, instructions}]", views=frozenset()),
    Figure("instruction_calls_per_repeat", Kind.COUNT, "calls/repeat", SOURCE,
           help="calls of the step in each repeat (enough for ~10 M instructions)", views=frozenset()),
    Figure("instruction_samples", Kind.TEXT, "instr. samples", SOURCE,
           help="instructions per call of each measured repeat, in order", views=frozenset()),
    Figure("callgrind_file", Kind.TEXT, "callgrind file", SOURCE,
           help="the run folder's callgrind dump of one repeat (callgrind_annotate or kcachegrind it)",
           views=frozenset()),
)
INSTRUCTIONS, INSTRUCTIONS_SPREAD, INSTRUCTION_REPEATS, INSTRUCTION_TOP = FIGURES[:4]


def calls_per_repeat(instructions_per_call: float, minimum: int = MIN_REPEAT_INSTRUCTIONS) -> int:
    """K: the calls that make a repeat at least ``minimum`` instructions."""
    return max(1, -(-minimum // max(1, int(instructions_per_call))))


def summarize(totals: Sequence[int], calls: int) -> dict[str, Any]:
    """The figures of a case from its measured repeats' totals (each over ``calls`` calls)."""
    per_call = [t / calls for t in totals]
    median = statistics.median(per_call)
    return {
        INSTRUCTIONS.name: median,
        INSTRUCTIONS_SPREAD.name: (max(per_call) - min(per_call)) / median if median else 0.0,
        INSTRUCTION_REPEATS.name: len(per_call),
        "instruction_calls_per_repeat": calls,
        "instruction_samples": per_call,
    }


_SUMMARY = re.compile(r"^summary:\s*(\d+)", re.MULTILINE)


def dump_total(path: Path) -> int:
    """The Ir total of one callgrind dump (its ``summary:`` line)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    found = _SUMMARY.findall(text)
    if not found:
        raise ValueError(f"{path}: no 'summary:' line (not a complete callgrind dump)")
    return int(found[-1])


# A function line of callgrind_annotate (3.19):
#   "8,130,600 (17.33%)  ???:sgemm_kernel [/usr/lib/.../libopenblas.so.0]"
# (older versions print no percentage).
_ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*?)\s*$")


def parse_annotate(text: str, calls: int, top: int = TOP_FUNCTIONS) -> list[dict[str, Any]]:
    """The top functions of ``callgrind_annotate``'s output, per call, largest first.

    Only the function table counts: the lines after the header that names the column
    ``file:function``; the totals line above it ends in ``PROGRAM TOTALS``."""
    rows: list[dict[str, Any]] = []
    in_table = False
    for line in text.splitlines():
        if not in_table:
            in_table = "file:function" in line
            continue
        if line.startswith("--") or not line.strip():
            if rows:
                break  # the end of the table (a per-file annotation may follow)
            continue
        match = _ANNOTATE_LINE.match(line)
        if not match:
            continue
        count = int(match.group(1).replace(",", ""))
        rows.append({"function": match.group(2), "instructions": count / calls})
    rows.sort(key=lambda r: -r["instructions"])
    return rows[:top]


def safe_name(case_id: str) -> str:
    """A file name for a case id: ``train_step[a-b]`` -> ``train_step_a-b_``."""
    return re.sub(r"[^\w.-]", "_", case_id)
