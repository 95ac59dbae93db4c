"""Check the harness against ``torch.utils.benchmark``: same callable, same threads, one process.

    python -m bench check-accuracy                 # all phases of lenet and fashion_mlp, adam, CPU
    python -m bench check-accuracy --phases forward --models fashion_mlp  # any selection option

For every selected case the suite measures the step through pytest-benchmark as usual;
then, in the same process, ``torch.utils.benchmark.Timer(...).blocked_autorange()`` times
the very callable the suite timed. A phase whose rounds need a fresh setup (``backward``:
a new graph each time) is timed with ``Timer.timeit(1)`` repeatedly, whose ``setup`` runs
outside the timed statement. Exit 1 if a median differs by more than the tolerance.
For a token workload's eager ``train_step`` it also times a hand-written loop (a fresh model, its
optimizer, ``zero_grad -> loss -> backward -> step``) with the Timer, just before the suite's own
rounds: the suite's tokens/s must
agree with that loop's (``--models gpt_cpu --optimizers adamw --phases train_step --batch-sizes 12
--tolerance 0.03``). This is a check of the harness, not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
from typing import Callable

import pytest
import torch
import torch.utils.benchmark as tub

from bench.runners.inprocess import WARMUP_CALLS

DEFAULT_SELECTION = ["--models", "lenet,fashion_mlp", "--optimizers", "adam",
                     "--phases", "forward,backward,optimizer_step,train_step",
                     "--devices", "cpu", "--modes", "eager", "--batch-sizes", "64"]


class CompareWithTorchTimer:
    """pytest plugin: after each benchmark, time the runner's last step with torch's Timer."""

    def __init__(self, min_run_time: float) -> None:
        self.min_run_time = min_run_time
        self.rows: list[tuple[str, float, float]] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        # The hand-written loop is timed just before the suite's rounds, not after its passes and
        # the Timer's own seconds: on a shared VM a process's later seconds ran ~8% slower, which
        # read as a disagreement (measured alternating, the two steps agree within 1-4%).
        case = item.funcargs.get("case")
        hand = self.time_hand_written_loop(case) if case is not None and hand_writable(case) else None
        yield
        runner, benchmark = item.funcargs.get("runner"), item.funcargs.get("benchmark")
        step = getattr(runner, "last_step", None)
        if step is None or benchmark is None or benchmark.stats is None:
            return
        threads = torch.get_num_threads()
        if step.setup is None:
            timer = tub.Timer(stmt="fn()", globals={"fn": step.fn}, num_threads=threads)
            reference = timer.blocked_autorange(min_run_time=self.min_run_time).median
        else:
            # Timer.timeit(1) runs its setup and a warm-up of 2 statements, then its setup
            # again and 1 measured statement. Its setup is the step's own (Step.run, bound
            # with functools.partial and not yet called): one graph per setup, consumed by the
            # first statement (the second warm-up statement does nothing), keeps one graph
            # alive at a time, as in the suite's rounds.
            timer = tub.Timer(stmt="if call:\n    call()\n    call = None",
                              setup="call = step.run(partial)",
                              globals={"step": step, "partial": functools.partial}, num_threads=threads)
            rounds = len(benchmark.stats.stats.data)
            reference = statistics.median(timer.timeit(1).raw_times[0] for _ in range(rounds))
        self.rows.append((step.case.id, benchmark.stats.stats.median, reference))
        if hand is not None:
            self.rows.append((f"{step.case.id} (hand-written loop)", benchmark.stats.stats.median, hand))

    def time_hand_written_loop(self, case) -> float:
        loop = hand_written_loop(case)
        for _ in range(WARMUP_CALLS):
            loop()
        timer = tub.Timer(stmt="loop()", globals={"loop": loop}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=self.min_run_time).median


def hand_writable(case) -> bool:
    """A token workload's eager train_step: the step a user writes by hand in a few lines."""
    import models

    return case.phase == "train_step" and case.mode == "eager" and models.get_spec(case.model).tokens


def hand_written_loop(case) -> Callable[[], None]:
    """The training step as a user writes it by hand, outside the suite's step layer: a fresh
    model of the case's registration, torch.optim's optimizer over its parameter groups, one
    made batch, and ``zero_grad -> loss = model(inputs, targets) -> backward -> step``. Its time
    per call gives the tokens/s the suite's own must agree with."""
    import models
    from bench.workloads.optimizers import make_optimizer

    spec = models.get_spec(case.model)
    torch.manual_seed(0)
    model = spec.build().to(device=case.device, dtype=getattr(torch, case.dtype)).train()
    optimizer = make_optimizer(case.optimizer, spec.param_groups(model) if spec.param_groups else model.parameters())
    batch = spec.make_batch(case.batch_size, case.device, seq_len=case.seq_len)

    def loop() -> None:
        optimizer.zero_grad(set_to_none=True)
        output = batch.call(model, with_target=spec.own_loss)
        loss = models.loss_of(output) if spec.own_loss else spec.make_criterion()(models.prediction(output),
                                                                                   batch.target)
        loss.backward()
        optimizer.step()

    return loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench check-accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tolerance", type=float, default=0.05, help="relative (default 0.05)")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="for blocked_autorange (s)")
    args, selection = parser.parse_known_args(argv)
    plugin = CompareWithTorchTimer(args.min_run_time)
    with tempfile.TemporaryDirectory() as results:
        code = pytest.main(["bench", "-q", "-p", "no:cacheprovider", "--results-dir", results,
                            "--benchmark-max-time=2", *(selection or DEFAULT_SELECTION)],
                           plugins=[plugin])
    if code != 0 or not plugin.rows:
        print("the benchmark run failed or measured nothing", file=sys.stderr)
        return 2
    print(f"\nthreads: {torch.get_num_threads()}, tolerance ±{args.tolerance:.0%}")
    print(f"{'case':50} {'suite median':>14} {'torch Timer':>14} {'diff':>8}")
    worst = 0.0
    for case_id, suite, reference in plugin.rows:
        diff = suite / reference - 1
        worst = max(worst, abs(diff))
        print(f"{case_id:50} {suite * 1e6:11.1f} µs {reference * 1e6:11.1f} µs {diff:+8.2%}")
    ok = worst <= args.tolerance
    print("PASS" if ok else "FAIL", f"(largest difference {worst:.2%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
