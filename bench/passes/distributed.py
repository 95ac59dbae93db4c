"""Figures of a distributed case (``--distributed ddp|fsdp``), from every rank's gathered times.

Rank 0 of the ranks (``bench.runners.dist_worker``) gathers each rank's rounds, its all-reduce
times and where it ran; the launcher (``bench.runners.distributed``) turns them into the case's
row with ``rank_figures``. No torch at import: the reports read the declarations.
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from bench.schema.case import Case
from bench.schema.figures import Figure, Kind, View

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})

FIGURES = (
    # Lists (one value per rank, by rank): in the row, report.csv and the frame; tables and
    # the history hold numbers, so they show the slowest rank and the imbalance instead.
    Figure("rank_median_s", Kind.SECONDS, "rank medians", "distributed",
           "each rank's median step time, by rank", views=frozenset()),
    Figure("rank_p90_s", Kind.SECONDS, "rank p90s", "distributed",
           "each rank's 90th-percentile step time, by rank", views=frozenset()),
    Figure("slowest_rank", Kind.COUNT, "slowest rank", "distributed",
           "the rank with the largest median; the row's rounds (median, CI) are its", views=_T),
    Figure("rank_imbalance", Kind.RATIO, "rank imbalance", "distributed",
           "slowest rank's median / fastest rank's median - 1", views=_T),
    Figure("allreduce_s", Kind.SECONDS, "all-reduce", "distributed",
           "an isolated all-reduce of a flat tensor the size of the gradients: median over "
           "repeats of the slowest rank's time", views=_T),
    Figure("scaling_efficiency", Kind.RATIO, "scaling eff.", "distributed",
           "weak scaling: samples/s on N ranks / (N × samples/s of the same case on 1 rank), "
           "the per-rank batch fixed", views=_T),
    Figure("oversubscribed", Kind.FLAG, "oversubscribed", "distributed",
           "on some host, ranks × threads per rank exceed the cores: the ranks compete for them",
           views=_T),
    Figure("ranks_in_sync", Kind.FLAG, "ranks in sync", "distributed",
           "DDP: every rank's parameters equal rank 0's after the timed steps, though each rank "
           "had its own batch (gradients averaged)", views=_H),
    Figure("node_cores", Kind.COUNT, "cores", "distributed", "usable cores of rank 0's host", views=_H),
    Figure("nnodes", Kind.COUNT, "nodes", "distributed", views=_H),
)


def p90(times: Sequence[float]) -> float:
    return statistics.quantiles(times, n=10, method="inclusive")[-1] if len(times) > 1 else times[0]


def oversubscribed(ranks: Sequence[Mapping[str, Any]]) -> bool:
    """Whether on some host the ranks want more than its cores (two nodes started on one host
    share its cores): their compute threads together exceed the cores, or several ranks hold
    a core each with none left over. Beside its compute threads each rank runs its
    interpreter and the backend's communication threads, and torchrun runs beside them: with
    as many ranks as cores (2 ranks on 2 cores) these wait for a core inside the timed steps."""
    per_host: dict[str, list[Mapping[str, Any]]] = {}
    for r in ranks:
        per_host.setdefault(r["host"], []).append(r)
    return any(sum(r["threads"] for r in rs) > rs[0]["cores"] or 1 < len(rs) >= rs[0]["cores"]
               for rs in per_host.values())


def rank_figures(case: Case, ranks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of the gathered per-rank times (everything but the scaling efficiency)."""
    medians = [statistics.median(r["times"]) for r in ranks]
    slowest = max(range(len(ranks)), key=medians.__getitem__)
    allreduce = [max(per_rank) for per_rank in zip(*(r["allreduce"] for r in ranks))]
    return dict(rank_median_s=medians, rank_p90_s=[p90(r["times"]) for r in ranks],
                slowest_rank=ranks[slowest]["rank"], rank_imbalance=medians[slowest] / min(medians) - 1,
                allreduce_s=statistics.median(allreduce) if allreduce else None,
                samples_per_s=case.world_size * case.batch_size / medians[slowest],
                oversubscribed=oversubscribed(ranks), node_cores=ranks[0]["cores"],
                nnodes=len({(r["host"], r["node"]) for r in ranks}))
