"""The case matrix: the axes and the presets, from which a run's ``Case`` list is selected.

A preset is a list of blocks; each block is a cross product of axis values. Options
given on the command line replace that axis in every block, so
``--models lenet --devices cuda`` runs the default preset's shape for lenet on CUDA.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Mapping, Sequence

from bench.schema.case import (AMPS, AXES, COMPILE_MODES, DATA_PHASES, DEFAULT_BATCH_SIZE, DEVICES,
                               DISTRIBUTED, DTYPES, LR_SCHEDULES, MEMORY_FORMATS, MODES, OPTIMIZER_FREE_PHASES,
                               PHASES, STEP_PHASES, TRANSFORMS, Case)

PRESETS = ("smoke", "default", "full", "pipeline", "vision", "llm")

# The DataLoader axes: they vary only the data phases (other phases keep the seed's values).
PIPELINE_AXES = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "transforms")
# The model's input and arithmetic: they vary the step phases only (the data and epoch
# phases feed the seed's images, at the model's own size, as the seed does).
STEP_AXES = ("image_sizes", "amp", "memory_formats")
# Settings that exist only on CUDA: CPU cases keep their defaults (select drops the repeats).
CUDA_ONLY_AXES = ("tf32", "cudnn_benchmark")
# Phases that run distributed: every rank times the whole training step.
DISTRIBUTED_PHASES = frozenset({"train_step"})
# Integer axes: (smallest value, an example).
INTEGER_AXES = {"batch_sizes": (1, "32,64"), "num_workers": (0, "0,2"), "prefetch_factor": (1, "2,4"),
                "image_sizes": (1, "32,64,224"), "world_sizes": (1, "1,2"), "seq_lens": (1, "64,256"),
                "grad_accum": (1, "1,4")}
# The train step people write: clipping, accumulation, an LR scheduler (train_step only).
TRAIN_STEP_AXES = ("clip_grad", "grad_accum", "lr_schedule")
_SWITCHES = {"off": False, "on": True, "false": False, "true": True, "0": False, "1": True}


def valid_choices(axis: str) -> tuple[str, ...]:
    # The registries (models, optimizers) need torch: imported for their axes only, so that the
    # readers of results (reports) and the options' check (bench.matrix.options) run without it.
    if axis == "models":
        import models

        return tuple(models.list_models())
    if axis == "optimizers":
        from bench.workloads.optimizers import list_optimizers

        return tuple(list_optimizers())
    return {
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
        "lr_schedule": LR_SCHEDULES,
    }[axis]


class SelectionError(ValueError):
    """A selection option names a value that does not exist."""


def parse_axis(axis: str, text: str) -> tuple:
    """Parse a comma list for one axis, rejecting unknown values with the valid choices."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise SelectionError(f"--{axis.replace('_', '-')} is empty")
    flag = "--" + axis.replace("_", "-")
    if axis in INTEGER_AXES:
        smallest, example = INTEGER_AXES[axis]
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
    if axis == "clip_grad":
        return tuple(dict.fromkeys(_clip_value(v, flag) for v in values))
    if axis == "models":
        return tuple(dict.fromkeys(_model_name(v) for v in values))
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


def _clip_value(text: str, flag: str) -> float | None:
    """``off`` (no clipping) or a positive maximum norm."""
    if text.lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise SelectionError(f"invalid value {text!r} for {flag}; expected off or a positive maximum gradient "
                             "norm, e.g. off,1.0")
    return value


def _model_name(name: str) -> str:
    """A registered model, or one made by name (``hf:gpt2``); else the closest names. A seed
    model is found without listing the lazy families (torchvision's import: seconds)."""
    import difflib

    import models

    try:
        models.get_spec(name)  # registered, or made by name (hf:...); else a ValueError saying why not
    except ValueError as exc:
        if ":" in name:
            raise SelectionError(f"invalid value {name!r} for --models: {exc}") from None
        known = models.list_models()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise SelectionError(f"unknown value {name!r} for --models; valid choices: {', '.join(known)}, "
                             f"or hf:<model_type> / hf-cls:<model_type>{hint}") from None
    return name


