"""Test-only workloads that fail in known ways, loaded into a benchmark run with ``-p tests.fault_plugin``.

A plugin (not a conftest) so the entries exist before bench/plugin.py validates the
selection. Nothing here is registered in normal runs.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

import models
from bench.workloads.optimizers import register_optimizer


class NaNOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.lin(x), dim=1) * float("nan")


class Recompiling(nn.Module):
    """An int attribute that changes every call: dynamo guards on it and recompiles each time."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(784, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.log_softmax(self.lin(x) * self.calls, dim=1)


class Sleepy(nn.Module):
    """0.3 s a call: a case still running when a test presses Ctrl-C. With
    ``BLITZBENCH_SLEEPY_LOG=FILE`` each call appends ``call N`` to FILE first (a test waits for
    the line instead of guessing a time), and with ``BLITZBENCH_SLEEPY_BLOCK=N`` call N blocks
    until the process is interrupted: the first call (1), warm-up (2-4), pytest-benchmark's
    calibration (5) or its timed rounds (later)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(784, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_meta:  # the run's check of what the model returns (shapes only): not a call of the case
            return torch.log_softmax(self.lin(x), dim=1)
        self.calls += 1
        log = os.environ.get("BLITZBENCH_SLEEPY_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"call {self.calls}\n")
        block = os.environ.get("BLITZBENCH_SLEEPY_BLOCK")
        time.sleep(600 if block and self.calls == int(block) else 0.3)
        return torch.log_softmax(self.lin(x), dim=1)


class GraphBreak(nn.Module):
    """print() cannot be traced: one graph break, no recompile."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(784, 32)
        self.lin2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lin1(x)
        print("", end="")
        return torch.log_softmax(self.lin2(x), dim=1)


_MLP = dict(input_shape=(1, 28, 28), loss="nll", num_classes=10, flatten_input=True)
models.register_model(**_MLP, name="nan_mlp")(NaNOutput)
models.register_model(**_MLP, name="recompiling_mlp")(Recompiling)
models.register_model(**_MLP, name="graph_break_mlp")(GraphBreak)
models.register_model(**_MLP, name="sleepy_mlp")(Sleepy)
# 10^12 floats per sample: the batch itself cannot be allocated.
models.register_model(input_shape=(1_000_000, 1_000_000), loss="nll", num_classes=10,
                      flatten_input=True, name="huge_input")(lambda: nn.Linear(1, 1))
register_optimizer("cuda_only_sgd", devices=("cuda",))(lambda params: torch.optim.SGD(params, lr=0.01))


def _broken_backend(graph_module, example_inputs):
    raise RuntimeError("the 'broken' test backend refuses to compile")


def _perturb_backend(graph_module, example_inputs):
    """Compiles to something else: every floating output plus one (a wrong result)."""
    def run(*args):
        out = graph_module(*args)
        return type(out)(o + 1 if isinstance(o, torch.Tensor) and o.is_floating_point() else o for o in out)
    return run


torch._dynamo.register_backend(name="broken")(_broken_backend)
torch._dynamo.register_backend(name="perturb")(_perturb_backend)
