"""Issue #25: what a compiled case says about its compile. Item 7: each graph break attributed
to its file and line, breaks in torch's own code marked."""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path

import pytest
import torch

from bench.passes.compile_counters import break_site
from bench.runners.inprocess import measure
from bench.schema.case import Case
from tests.helpers import FakeBenchmark

TORCH_DIR = Path(torch.__file__).resolve().parent
REASON = "Call to `torch._dynamo.graph_break()`\n  Explanation: User-inserted graph break."


def frame(path: Path, line: int, name: str = "f") -> traceback.FrameSummary:
    return traceback.FrameSummary(str(path), line, name)


def test_a_break_in_torch_is_marked_and_names_the_nearest_caller_outside_torch():
    stack = [frame(Path.cwd() / "models" / "mine.py", 12), frame(TORCH_DIR / "optim" / "optimizer.py", 78)]
    assert break_site(REASON, stack, TORCH_DIR) == (
        "Call to `torch._dynamo.graph_break()` at torch/optim/optimizer.py:78 (inside torch), "
        "called from models/mine.py:12")
    assert break_site(REASON, stack[1:], TORCH_DIR).endswith("torch/optim/optimizer.py:78 (inside torch)")


def test_a_break_in_the_users_code_is_named_by_its_file_and_line():
    assert break_site("Data-dependent branching", [frame(Path.cwd() / "models" / "mine.py", 40)], TORCH_DIR) == \
        "Data-dependent branching at models/mine.py:40"
    assert break_site("no stack kept", [], TORCH_DIR) == "no stack kept"


def optimizer_graph_break_line() -> int:
    """The line of the first ``torch._dynamo.graph_break()`` in torch.optim's step wrapper."""
    import torch.optim.optimizer as module

    lines = inspect.getsource(module).splitlines()
    return next(n for n, text in enumerate(lines, start=1) if text.strip() == "torch._dynamo.graph_break()")


@pytest.mark.slow
def test_the_compiled_optimizer_steps_graph_break_is_torchs_own():
    # The eager backend: dynamo's real compile, no inductor (seconds, not minutes).
    case = Case(phase="train_step", model="fashion_mlp", optimizer="sgd", device="cpu", mode="compile", batch_size=8)
    benchmark = FakeBenchmark()
    measure(benchmark, case, max_time=0.05, min_rounds=3, compile_backend="eager")
    info = benchmark.extra_info
    assert info["status"] == "ok" and info["graph_break_count"] == 1
    assert info["graph_breaks"] == [
        f"Call to `torch._dynamo.graph_break()` at torch/optim/optimizer.py:{optimizer_graph_break_line()} "
        "(inside torch)"]
