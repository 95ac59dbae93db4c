"""Build a case's step: model, batch, loss and optimizer on the case's device, compiled or not,
as a ``Workload``; the phase's builder (``bench.workloads.phases.PHASE_BUILDERS``) turns it into
the ``Step`` the runners time. Whether a case can run here at all is decided first.
"""

from __future__ import annotations

import time
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
from models import Batch


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
    started = time.perf_counter()
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
    micro = [make_batch(spec, case, dtype, rng_seed + i) for i in range(micro_batches(case))]
    if case.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    autocast = autocast_for(case)
    params = list(model.parameters())

    # Dropout is active where gradients are taken (train) and off for inference (eval).
    model.train(case.phase != "forward")
    run_model: Callable[..., Any] = torch.compile(model, **compile_kwargs) if case.mode == "compile" else model
    optimizer = (make_optimizer(case.optimizer, spec.param_groups(model) if spec.param_groups else params)
                 if case.optimizer else None)
    scaler = (torch.amp.GradScaler(case.device) if case.amp == "float16" and case.phase != "forward"
              else None)
    # Before taking optimizer.step: a scheduler wraps it to count the steps it follows.
    scheduler = make_scheduler(case.lr_schedule, optimizer) if optimizer and case.phase == "train_step" else None
    opt_step: Callable[[], Any] = optimizer.step if optimizer else (lambda: None)
    if optimizer is not None and case.mode == "compile":
        opt_step = torch.compile(optimizer.step, **compile_kwargs)

    workload = Workload(case=case, model=model, run_model=run_model, batch=micro[0], optimizer=optimizer,
                        opt_step=opt_step, criterion=spec.make_criterion(), prepare=spec.prepare,
                        rng_seed=rng_seed, autocast=autocast, scaler=scaler, micro_batches=micro,
                        clip_grad=case.clip_grad, scheduler=scheduler)
    built = Built(*builder(workload))

    def check_value() -> list[torch.Tensor]:
        # Eager and without grad, so checking never triggers a compile or touches gradients.
        with torch.no_grad():
            if case.phase == "forward":
                with autocast():
                    return models.floating_tensors(workload.batch.call(model))
            return [workload.loss_on(workload.batch, model)]

    samples = case.batch_size * len(micro)
    return Step(case=case, fn=built.fn, setup=built.setup, model=model, optimizer=optimizer,
                param_count=sum(p.numel() for p in params), batch=micro[0],
                check_value=None if case.phase == "data" else check_value,
                items_per_call=built.items_per_call or samples,
                tokens_per_call=built.tokens_per_call or (samples * seq_len(spec, case) if spec.tokens else None),
                rounds=built.rounds, state=built.state if built.state is not None else {}, workload=workload,
                build_s=time.perf_counter() - started)


def micro_batches(case: Case) -> int:
    """How many batches a call takes: the micro-batches of gradient accumulation (train_step)."""
    return case.grad_accum if case.phase == "train_step" else 1


def seq_len(spec: models.ModelSpec, case: Case) -> int | None:
    """A token workload's sequence length: the case's, else the model's default."""
    return case.seq_len or spec.inputs.seq_len if spec.tokens else None


def make_batch(spec: models.ModelSpec, case: Case, dtype: torch.dtype, rng_seed: int) -> Batch:
    """One synthetic batch as the model takes it, on the case's device and in its memory format."""
    batch = spec.make_batch(case.batch_size, case.device, dtype, rng_seed=rng_seed, image_size=case.image_size,
                            seq_len=case.seq_len)
    if case.memory_format == "channels_last":
        batch = batch.floating(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)
    return batch


# Long enough that no run reaches their end: the schedule's shape, not its end, is what is timed.
SCHEDULE_STEPS = 1_000_000


def make_scheduler(name: str, optimizer: torch.optim.Optimizer) -> Any:
    """The LR scheduler stepped after each train step, or None."""
    sched = torch.optim.lr_scheduler
    if name == "none":
        return None
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=SCHEDULE_STEPS)
    if name == "linear":  # a warm-up from a tenth of the rate
        return sched.LinearLR(optimizer, start_factor=0.1, total_iters=SCHEDULE_STEPS)
    if name == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                total_steps=SCHEDULE_STEPS)
    raise ValueError(f"unknown LR schedule {name!r}; valid choices: none, cosine, linear, onecycle")
