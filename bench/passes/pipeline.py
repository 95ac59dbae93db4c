"""Figures of the loop phases (``data``, ``epoch``): an epoch's size, the median step split where
the batch is in hand (waiting for the loader before, computing after), the data-wait share and
each timed epoch's mean loss, from the records ``bench.workloads.pipeline.walk`` kept."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from bench.schema.figures import Figure, Kind, View

if TYPE_CHECKING:
    from bench.passes.base import Timing
    from bench.workloads.pipeline import EpochRecord
    from bench.workloads.step import Step

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})
FIGURES = (
    Figure("epoch_images", Kind.COUNT, "images/epoch", "pipeline", views=_H),
    Figure("epoch_batches", Kind.COUNT, "batches/epoch", "pipeline", views=_H),
    Figure("batch_s", Kind.SECONDS, "per batch", "pipeline", "median time of one step (wait + compute)",
           views=_H),
    Figure("data_wait_s", Kind.SECONDS, "data wait/step", "pipeline",
            "median time a step waits for its batch", views=_H),
    Figure("compute_s", Kind.SECONDS, "compute/step", "pipeline", "median time of a step's compute", views=_H),
    Figure("data_wait_share", Kind.RATIO, "data wait", "pipeline",
           "share of the epoch spent waiting for batches", views=_T),
    Figure("epoch_losses", Kind.TEXT, "epoch losses", "pipeline", "the mean training loss of each epoch",
           views=_H),
    Figure("data_source", Kind.TEXT, "data", "pipeline", "which dataset was read, from where", views=_H),
)


def summarize_epochs(records: list[EpochRecord]) -> dict[str, Any]:
    """Figures of several epochs: sizes, the median step split, the wait share (throughput is
    samples_per_s: an epoch's images / the median epoch time)."""
    waits = [w for r in records for w in r.wait_s]
    computes = [c for r in records for c in r.compute_s]
    total = sum(waits) + sum(computes)
    return dict(
        epoch_images=records[0].images, epoch_batches=records[0].batches,
        batch_s=statistics.median(w + c for w, c in zip(waits, computes)),
        data_wait_s=statistics.median(waits), compute_s=statistics.median(computes),
        data_wait_share=sum(waits) / total if total else None,
    )


def pipeline_figures(step: Step, timing: Timing) -> dict[str, Any]:
    records = step.state.get("records")
    if not step.is_loop or not records:
        return {}
    timed = records[-step.rounds:]  # the first, untimed epoch warmed the loader up
    figures = summarize_epochs(timed)
    figures["data_source"] = step.state.get("source")
    if step.case.phase == "epoch":
        figures["epoch_losses"] = [r.mean_loss for r in timed]
    return figures
