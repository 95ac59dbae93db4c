"""The figure declarations as the reports read them: bench's (``bench.passes.CATALOG``), and
those ``reports.stats`` derives when results are read, declared here (bench never imports
reports). Every list of figures in the reports comes from here."""

from __future__ import annotations

import json
from pathlib import Path

from bench.passes import CATALOG
from bench.schema.figures import Figure, Kind, View, from_json
from bench.schema.files import FIGURES_FILE

from . import stats

CATALOG.declare(*stats.FIGURES)

__all__ = ["Figure", "Kind", "View", "figures", "get", "deterministic", "names", "adopt_recorded"]


def figures(view: View | None = None, source: str | None = None) -> tuple[Figure, ...]:
    return CATALOG.figures(view=view, source=source)


def get(name: str) -> Figure | None:
    return CATALOG.get(name)


def deterministic() -> tuple[Figure, ...]:
    return CATALOG.deterministic()


def names(view: View | None = None, source: str | None = None) -> list[str]:
    return [f.name for f in figures(view, source)]


def adopt_recorded(run_dir: Path) -> list[Figure]:
    """Declare the figures a run folder recorded in its figures.json that nobody here declared
    (a plug-in's pass, loaded in the run but not in this process), so they are labelled,
    formatted and gated as the run declared them. An unreadable file adopts nothing: the
    columns still load, undeclared."""
    path = Path(run_dir) / FIGURES_FILE
    try:
        recorded = [from_json(item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError, KeyError):
        return []
    return CATALOG.adopt(recorded)
