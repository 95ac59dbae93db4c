"""``--shard i/N``: one of N parts of the selection, for N machines that each run a part.

Every machine computes the same split from the same selection, so the parts are chosen from
the cases alone (never from this machine's hardware or clock): each case gets an expected
cost in seconds from its fields, and the cases are dealt longest first into N bins, each to
the bin with the least cost so far (ties: the lower bin), cases of equal cost in id order.
That keeps the parts within one case's cost of each other. A part keeps the selection's
order, so a shard's run and report read like a whole run's.
"""

from __future__ import annotations

import re
from typing import Sequence

from bench.schema.case import DATA_PHASES, Case

# Expected seconds per case. Not measured here (a measurement would differ between machines
# and so between the shards' splits): orders of magnitude a run shows.
TIMED_S = 1.5  # pytest-benchmark's rounds (its default --benchmark-max-time, 1 s) and the passes
COMPILE_S = 20.0  # torch.compile of one graph (inductor on CPU)
COMPILE_MODE_S = {"default": 0.0, "reduce-overhead": 10.0, "max-autotune": 60.0}  # on top of compiling
EPOCH_S = 4.0  # one epoch of the seed's 100 batches; data and epoch cases time several
EPOCHS = 4  # the default: one untimed epoch, then three timed ones
WORKER_START_S = 2.0  # a DataLoader worker process starting (per worker)
DISTRIBUTED_START_S = 10.0  # torchrun starting the ranks and their process group
HEAVY_MODEL = 4.0  # torchvision models: several times a seed model's work per step
SHARD_FORM = "i/N with 1 <= i <= N"
_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


class ShardError(ValueError):
    """A ``--shard`` value that is not ``i/N`` with 1 <= i <= N; the message names it."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``; anything else raises ``ShardError`` naming the value."""
    match = _PATTERN.fullmatch(str(text))
    if match is None:
        raise ShardError(f"invalid --shard value {text!r}; expected {SHARD_FORM}, e.g. 1/2")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise ShardError(f"invalid --shard value {text!r}: shard {index} of {count} does not exist; "
                         f"expected {SHARD_FORM}, e.g. 1/{max(count, 2)}")
    return index, count


def cost(case: Case) -> float:
    """Expected seconds one case takes, from its fields alone (the same on every machine)."""
    seconds = TIMED_S
    if case.phase in DATA_PHASES:
        seconds += EPOCHS * EPOCH_S * (0.5 if case.phase == "data" else 1.0)  # data: the loader alone
        seconds += case.num_workers * WORKER_START_S * (1 if case.persistent_workers else EPOCHS)
    if case.mode == "compile":
        seconds += COMPILE_S + COMPILE_MODE_S.get(case.compile_mode, 0.0)
    if case.distributed != "off":
        seconds += DISTRIBUTED_START_S
    return seconds * (HEAVY_MODEL if _heavy(case.model) else 1.0)


def _heavy(model: str) -> bool:
    """A torchvision classifier or a transformer rather than one of the seed's small models."""
    import models

    try:
        return bool({"torchvision", "transformer"} & set(models.get_spec(model).tags))
    except ValueError:  # a model this process cannot name: counted as a small one
        return False


def split(cases: Sequence[Case], count: int) -> list[list[Case]]:
    """The selection dealt into ``count`` parts of about equal expected cost, each part in the
    selection's order. Deterministic: the same cases give the same parts, in any order given."""
    order = {case: position for position, case in enumerate(cases)}
    loads = [0.0] * count
    parts: list[list[Case]] = [[] for _ in range(count)]
    for case in sorted(order, key=lambda c: (-cost(c), c.id)):
        target = min(range(count), key=lambda b: (loads[b], b))
        parts[target].append(case)
        loads[target] += cost(case)
    return [sorted(part, key=order.__getitem__) for part in parts]


def shard(cases: Sequence[Case], index: int, count: int) -> list[Case]:
    """Part ``index`` (1-based) of ``count`` of the selection ``cases``."""
    if not 1 <= index <= count:
        raise ShardError(f"invalid shard {index}/{count}; expected {SHARD_FORM}")
    return split(cases, count)[index - 1]
