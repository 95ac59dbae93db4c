"""A planted compiler bug for the correctness tests: ``--model-module tests.compile_plant``
registers the compile backend ``twice``, which runs every graph it is given twice per call. A
model's forward computes the same output again (and autograd takes the gradients of the
second), but an optimizer step's in-place update lands twice: a wrong result that only the
parameters after a step show."""

from __future__ import annotations

from typing import Any, Callable

import torch


def twice(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    """Run the graph twice per call; return the second run's outputs."""
    def run(*args: Any) -> Any:
        gm(*args)
        return gm(*args)

    return run


torch._dynamo.register_backend(name="twice")(twice)
