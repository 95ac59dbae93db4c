"""The case matrix: the frozen ``Case`` every layer keys on, the axes and the presets.

A preset is a list of blocks; each block is a cross product of axis values. Options
given on the command line replace that axis in every block, so
``--models lenet --devices cuda`` runs the default preset's shape for lenet on CUDA.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Iterable, Mapping, Sequence

PHASES = ("forward", "backward", "optimizer_step", "train_step")
# Phases whose timed work does not involve the optimizer: one case, not one per optimizer.
OPTIMIZER_FREE_PHASES = frozenset({"forward", "backward"})
DEVICES = ("cpu", "cuda")
MODES = ("eager", "compile")
DTYPES = ("float32", "bfloat16")
PRESETS = ("smoke", "default", "full")
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

    @property
    def params_id(self) -> str:
        """The part inside the brackets: ``fashion_mlp-adam-cpu-eager-b64``."""
        parts = [self.model]
        if self.optimizer is not None:
            parts.append(self.optimizer)
        parts += [self.device, self.mode]
        if self.dtype != "float32":
            parts.append(self.dtype)
        parts.append(f"b{self.batch_size}")
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
# Row fields beside the figures: the key, the case fields and how the case ended.
ROW_FIELDS: tuple[str, ...] = ("case_id", *CASE_FIELDS, "status", "error", "invalid_reason")

AXES = ("models", "optimizers", "phases", "devices", "modes", "dtypes", "batch_sizes")


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
    }[axis]


class SelectionError(ValueError):
    """A selection option names a value that does not exist."""


def parse_axis(axis: str, text: str) -> tuple:
    """Parse a comma list for one axis, rejecting unknown values with the valid choices."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise SelectionError(f"--{axis.replace('_', '-')} is empty")
    if axis == "batch_sizes":
        bad = [v for v in values if not v.isdigit() or int(v) < 1]
        if bad:
            raise SelectionError(
                f"invalid batch size {bad[0]!r} for --batch-sizes; expected positive integers, e.g. 32,64"
            )
        return tuple(dict.fromkeys(int(v) for v in values))
    choices = valid_choices(axis)
    for v in values:
        if v not in choices:
            raise SelectionError(
                f"unknown value {v!r} for --{axis.replace('_', '-')}; valid choices: {', '.join(choices)}"
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

    from .optimizers import list_optimizers

    base = dict(dtypes=("float32",), batch_sizes=(DEFAULT_BATCH_SIZE,))
    if preset == "smoke":
        return [
            dict(base, models=("lenet", "fashion_mlp"), optimizers=("adam",), phases=PHASES,
                 devices=("cpu",), modes=("eager",)),
        ]
    if preset == "default":
        return [
            dict(base, models=_seed_models(), optimizers=tuple(list_optimizers()), phases=PHASES,
                 devices=("cpu",), modes=("eager",)),
            dict(base, models=("lenet", "fashion_mlp"), optimizers=("sgd", "adam"),
                 phases=("train_step",), devices=("cpu",), modes=("compile",)),
        ]
    return [
        dict(base, models=tuple(models.list_models()), optimizers=tuple(list_optimizers()),
             phases=PHASES, devices=DEVICES, modes=MODES),
    ]


def expand(block: Mapping[str, Sequence]) -> Iterable[Case]:
    for model, phase, device, mode, dtype, bs in itertools.product(
        block["models"], block["phases"], block["devices"], block["modes"],
        block["dtypes"], block["batch_sizes"],
    ):
        opts = (None,) if phase in OPTIMIZER_FREE_PHASES else block["optimizers"]
        for opt in opts:
            yield Case(phase=phase, model=model, optimizer=opt, device=device, mode=mode,
                       dtype=dtype, batch_size=bs)


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
            MODES.index(case.mode), case.dtype, case.batch_size)
