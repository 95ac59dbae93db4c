"""Build a case's step: model, batch, loss and optimizer on the case's device, compiled or not,
as a ``Workload``; the phase's builder (``bench.workloads.phases.PHASE_BUILDERS``) turns it into
the ``Step`` the runners time. Whether a case can run here at all is decided first.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable

import torch

import models
from bench.schema.case import Case
from bench.schema.status import UnsupportedCase
from bench.workloads.backend import hold_backend_settings
from bench.workloads.optimizers import make_optimizer, supported_devices, unavailable_reason
from bench.workloads.phases import PHASE_BUILDERS
from bench.workloads.step import Built, Step, Workload


def check_supported(case: Case) -> None:
    devices = supported_devices(case.optimizer) if case.optimizer else None
    if devices is not None and case.device not in devices:
        raise UnsupportedCase(
            f"optimizer {case.optimizer!r} does not run on {case.device}; it supports {', '.join(devices)}"
        )
    if case.amp != "off" and case.dtype != "float32":
        raise UnsupportedCase(f"--amp {case.amp} autocasts float32 weights; this case's dtype is {case.dtype}")
    if case.amp != "off" and case.phase in ("data", "epoch"):
        raise UnsupportedCase(f"--amp {case.amp} applies to the step phases, not {case.phase}")
    reason = skip_reason(case)
    if reason is not None:
        import pytest

        pytest.skip(reason)


def skip_reason(case: Case) -> str | None:
    """Why a case cannot run on this machine or torch (it is skipped), or None."""
    spec = models.get_spec(case.model)
    if case.optimizer and (reason := unavailable_reason(case.optimizer, case.device)):
        return reason  # a torch without the optimizer's fused kernel for the device
    if case.amp == "float16" and case.device != "cuda":
        return f"--amp float16 runs on CUDA only (this case is on {case.device})"
    if case.memory_format == "channels_last" and (spec.flatten_input or len(spec.input_shape) != 3):
        return (f"channels_last needs 4-D (N, C, H, W) inputs; model {case.model!r} takes "
                f"{'flattened ' if spec.flatten_input else ''}inputs of shape {spec.input_shape}")
    return None


def compile_options(case: Case, backend: str) -> dict[str, Any]:
    """torch.compile's arguments for a compiled case: the backend, and the case's mode when it is
    not the default. Modes are inductor's (reduce-overhead: CUDA graphs; max-autotune: kernel
    autotuning); another backend with a mode is refused rather than run under a wrong id."""
    if case.compile_mode == "default":
        return dict(backend=backend)
    if backend != "inductor":
        raise UnsupportedCase(f"compile mode {case.compile_mode!r} is a mode of the inductor backend; "
                              f"--compile-backend {backend} has none (select --compile-modes default)")
    return dict(backend=backend, mode=case.compile_mode)


def autocast_for(case: Case) -> Callable[[], AbstractContextManager]:
    """The context around forward and loss: autocast to the case's --amp dtype, or nothing."""
    if case.amp == "off":
        return nullcontext
    dtype = getattr(torch, case.amp)
    return lambda: torch.autocast(device_type=case.device, dtype=dtype)


def seeded_model(case: Case, rng_seed: int = 0) -> torch.nn.Module:
    """The case's model with the weights it starts from (the same for the same seed), on its
    device and in its dtype; the correctness pass rebuilds them to check every case on the
    weights it was built with, whatever its timed rounds did to them."""
    torch.manual_seed(rng_seed)
    model = models.get_spec(case.model).build(image_size=case.image_size)
    return model.to(device=case.device, dtype=getattr(torch, case.dtype))


def build_step(case: Case, rng_seed: int = 0, compile_backend: str = "inductor") -> Step:
    """Model, data, loss and optimizer on the case's device, and the callable for its phase."""
    check_supported(case)
    try:
        builder = PHASE_BUILDERS[case.phase]
    except KeyError:
        raise ValueError(f"unknown phase {case.phase!r}; phases with a builder: "
                         f"{', '.join(PHASE_BUILDERS)}") from None
    compile_kwargs = compile_options(case, compile_backend) if case.mode == "compile" else {}
    if case.mode == "compile":
        # Dynamo's caches as in a fresh process. Without this, compiling a new instance of a model
        # class reuses the graph an earlier case compiled when its guards pass (torch 2.15 does, for
        # the same mode), though compiled under that case's settings (TF32 is not guarded); and each
        # variant adds an entry to the same code objects (forward, Optimizer.step), up to dynamo's
        # recompile limit (8), past which it runs them eagerly. Inductor's on-disk caches stay
        # (compile_cache says when they hit).
        torch.compiler.reset()
    hold_backend_settings(case)  # before building: cuDNN and inductor read them from the start
    spec = models.get_spec(case.model)
    dtype = getattr(torch, case.dtype)
    model = seeded_model(case, rng_seed)
    inputs, target = spec.make_batch(case.batch_size, case.device, dtype, rng_seed=rng_seed,
                                     image_size=case.image_size)
    inputs = spec.prepare(inputs)  # the seed's view(B, -1), done once outside the timed region
    if case.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    criterion = spec.make_criterion()
    autocast = autocast_for(case)
    params = list(model.parameters())

    # Dropout is active where gradients are taken (train) and off for inference (eval).
    model.train(case.phase != "forward")
    run_model: Callable[[torch.Tensor], torch.Tensor] = (
        torch.compile(model, **compile_kwargs) if case.mode == "compile" else model
    )

    def loss() -> torch.Tensor:
        with autocast():
            return criterion(run_model(inputs), target)

    optimizer = make_optimizer(case.optimizer, params) if case.optimizer else None
    scaler = (torch.amp.GradScaler(case.device) if case.amp == "float16" and case.phase != "forward"
              else None)
    opt_step: Callable[[], Any] = optimizer.step if optimizer else (lambda: None)
    if optimizer is not None and case.mode == "compile":
        opt_step = torch.compile(optimizer.step, **compile_kwargs)

    workload = Workload(case=case, model=model, run_model=run_model, inputs=inputs, target=target,
                        loss=loss, optimizer=optimizer, opt_step=opt_step, criterion=criterion,
                        prepare=spec.prepare, rng_seed=rng_seed, autocast=autocast, scaler=scaler)
    built = Built(*builder(workload))

    def check_value() -> torch.Tensor:
        # Eager and without grad, so checking never triggers a compile or touches gradients.
        with torch.no_grad(), autocast():
            out = model(inputs)
            return out if case.phase == "forward" else criterion(out, target)

    return Step(case=case, fn=built.fn, setup=built.setup, model=model, optimizer=optimizer,
                param_count=sum(p.numel() for p in params), batch=(inputs, target),
                check_value=None if case.phase == "data" else check_value,
                items_per_call=built.items_per_call or case.batch_size, rounds=built.rounds,
                state=built.state if built.state is not None else {}, workload=workload)
