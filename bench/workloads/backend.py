"""A CUDA case's backend settings (TensorFloat-32, cuDNN's autotuner), put in effect for the
step built last and restored afterwards; and a compiled case's own, empty compile cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator

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


# Where inductor keeps its on-disk caches (FX graphs, AOTAutograd entries, compiled kernels) and
# where triton keeps its kernels (CUDA); both are read whenever a compile looks for an entry.
CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def clear_compiler_memory() -> None:
    """Empty inductor's in-memory caches (loaded kernels and modules by key), as a new process has
    them; dynamo's own are ``torch.compiler.reset()``'s."""
    from torch._inductor import utils

    clear = getattr(utils, "clear_caches", None) or getattr(utils, "clear_inductor_caches", None)  # torch < 2.8
    if clear is not None:
        clear()


@contextmanager
def private_compile_cache() -> Iterator[Path]:
    """A compile cache of this block's own, empty at the start: inductor's and triton's on-disk
    caches in a fresh temporary folder, inductor's in-memory caches emptied on entry and on exit.
    A compile inside pays what it pays on a machine that never compiled the model; the folder is
    removed and the variables restored on exit."""
    folder = Path(tempfile.mkdtemp(prefix="blitzbench-compile-cache-"))
    saved = {name: os.environ.get(name) for name in CACHE_VARIABLES}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    clear_compiler_memory()
    try:
        yield folder
    finally:
        clear_compiler_memory()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


_STARTED: set[tuple[str, str]] = set()  # (backend, device) whose compiler this process started


def start_compiler(backend: str, device: str) -> None:
    """Compile a trivial function once per process, backend and device, on a cache of its own:
    the compiler's start-up (importing inductor, checking the C++ toolchain; triton on CUDA), about
    10 s on a 2-core CPU, then lands in no case's cold compile, which stays the same wherever the
    case runs in the selection."""
    if (backend, device) in _STARTED:
        return
    with private_compile_cache():
        torch.compile(lambda x: torch.relu(x) + 1, backend=backend)(torch.ones(8, device=device))
    torch.compiler.reset()
    _STARTED.add((backend, device))


def compile_cache_for(case: Case, backend: str) -> ContextManager[object]:
    """For a compiled case, its private compile cache (``private_compile_cache``), the compiler
    started first (``start_compiler``); nothing for others."""
    if case.mode != "compile":
        return nullcontext()
    start_compiler(backend, case.device)
    return private_compile_cache()
