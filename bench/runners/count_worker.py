"""The count worker: ``valgrind --tool=callgrind --collect-atstart=no ... python -m bench.runners.count_worker SPEC``.

One process counts every case of a run (starting Python and torch under valgrind costs
minutes). ``SPEC`` is a JSON file written by ``bench.runners.counting``: the cases, the repeats,
the folder of callgrind's dumps and the JSON-lines file to append results to. For each case:
build the step, warm up, count one call (to pick ``K``, the calls per repeat), then one
discarded and N measured repeats of ``K`` calls, collection on only around the calls
(``torch._C._valgrind_toggle``) and a dump after each repeat; one line per case as it
finishes. Imports stay few (no pandas, reports, pytest): everything here runs instrumented.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench.passes.counts import calls_per_repeat, dump_total
from bench.schema.case import Case
from bench.schema.status import CaseFailure, NonFiniteLoss, classify
from bench.workloads.build import build_step
from bench.workloads.step import Step

RNG_SEED = 0


class Dumps:
    """callgrind's dump files of this process, in the order they were written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pattern = f"cg.out.{os.getpid()}.*"
        self.seen = set(folder.glob(self.pattern))

    def new(self) -> Path:
        fresh = sorted(set(self.folder.glob(self.pattern)) - self.seen,
                       key=lambda p: int(p.name.rsplit(".", 1)[1]))
        if len(fresh) != 1:
            raise RuntimeError(f"expected one new callgrind dump {self.folder / self.pattern}, found "
                               f"{len(fresh)}: is this process running under valgrind --tool=callgrind?")
        self.seen.add(fresh[0])
        return fresh[0]


def count_repeat(step: Step, calls: int, dumps: Dumps) -> Path:
    """Run ``calls`` calls with collection on around each call only (setups are not counted);
    dump after the last. Returns the dump's file."""
    for i in range(calls):
        last = i == calls - 1

        def collected(fn: Any, *args: Any, **kwargs: Any) -> None:
            torch._C._valgrind_toggle()
            fn(*args, **kwargs)
            if last:
                torch._C._valgrind_toggle_and_dump_stats()
            else:
                torch._C._valgrind_toggle()

        step.run(collected)
    return dumps.new()


def count_case(case: Case, spec: dict[str, Any], dumps: Dumps, starter: ctypes.CDLL | None) -> dict[str, Any]:
    torch.manual_seed(RNG_SEED)
    random.seed(RNG_SEED)
    step = build_step(case, rng_seed=RNG_SEED)
    for _ in range(spec["warmup_calls"]):
        step.run()
    if not step.is_finite():
        raise NonFiniteLoss(f"{case.id}: the loss is not finite")
    gc.collect()
    gc.disable()  # a collection inside a counted call would add its instructions to one repeat
    if starter is not None:
        starter.blitzbench_start_instrumentation()
    try:
        # K from a single call; the first instrumented call can count twice as much (backward
        # counted 10 M, then 4.8 M per call), so the second probe sizes the repeats.
        for _ in range(2):
            probe = count_repeat(step, 1, dumps)
            per_call = dump_total(probe)
            probe.unlink()
        calls = calls_per_repeat(per_call, spec["min_instructions"])
        files = [count_repeat(step, calls, dumps) for _ in range(spec["discarded"] + spec["repeats"])]
    finally:
        gc.enable()
        if starter is not None:
            starter.blitzbench_stop_instrumentation()
    for f in files[: spec["discarded"]]:
        f.unlink()
    files = files[spec["discarded"]:]
    totals = [dump_total(f) for f in files]
    # Keep the dump of the median repeat (for callgrind_annotate); drop the others.
    keep = sorted(range(len(totals)), key=lambda i: totals[i])[len(totals) // 2]
    for i, f in enumerate(files):
        if i != keep:
            f.unlink()
    return dict(totals=totals, calls=calls, dump=str(files[keep]))


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    out = Path(spec["out"])
    torch.set_num_threads(1)
    for module in spec.get("imports", []):  # plug-ins that registered (or replaced) a model
        importlib.import_module(module)
    dumps = Dumps(Path(spec["dump_dir"]))
    # Started with --instr-atstart=no (a starter library): instrument the counted part only.
    starter = ctypes.CDLL(spec["starter"]) if spec.get("starter") else None

    def emit(line: dict[str, Any]) -> None:
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    emit(dict(event="start", pid=os.getpid(), isa=torch.backends.cpu.get_cpu_capability(),
              torch_version=torch.__version__, threads=torch.get_num_threads()))
    for data in spec["cases"]:
        case = Case.from_dict(data)
        start = time.time()
        try:
            line = dict(count_case(case, spec, dumps, starter), status="ok")
        except Exception as exc:  # one case's failure is its row; the others still count
            traceback.print_exc()
            message = str(exc) if isinstance(exc, CaseFailure) else f"{type(exc).__name__}: {exc}"
            line = dict(status=classify(exc).value, error=message)
        emit(dict(line, event="case", case_id=case.id, wall_s=time.time() - start))
    emit(dict(event="end"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
