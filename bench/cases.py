"""The case matrix: the frozen ``Case`` every layer keys on, the axes and the presets.

A preset is a list of blocks; each block is a cross product of axis values. Options
given on the command line replace that axis in every block, so
``--models lenet --devices cuda`` runs the default preset's shape for lenet on CUDA.
"""

from __future__ import annotations

import itertools
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Iterable, Mapping, Sequence

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
PRESETS = ("smoke", "default", "full", "pipeline", "vision")
DEFAULT_BATCH_SIZE = 64  # the seed's DataLoader batch size


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
        "distributed", "world_sizes")
# Each axis is the comma-list option for one Case field.
AXIS_FIELDS: dict[str, str] = {
    "models": "model", "optimizers": "optimizer", "phases": "phase", "devices": "device", "modes": "mode",
    "dtypes": "dtype", "batch_sizes": "batch_size", "num_workers": "num_workers", "pin_memory": "pin_memory",
    "persistent_workers": "persistent_workers", "prefetch_factor": "prefetch_factor",
    "transforms": "transforms", "image_sizes": "image_size", "amp": "amp", "memory_formats": "memory_format",
    "compile_modes": "compile_mode", "tf32": "tf32", "cudnn_benchmark": "cudnn_benchmark",
    "distributed": "distributed", "world_sizes": "world_size",
}


def axis_value(value: object) -> str | None:
    """A case field's value as its option spells it (``on``/``off`` for switches); None for a
    value no option spells (a model's default image size, torch's default prefetch)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# The DataLoader axes: they vary only the data phases (other phases keep the seed's values).
PIPELINE_AXES = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "transforms")
# The model's input and arithmetic: they vary the step phases only (the data and epoch
# phases feed the seed's images, at the model's own size, as the seed does).
STEP_AXES = ("image_sizes", "amp", "memory_formats")
# Settings that exist only on CUDA: CPU cases keep their defaults (select drops the repeats).
CUDA_ONLY_AXES = ("tf32", "cudnn_benchmark")
# Phases that run distributed: every rank times the whole training step.
DISTRIBUTED_PHASES = frozenset({"train_step"})
_SWITCHES = {"off": False, "on": True, "false": False, "true": True, "0": False, "1": True}


def valid_choices(axis: str) -> tuple[str, ...]:
    # The registries (models, optimizers) need torch: imported here, so that the readers of
    # results (reports) import this module without it.
    import models

    from .optimizers import list_optimizers

    return {
        "models": tuple(models.list_models()),
        "optimizers": tuple(list_optimizers()),
        "phases": PHASES,
        "devices": DEVICES,
        "modes": MODES,
        "dtypes": DTYPES,
        "transforms": TRANSFORMS,
        "amp": AMPS,
        "memory_formats": MEMORY_FORMATS,
        "compile_modes": COMPILE_MODES,
        "distributed": DISTRIBUTED,
        "pin_memory": ("off", "on"),
        "persistent_workers": ("off", "on"),
        "tf32": ("off", "on"),
        "cudnn_benchmark": ("off", "on"),
    }[axis]


class SelectionError(ValueError):
    """A selection option names a value that does not exist."""


def parse_axis(axis: str, text: str) -> tuple:
    """Parse a comma list for one axis, rejecting unknown values with the valid choices."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise SelectionError(f"--{axis.replace('_', '-')} is empty")
    flag = "--" + axis.replace("_", "-")
    if axis in ("batch_sizes", "num_workers", "prefetch_factor", "image_sizes", "world_sizes"):
        smallest, example = {"batch_sizes": (1, "32,64"), "num_workers": (0, "0,2"),
                             "prefetch_factor": (1, "2,4"), "image_sizes": (1, "32,64,224"),
                             "world_sizes": (1, "1,2")}[axis]
        bad = [v for v in values if not v.isdigit() or int(v) < smallest]
        if bad:
            raise SelectionError(f"invalid value {bad[0]!r} for {flag}; expected integers of at least "
                                 f"{smallest}, e.g. {example}")
        return tuple(dict.fromkeys(int(v) for v in values))
    if axis in ("pin_memory", "persistent_workers", "tf32", "cudnn_benchmark"):
        bad = [v for v in values if v.lower() not in _SWITCHES]
        if bad:
            raise SelectionError(f"invalid value {bad[0]!r} for {flag}; valid choices: off, on")
        return tuple(dict.fromkeys(_SWITCHES[v.lower()] for v in values))
    choices = valid_choices(axis)
    for v in values:
        if v not in choices:
            import difflib

            close = difflib.get_close_matches(v, choices, n=3) if axis == "models" else []
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise SelectionError(
                f"unknown value {v!r} for --{axis.replace('_', '-')}; valid choices: {', '.join(choices)}{hint}"
            )
    return tuple(dict.fromkeys(values))


