"""The step layer: the callable a case times, built by one builder per phase.

``build_step`` makes what every phase shares (model, batch, loss, optimizer on the case's
device, compiled or not) as a ``Workload``; the phase's builder, looked up in
``PHASE_BUILDERS``, turns it into the timed function and its untimed per-round setup. A new
phase is one decorated builder::

    @phase_builder("epoch")
    def epoch(w: Workload) -> tuple[Callable, Setup | None]: ...

``Step.run`` is the one place that runs "setup, then call": warm-up, the FLOP count, the
memory and profiling passes and the accuracy check all go through it. Nothing here times.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import torch
from torch import nn

import models

from . import correctness, pipeline  # noqa: F401  (correctness: its pass checks what steps compute)
from .cases import Case
from .faults import UnsupportedCase
from .optimizers import make_optimizer, supported_devices, unavailable_reason

# Untimed work before each call (backward: build the graph); returns (args, kwargs) for fn.
Setup = Callable[[], tuple[tuple, dict]]


class Built(NamedTuple):
    """What a phase builder returns: the timed function, its per-call setup, and for a phase
    whose call is a whole loop (an epoch) the items it handles per call and how many calls
    are timed; a builder may return just ``(fn, setup)``."""

    fn: Callable[..., Any]
    setup: Setup | None = None
    items_per_call: int | None = None  # samples a call handles (None: the batch size)
    rounds: int | None = None  # a loop: exactly this many timed calls, after one untimed
    state: dict | None = None  # what the loop records while it runs (per-epoch records)


PhaseBuilder = Callable[["Workload"], "tuple[Callable[..., Any], Setup | None] | Built"]


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA), so a clock read after it sees it finished."""
    if device == "cuda":
        torch.cuda.synchronize()


def _invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@dataclass
class Step:
    """The callable to time for one case, with what it closes over."""

    case: Case
    fn: Callable[..., Any]
    setup: Setup | None
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    param_count: int
    batch: tuple[torch.Tensor, ...] = ()
    # The loss (or, for forward, the output) computed eagerly under no_grad, for finiteness checks.
    check_value: Callable[[], torch.Tensor] | None = None
    items_per_call: int | None = None  # samples per call: the batch size, or an epoch's images
    rounds: int | None = None  # set for loops (an epoch per call): timed calls, fixed
    state: dict = field(default_factory=dict)  # a loop's records, read by its pass
    workload: "Workload | None" = None  # what the step was built from (the correctness pass reruns it)

    @property
    def is_loop(self) -> bool:
        """A call is a whole loop over a DataLoader, not one step on a made batch."""
        return self.rounds is not None

    def run(self, call: Callable[..., Any] = _invoke, *,
            setup_scope: AbstractContextManager | None = None) -> Any:
        """One execution: the setup (if any, inside ``setup_scope``), then ``call(fn, *args, **kwargs)``.

        ``call`` wraps the timed part only: a stopwatch (warm-up), a FLOP counter, a profiler
        label, or ``functools.partial`` to get the bound call without running it.
        """
        if self.setup is None:
            return call(self.fn)
        with setup_scope or nullcontext():
            args, kwargs = self.setup()
        return call(self.fn, *args, **kwargs)

    def is_finite(self) -> bool:
        return self.check_value is None or bool(torch.isfinite(self.check_value()).all())


@dataclass
class Workload:
    """What every phase builder starts from: the case's model, batch, loss and optimizer."""

    case: Case
    model: nn.Module
    run_model: Callable[[torch.Tensor], torch.Tensor]  # the model, compiled in compile mode
    inputs: torch.Tensor
    target: torch.Tensor
    loss: Callable[[], torch.Tensor]  # criterion(run_model(inputs), target), with the graph
    optimizer: torch.optim.Optimizer | None
    opt_step: Callable[[], Any]  # optimizer.step, compiled in compile mode
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None  # the seed's view(B, -1), or nothing
    rng_seed: int = 0
    autocast: Callable[[], AbstractContextManager] = nullcontext  # --amp: around forward and loss
    scaler: Any = None  # float16 autocast while training: a torch.amp.GradScaler


PHASE_BUILDERS: dict[str, PhaseBuilder] = {}


