"""A CUDA case's backend settings (TensorFloat-32, cuDNN's autotuner), put in effect for the
step built last and restored afterwards."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

import torch

from bench.schema.case import Case


@contextmanager
def backend_settings(case: Case) -> Iterator[None]:
    """A CUDA case's TensorFloat-32 (matmuls and cuDNN convolutions) and cuDNN autotuner settings,
    the previous process-wide values restored on exit; other devices leave them alone. Each CUDA
    case sets all three, so a case runs as its id says whatever ran before it."""
    if case.device != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    restore_tf32, benchmark = _tf32_restorer(), cudnn.benchmark
    try:
        # The matmul precision, not matmul.allow_tf32 (the same switch): torch 2.9+ refuses to read
        # its flags after a mix of its old and new TF32 setters, and this one leaves them readable.
        torch.set_float32_matmul_precision("high" if case.tf32 else "highest")
        cudnn.allow_tf32 = case.tf32
        cudnn.benchmark = case.cudnn_benchmark
        yield
    finally:
        restore_tf32()
        cudnn.benchmark = benchmark


def _tf32_restorer() -> Callable[[], None]:
    """What puts the TF32 settings back as they are now: the matmul precision (it also holds
    "medium", which allow_tf32 cannot) and cuDNN's flag; or, where the process set them through
    torch 2.9+'s ``fp32_precision`` in a way the old readers refuse, those values themselves."""
    cudnn = torch.backends.cudnn
    try:
        precision, allow = torch.get_float32_matmul_precision(), cudnn.allow_tf32
    except RuntimeError:  # "mix of the legacy and new APIs": read and restore the new ones
        backends = (torch.backends.cuda.matmul, cudnn.conv, cudnn.rnn)
        saved = [b.fp32_precision for b in backends]

        def restore_new() -> None:
            for backend, value in zip(backends, saved):
                backend.fp32_precision = value

        return restore_new

    def restore() -> None:
        torch.set_float32_matmul_precision(precision)
        cudnn.allow_tf32 = allow

    return restore


# The settings of the step built last: it runs after build_step returns (the harness's calls, its
# timed rounds, the passes), so they stay in effect until the next step is built or they are released.
_HELD = ExitStack()


def hold_backend_settings(case: Case) -> None:
    """Restore what the previous step changed, then put ``case``'s settings in effect."""
    release_backend_settings()
    _HELD.enter_context(backend_settings(case))


def release_backend_settings() -> None:
    """Restore the process-wide values the last built step changed (nothing when none did)."""
    _HELD.close()
