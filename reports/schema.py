"""The figure declarations as the reports read them: bench's, and those ``reports.stats``
derives when results are read (bench never imports reports, so importing this module is what
makes sure they are declared). Every list of figures in the reports comes from here."""

from __future__ import annotations

from bench import figures as declarations
from bench.figures import Figure, Kind, View

from . import stats  # noqa: F401  (declares the derived figures)

__all__ = ["Figure", "Kind", "View", "figures", "get", "deterministic", "names"]


def figures(view: View | None = None, source: str | None = None) -> tuple[Figure, ...]:
    return declarations.figures(view=view, source=source)


def get(name: str) -> Figure | None:
    return declarations.get(name)


def deterministic() -> tuple[Figure, ...]:
    return declarations.deterministic()


def names(view: View | None = None, source: str | None = None) -> list[str]:
    return [f.name for f in figures(view, source)]