def phase_builder(name: str) -> Callable[[PhaseBuilder], PhaseBuilder]:
    """Register the builder of a phase: ``Workload -> (fn, setup or None)``."""

    def decorator(builder: PhaseBuilder) -> PhaseBuilder:
        if name in PHASE_BUILDERS:
            raise ValueError(f"phase {name!r} already has a builder")
        PHASE_BUILDERS[name] = builder
        return builder

    return decorator


@phase_builder("forward")
def forward(w: Workload) -> tuple[Callable[..., Any], None]:
    run_model, inputs, autocast = w.run_model, w.inputs, w.autocast

    def fn() -> torch.Tensor:
        with torch.no_grad(), autocast():
            return run_model(inputs)

    return fn, None


@phase_builder("backward")
def backward(w: Workload) -> tuple[Callable[..., Any], Setup]:
    model, loss, scaler = w.model, w.loss, w.scaler

    def setup() -> tuple[tuple, dict]:
        model.zero_grad(set_to_none=True)
        return (loss() if scaler is None else scaler.scale(loss()),), {}

    def fn(graph_loss: torch.Tensor) -> None:
        graph_loss.backward()

    return fn, setup


@phase_builder("optimizer_step")
def optimizer_step(w: Workload) -> tuple[Callable[..., Any], None]:
    # Gradients are made once; each timed call applies the step to the same gradients.
    if w.scaler is None:
        w.loss().backward()
    else:  # float16: scaled backward, then the true gradients once, outside the timed step
        w.scaler.scale(w.loss()).backward()
        w.scaler.unscale_(w.optimizer)
    return w.opt_step, None


@phase_builder("train_step")
def train_step(w: Workload) -> tuple[Callable[..., Any], None]:
    optimizer, loss, opt_step, scaler = w.optimizer, w.loss, w.opt_step, w.scaler

    if scaler is not None:
        def scaled() -> None:
            # torch.amp's float16 recipe: scale the loss, unscale and skip non-finite steps.
            optimizer.zero_grad()
            scaler.scale(loss()).backward()
            scaler.step(optimizer)
            scaler.update()

        return scaled, None

    def fn() -> None:
        # The seed's loop body: zero_grad -> forward -> loss -> backward -> step.
        optimizer.zero_grad()
        loss().backward()
        opt_step()

    return fn, None


def _loop(w: Workload, step_fn: Callable[[torch.Tensor, torch.Tensor], float] | None) -> Built:
    """A call that is one pass over the run's DataLoader (the data and epoch phases)."""
    spec = models.get_spec(w.case.model)
    dataset, source = pipeline.training_set(spec.input_shape, w.case.transforms)
    c = w.case
    loader = pipeline.make_loader(dataset, pipeline.LoaderSettings(
        batch_size=c.batch_size, num_workers=c.num_workers, pin_memory=c.pin_memory,
        persistent_workers=c.persistent_workers, prefetch_factor=c.prefetch_factor), rng_seed=w.rng_seed)
    state: dict[str, Any] = {"records": [], "source": source}

    def fn() -> None:
        state["records"].append(pipeline.walk(loader, c.device, step_fn))

    return Built(fn, None, items_per_call=len(dataset), rounds=pipeline.current().epochs, state=state)


@phase_builder("data")
def data(w: Workload) -> Built:
    return _loop(w, None)


@phase_builder("epoch")
def epoch(w: Workload) -> Built:
    spec = models.get_spec(w.case.model)
    dtype = getattr(torch, w.case.dtype)
    prepare = w.prepare or (lambda x: x)

    def target(labels: torch.Tensor) -> torch.Tensor:
        # Class labels for NLL; for the blitz's MSE, the one-hot rows of the same labels.
        if isinstance(w.criterion, nn.MSELoss):
            return nn.functional.one_hot(labels, spec.num_classes).to(dtype)
        return labels

    step_fn = pipeline.seed_step(w.run_model, w.criterion, w.optimizer, lambda x: prepare(x.to(dtype)), target)
    return _loop(w, step_fn)


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


def autocast_for(case: Case) -> Callable[[], AbstractContextManager]:
    """The context around forward and loss: autocast to the case's --amp dtype, or nothing."""
    if case.amp == "off":
        return nullcontext
    dtype = getattr(torch, case.amp)
    return lambda: torch.autocast(device_type=case.device, dtype=dtype)


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
    torch.manual_seed(rng_seed)
    model = spec.build(image_size=case.image_size).to(device=case.device, dtype=dtype)
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