def _seed_models() -> tuple[str, ...]:
    import models

    return tuple(n for n in models.list_models() if "seed" in models.get_spec(n).tags)


def preset_blocks(preset: str) -> list[dict[str, tuple]]:
    """The blocks of a preset; each block maps every axis to its values."""
    if preset not in PRESETS:
        raise SelectionError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    import models

    from .optimizers import seed_optimizers

    base = dict(dtypes=("float32",), batch_sizes=(DEFAULT_BATCH_SIZE,), num_workers=(0,), pin_memory=(False,),
                persistent_workers=(False,), prefetch_factor=(None,), transforms=("v1",), image_sizes=(None,),
                amp=("off",), memory_formats=("contiguous",), compile_modes=("default",), tf32=(False,),
                cudnn_benchmark=(False,), distributed=("off",), world_sizes=(1,))
    if preset == "smoke":
        return [
            dict(base, models=("lenet", "fashion_mlp"), optimizers=("adam",), phases=STEP_PHASES,
                 devices=("cpu",), modes=("eager",)),
        ]
    if preset == "pipeline":
        # The seed's loop as users run it: the loader alone, the epoch, and the step it contains,
        # with and without worker processes, both transform pipelines.
        return [
            dict(base, models=("fashion_mlp", "lenet"), optimizers=("adam",), phases=DATA_PHASES,
                 devices=("cpu",), modes=("eager",), num_workers=(0, 2), transforms=TRANSFORMS),
            dict(base, models=("fashion_mlp", "lenet"), optimizers=("adam",), phases=("train_step",),
                 devices=("cpu",), modes=("eager",)),
        ]
    if preset == "vision":
        # torchvision classifiers: on CPU small fast ones at their small default sizes; on CUDA
        # (skipped without it) ImageNet's 224 px at TorchBench's training batch sizes.
        from models import vision

        cpu = dict(base, models=vision.CPU_PRESET_MODELS, optimizers=("adam",),
                   phases=("forward", "backward", "train_step"), devices=("cpu",), modes=("eager",),
                   batch_sizes=(vision.CPU_PRESET_BATCH_SIZE,))
        return [cpu, *(dict(cpu, models=(name,), devices=("cuda",), batch_sizes=(batch,),
                            image_sizes=(vision.CUDA_IMAGE_SIZE,))
                       for name, batch in vision.CUDA_BATCH_SIZES.items())]
    if preset == "default":
        return [
            dict(base, models=_seed_models(), optimizers=tuple(seed_optimizers()), phases=STEP_PHASES,
                 devices=("cpu",), modes=("eager",)),
            dict(base, models=("lenet", "fashion_mlp"), optimizers=("sgd", "adam"),
                 phases=("train_step",), devices=("cpu",), modes=("compile",)),
        ]
    # full: the seed models in every way (the ~80 torchvision models have their own preset,
    # vision, and are selected by name: all of them in every way would be ~10,000 cases).
    return [
        dict(base, models=_seed_models(), optimizers=tuple(seed_optimizers()),
             phases=PHASES, devices=DEVICES, modes=MODES),
    ]