def _seed_models() -> tuple[str, ...]:
    import models

    # The seed's models are built in: listing them never imports torchvision (seconds a run).
    return tuple(n for n in models.list_models(lazy=False) if "seed" in models.get_spec(n).tags)


def preset_blocks(preset: str) -> list[dict[str, tuple]]:
    """The blocks of a preset; each block maps every axis to its values."""
    if preset not in PRESETS:
        raise SelectionError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")

    from bench.workloads.optimizers import seed_optimizers

    # batch_sizes None: each model's own default (the seed's 64 for the image models).
    base = dict(dtypes=("float32",), batch_sizes=(None,), num_workers=(0,), pin_memory=(False,),
                persistent_workers=(False,), prefetch_factor=(None,), transforms=("v1",), image_sizes=(None,),
                amp=("off",), memory_formats=("contiguous",), compile_modes=("default",), tf32=(False,),
                cudnn_benchmark=(False,), distributed=("off",), world_sizes=(1,), seq_lens=(None,),
                clip_grad=(None,), grad_accum=(1,), lr_schedule=("none",))
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
    if preset == "llm":
        # Transformers: the GPT decoder at nanoGPT's CPU size and the BERT-style classifier, with
        # AdamW over their weight-decay groups, eager and compiled; on CUDA (skipped without
        # it) GPT-2 124M at its 1024-token block in bfloat16 autocast.
        llm = ("gpt_cpu", "bert_cls")
        return [
            dict(base, models=llm, optimizers=("adamw",), phases=("forward", "backward", "train_step"),
                 devices=("cpu",), modes=("eager",)),
            dict(base, models=llm, optimizers=("adamw",), phases=("train_step",), devices=("cpu",),
                 modes=("compile",)),
            dict(base, models=("gpt2_124m",), optimizers=("adamw",), phases=("train_step",), devices=("cuda",),
                 modes=("eager", "compile"), amp=("bfloat16",)),
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
    for model, phase, device, mode, dtype, bs, size, amp, fmt, seq in itertools.product(
        block["models"], block["phases"], block["devices"], block["modes"],
        block["dtypes"], block.get("batch_sizes", (None,)), block.get("image_sizes", (None,)),
        block.get("amp", ("off",)), block.get("memory_formats", ("contiguous",)), block.get("seq_lens", (None,)),
    ):
        if phase == "data" and mode != "eager":
            continue  # the loader alone has nothing to compile
        if phase in DATA_PHASES:  # STEP_AXES vary the step phases only (select drops the repeats)
            size, amp, fmt = None, "off", "contiguous"
        opts = (None,) if phase in OPTIMIZER_FREE_PHASES else block["optimizers"]
        for opt, settings, extra, train in itertools.product(
                opts, list(loader_settings(block, phase)), list(step_settings(block, phase, device, mode)),
                list(train_step_settings(block, phase))):
            yield Case(phase=phase, model=model, optimizer=opt, device=device, mode=mode,
                       dtype=dtype, batch_size=bs or _default_batch(model), image_size=size, amp=amp,
                       memory_format=fmt, seq_len=seq, **settings, **extra, **train)


def _default_batch(model: str) -> int:
    """The batch a model runs at when the selection names none (the seed's 64 for images)."""
    import models

    try:
        return models.get_spec(model).batch_size
    except ValueError:  # not a model (a test's made-up name): the seed's
        return DEFAULT_BATCH_SIZE


def train_step_settings(block: Mapping[str, Sequence], phase: str) -> Iterable[dict[str, object]]:
    """Gradient clipping, accumulation and the LR scheduler: every combination for train_step,
    the plain step elsewhere (select drops the repeats)."""
    if phase != "train_step":
        yield dict(clip_grad=None, grad_accum=1, lr_schedule="none")
        return
    for clip, accum, schedule in itertools.product(*(block.get(a) or (d,) for a, d in zip(
            TRAIN_STEP_AXES, (None, 1, "none")))):
        yield dict(clip_grad=clip, grad_accum=accum, lr_schedule=schedule)


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
            case.compile_mode, case.tf32, case.cudnn_benchmark, case.distributed, case.world_size,
            case.seq_len or 0, case.clip_grad or 0.0, case.grad_accum, case.lr_schedule)
