"""The case: the frozen ``Case`` every layer keys on, its fields and the values each can take.

Results are flat rows keyed by these fields (``ROW_FIELDS``); the reports read them without
torch. Each field is also a selection axis: ``AXIS_FIELDS`` names the option of each (the
matrix, ``bench.matrix.select``, parses and expands them).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import Mapping

STEP_PHASES = ("forward", "backward", "optimizer_step", "train_step")  # one step on a made batch
# The seed's input pipeline: the DataLoader alone, and the seed's whole epoch loop over it.
DATA_PHASES = ("data", "epoch")
PHASES = (*STEP_PHASES, *DATA_PHASES)
# Phases whose timed work does not involve the optimizer: one case, not one per optimizer.
OPTIMIZER_FREE_PHASES = frozenset({"forward", "backward", "data"})
DEVICES = ("cpu", "cuda")
MODES = ("eager", "compile")
# torch.compile's modes (compile cases only); reduce-overhead adds CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
DTYPES = ("float32", "bfloat16")
AMPS = ("off", "bfloat16", "float16")  # autocast around forward + loss (float16: CUDA only)
MEMORY_FORMATS = ("contiguous", "channels_last")  # of the model and its (4-D) inputs
TRANSFORMS = ("v1", "v2")  # the seed's ToTensor + Normalize; transforms.v2's ToImage + ToDtype + Normalize
# How a step is spread over processes: one process, DistributedDataParallel or FullyShardedDataParallel.
DISTRIBUTED = ("off", "ddp", "fsdp")
DEFAULT_BATCH_SIZE = 64  # the seed's DataLoader batch size
# The LR scheduler stepped after each train step: none, or torch.optim.lr_scheduler's cosine
# annealing, linear warm-up, one-cycle.
LR_SCHEDULES = ("none", "cosine", "linear", "onecycle")


@dataclass(frozen=True, order=True)
class Case:
    """One benchmark: what runs (model, phase, optimizer) and how (device, mode, dtype, batch)."""

    phase: str
    model: str
    optimizer: str | None
    device: str
    mode: str
    dtype: str = "float32"
    batch_size: int = DEFAULT_BATCH_SIZE
    # The DataLoader's settings (data and epoch phases only; the seed's values elsewhere).
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None  # None: torch's default (2 batches per worker)
    transforms: str = "v1"
    image_size: int | None = None  # square inputs of this many pixels; None: the model's default
    amp: str = "off"  # autocast dtype around forward and loss, or off
    memory_format: str = "contiguous"
    compile_mode: str = "default"  # torch.compile's mode (compile cases only)
    # CUDA-only settings (CPU cases keep the defaults): TensorFloat-32 matmuls and convolutions,
    # and cuDNN's autotuner.
    tf32: bool = False
    cudnn_benchmark: bool = False
    # train_step on several processes; batch_size is per rank (weak scaling), world_size the
    # number of ranks over all nodes (1 with distributed off).
    distributed: str = "off"
    world_size: int = 1
    # Token workloads: the sequence length (None: the model's default).
    seq_len: int | None = None
    # The train step people write (train_step only; the plain values elsewhere): clip the
    # gradients' total norm to this (None: no clipping), accumulate gradients over this many
    # micro-batches of batch_size before the step, and step an LR scheduler after it.
    clip_grad: float | None = None
    grad_accum: int = 1
    lr_schedule: str = "none"

    @property
    def params_id(self) -> str:
        """The part inside the brackets: ``fashion_mlp-adam-cpu-eager-b64``. Values that are the
        defaults stay out of it, so ids from before an axis existed still compare."""
        parts = [self.model]
        if self.optimizer is not None:
            parts.append(self.optimizer)
        parts += [self.device, self.mode]
        parts += [self.compile_mode] if self.compile_mode != "default" else []
        if self.dtype != "float32":
            parts.append(self.dtype)
        parts.append(f"b{self.batch_size}")
        parts += [f"w{self.num_workers}"] if self.num_workers else []
        parts += ["pin"] if self.pin_memory else []
        parts += ["persist"] if self.persistent_workers else []
        parts += [f"pf{self.prefetch_factor}"] if self.prefetch_factor is not None else []
        parts += [self.transforms] if self.transforms != "v1" else []
        parts += [f"s{self.image_size}"] if self.image_size is not None else []
        parts += [f"amp_{self.amp}"] if self.amp != "off" else []
        parts += [self.memory_format] if self.memory_format != "contiguous" else []
        parts += ["tf32"] if self.tf32 else []
        parts += ["cudnn_bench"] if self.cudnn_benchmark else []
        parts += [f"{self.distributed}{self.world_size}"] if self.distributed != "off" else []
        parts += [f"seq{self.seq_len}"] if self.seq_len is not None else []
        parts += [f"clip{self.clip_grad:g}"] if self.clip_grad is not None else []
        parts += [f"acc{self.grad_accum}"] if self.grad_accum != 1 else []
        parts += [f"lr_{self.lr_schedule}"] if self.lr_schedule != "none" else []
        return "-".join(parts)

    @property
    def id(self) -> str:
        """Stable id, identical to the pytest test name: ``train_step[fashion_mlp-adam-cpu-eager-b64]``."""
        return f"{self.phase}[{self.params_id}]"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Case":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# The fields every result row is keyed by, from Case itself: a new axis is a new field.
CASE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Case))
# A field added later has a default, which is what rows written before it existed mean.
CASE_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(Case) if f.default is not MISSING}
# Row fields beside the figures: the key, the case fields and how the case ended.
ROW_FIELDS: tuple[str, ...] = ("case_id", *CASE_FIELDS, "status", "error", "invalid_reason")

AXES = ("models", "optimizers", "phases", "devices", "modes", "dtypes", "batch_sizes",
        "num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "transforms",
        "image_sizes", "amp", "memory_formats", "compile_modes", "tf32", "cudnn_benchmark",
        "distributed", "world_sizes", "seq_lens", "clip_grad", "grad_accum", "lr_schedule")
# Each axis is the comma-list option for one Case field.
AXIS_FIELDS: dict[str, str] = {
    "models": "model", "optimizers": "optimizer", "phases": "phase", "devices": "device", "modes": "mode",
    "dtypes": "dtype", "batch_sizes": "batch_size", "num_workers": "num_workers", "pin_memory": "pin_memory",
    "persistent_workers": "persistent_workers", "prefetch_factor": "prefetch_factor",
    "transforms": "transforms", "image_sizes": "image_size", "amp": "amp", "memory_formats": "memory_format",
    "compile_modes": "compile_mode", "tf32": "tf32", "cudnn_benchmark": "cudnn_benchmark",
    "distributed": "distributed", "world_sizes": "world_size", "seq_lens": "seq_len", "clip_grad": "clip_grad",
    "grad_accum": "grad_accum", "lr_schedule": "lr_schedule",
}


# Fields whose None is a value an option spells ("off": no clipping), not the model's default.
NONE_SPELLED = {"clip_grad": "off"}


def axis_value(value: object, field: str | None = None) -> str | None:
    """A case field's value as its option spells it (``on``/``off`` for switches); None for a
    value no option spells (a model's default image or sequence size, torch's default prefetch)."""
    if value is None:
        return NONE_SPELLED.get(field or "")
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