def loader_settings(block: Mapping[str, Sequence], phase: str) -> Iterable[dict[str, object]]:
    """The DataLoader settings of a block for a phase: every combination for the data phases,
    the seed's alone otherwise. Without workers, persistence and prefetching do not exist."""
    if phase not in DATA_PHASES:
        yield {}
        return
    seen = set()
    for values in itertools.product(*(block.get(axis) or (None,) for axis in PIPELINE_AXES)):
        settings = {k: v for k, v in zip(PIPELINE_AXES, values) if v is not None}
        if not settings.get("num_workers"):
            settings.pop("persistent_workers", None)
            settings.pop("prefetch_factor", None)
        key = tuple(sorted(settings.items()))
        if key not in seen:
            seen.add(key)
            yield settings


def expand(block: Mapping[str, Sequence]) -> Iterable[Case]:
    for model, phase, device, mode, dtype, bs, size, amp, fmt in itertools.product(
        block["models"], block["phases"], block["devices"], block["modes"],
        block["dtypes"], block["batch_sizes"], block.get("image_sizes", (None,)),
        block.get("amp", ("off",)), block.get("memory_formats", ("contiguous",)),
    ):
        if phase == "data" and mode != "eager":
            continue  # the loader alone has nothing to compile
        if phase in DATA_PHASES:  # STEP_AXES vary the step phases only (select drops the repeats)
            size, amp, fmt = None, "off", "contiguous"
        opts = (None,) if phase in OPTIMIZER_FREE_PHASES else block["optimizers"]
        for opt, settings, extra in itertools.product(opts, list(loader_settings(block, phase)),
                                                      list(step_settings(block, phase, device, mode))):
            yield Case(phase=phase, model=model, optimizer=opt, device=device, mode=mode,
                       dtype=dtype, batch_size=bs, image_size=size, amp=amp, memory_format=fmt,
                       **settings, **extra)


def step_settings(block: Mapping[str, Sequence], phase: str, device: str,
                  mode: str) -> Iterable[dict[str, object]]:
    """The compile mode, CUDA settings and distribution of a block for one phase, device and
    mode: a compile mode only for compiled cases, CUDA settings only on CUDA, distribution
    only for the training step (world size 1 without it). Repeats are left to select."""
    compile_modes = block.get("compile_modes", ("default",)) if mode == "compile" else ("default",)
    cuda = device == "cuda"
    tf32 = block.get("tf32", (False,)) if cuda else (False,)
    cudnn = block.get("cudnn_benchmark", (False,)) if cuda else (False,)
    dist = tuple(block.get("distributed", ("off",)))
    if phase not in DISTRIBUTED_PHASES:  # other phases run in one process, if at all
        dist = ("off",) if "off" in dist else ()
    for cm, t, cb, d in itertools.product(compile_modes, tf32, cudnn, dist):
        for ws in (block.get("world_sizes", (1,)) if d != "off" else (1,)):
            yield dict(compile_mode=cm, tf32=t, cudnn_benchmark=cb, distributed=d, world_size=ws)


def select(preset: str = "default", **overrides: Sequence | None) -> list[Case]:
    """The cases of ``preset`` with each given axis replaced; sorted, without duplicates."""
    unknown = set(overrides) - set(AXES)
    if unknown:
        raise SelectionError(f"unknown axis {sorted(unknown)[0]!r}; valid axes: {', '.join(AXES)}")
    cases: dict[Case, None] = {}
    for block in preset_blocks(preset):
        block = dict(block, **{k: tuple(v) for k, v in overrides.items() if v})
        cases.update(dict.fromkeys(expand(block)))
    return sorted(cases, key=_order)


def _order(case: Case) -> tuple:
    # Group by phase, then model, so the run and the report read in the same order.
    return (PHASES.index(case.phase), case.model, case.optimizer or "", case.device,
            MODES.index(case.mode), case.dtype, case.batch_size, case.num_workers, case.pin_memory,
            case.persistent_workers, case.prefetch_factor or 0, case.transforms, case.image_size or 0,
            AMPS.index(case.amp) if case.amp in AMPS else len(AMPS), case.memory_format,
            case.compile_mode, case.tf32, case.cudnn_benchmark, case.distributed, case.world_size)
