"""Result files with chosen round times, shaped as the suite writes them (``cases.jsonl``).

For what a real run cannot give on demand: the full matrix on CUDA, a planted slowdown,
the figures of newer runs (memory, FLOP/s). The statistics are computed from the rounds
as pytest-benchmark does, so ``reports.load`` reads these files like real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bench.schema.case import Case


def stats(times: Sequence[float]) -> dict[str, object]:
    data = np.asarray(times, dtype=float)
    q1, median, q3 = np.percentile(data, [25, 50, 75])
    return {"min": data.min(), "max": data.max(), "mean": data.mean(), "stddev": data.std(ddof=1),
            "median": median, "q1": q1, "q3": q3, "iqr": q3 - q1, "rounds": len(data),
            "iterations": 1, "ops": 1 / data.mean(), "total": data.sum(), "data": list(data)}


def entry(case: Case, times: Sequence[float] | None, status: str = "ok", **extra: object) -> dict:
    """One result line; ``times=None`` makes an unmeasured (skipped/error) case."""
    info = dict(case.as_dict(), case_id=case.id, status=status, torch_version="2.x", num_threads=2,
                samples_per_s=None if times is None else case.batch_size / float(np.median(times)),
                **extra)
    return {"name": case.id, "extra_info": info, "stats": None if times is None else stats(times)}


def write_run(run_dir: Path, entries: Iterable[dict], environment: dict | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "cases.jsonl").open("w", encoding="utf-8") as fh:
        for item in entries:
            fh.write(json.dumps(item) + "\n")
    if environment is not None:
        (run_dir / "environment.json").write_text(json.dumps(environment))
    return run_dir


def rounds(median: float, n: int = 40, spread: float = 0.02, seed: int = 0) -> list[float]:
    """``n`` round times around ``median`` with a relative noise ``spread``."""
    rng = np.random.default_rng(seed)
    return list(median * (1 + spread * rng.standard_normal(n)))


# --- instruction counts (count runs: rows with no timing stats) ---------------------------

COUNT_ENVIRONMENT = {"run_kind": "count", "torch_version": "2.x", "python_version": "3.11.2",
                     "valgrind_version": "3.19.0", "valgrind_isa": "avx2", "cpu_model": "synthetic",
                     "count_library_isa": "MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=AVX"}


def count_entry(case: Case, instructions: float, spread: float = 0.0, top: dict[str, float] | None = None,
                status: str = "ok", repeats: int = 3) -> dict:
    """One row of a count run: instructions per call, the repeats' spread and the largest
    functions (``top``: {function: instructions per call}), ``stats: null``."""
    ranked = sorted((top or {}).items(), key=lambda kv: -kv[1])[:20]
    return entry(case, None, status=status, instructions=float(instructions), instructions_spread=float(spread),
                 instruction_repeats=repeats,
                 instruction_top=[{"function": name, "instructions": float(n)} for name, n in ranked])
