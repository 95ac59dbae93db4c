"""The schema of a result row: every figure a pass produces, declared once, beside that pass.

A ``Figure`` says what a column of the results is: its name (the column and the key in
pytest-benchmark's ``extra_info``), its kind (which fixes the unit it is stored in: seconds,
bytes, counts, FLOPs, ratios...), whether it is deterministic (and how much it may move
before the gate calls it a change), and where it is shown. Loading, tables, formatting,
Markdown, HTML, charts, the gate and the history all loop over these declarations (the
``Catalog`` ``bench.passes.CATALOG``); none keeps a list of its own. Adding a figure is one
``Figure(...)`` in the ``FIGURES`` of the pass module that produces it.

This module imports nothing heavy (no torch), so the reports can read the schema.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Iterable


class Kind(str, Enum):
    """What a figure counts; it fixes the stored unit (never scaled: formatting picks units)."""

    SECONDS = "seconds"  # stored in s
    BYTES = "bytes"  # stored in B
    COUNT = "count"  # a whole number: rounds, parameters, graphs, operator calls
    FLOPS = "flops"  # floating-point operations (per call)
    FLOP_RATE = "flop_rate"  # FLOP/s
    RATE = "rate"  # items per second (samples/s)
    RATIO = "ratio"  # a dimensionless fraction: 0.05 is 5%
    FLAG = "flag"  # True / False
    TEXT = "text"  # a string, or a list of strings (reasons)
    NUMBER = "number"  # any other plain number (a load average)

    @property
    def unit(self) -> str:
        return _UNITS[self]

    @property
    def numeric(self) -> bool:
        return self not in (Kind.FLAG, Kind.TEXT)


_UNITS = {Kind.SECONDS: "s", Kind.BYTES: "B", Kind.COUNT: "", Kind.FLOPS: "FLOP", Kind.FLOP_RATE: "FLOP/s",
          Kind.RATE: "/s", Kind.RATIO: "", Kind.FLAG: "", Kind.TEXT: "", Kind.NUMBER: ""}


class View(str, Enum):
    """Where a figure is shown. Every figure is in report.csv and ``reports.load``'s frame."""

    TABLE = "table"  # a column of the per-phase tables (Markdown and HTML)
    HISTORY = "history"  # stored per case and run in the history database
    DETAIL = "detail"  # a section of its own in the report (compile behaviour, profiles)


@dataclass(frozen=True)
class Figure:
    """One figure of a result row."""

    name: str
    kind: Kind
    label: str  # short column header, without the unit (the renderer adds it)
    source: str  # the pass that produces it: "timing", "memory", "flops", "compile", ...
    help: str = ""
    # Deterministic figures repeat exactly for the same code: the gate compares them on their
    # own, with this relative tolerance (0: exact), whatever the timing noise.
    deterministic: bool = False
    tolerance: float = 0.0
    views: frozenset[View] = frozenset({View.HISTORY})

    def shown_in(self, view: View) -> bool:
        return view in self.views


class Catalog:
    """The declared figures, by name, in declaration order: what every reader loops over.

    ``bench.passes.CATALOG`` is the one instance, holding bench's own figures; plug-ins add
    theirs (``bench.passes.register_pass``), the reports the figures they derive when reading,
    and a reader the figures a run folder recorded that it does not know (``adopt``).
    """

    def __init__(self, *figures: Figure) -> None:
        self._figures: dict[str, Figure] = {}
        self.declare(*figures)

    def declare(self, *figures: Figure) -> tuple[Figure, ...]:
        """Add figures; declaring the same name twice with a different meaning is an error."""
        for figure in figures:
            known = self._figures.get(figure.name)
            if known is not None and known != figure:
                raise ValueError(f"figure {figure.name!r} is declared twice, differently: {known} and {figure}")
            self._figures[figure.name] = figure
        return figures

    def undeclare(self, name: str) -> None:
        """Forget a figure (for tests and plug-ins that replace one)."""
        self._figures.pop(name, None)

    def figures(self, *, view: View | None = None, source: str | None = None) -> tuple[Figure, ...]:
        """Every declared figure (in declaration order), optionally only those of a view or pass."""
        return tuple(f for f in self._figures.values()
                     if (view is None or view in f.views) and (source is None or f.source == source))

    def get(self, name: str) -> Figure | None:
        """The declaration of a column, or None for a column nobody declared (a plug-in's extra)."""
        return self._figures.get(name)

    def deterministic(self) -> tuple[Figure, ...]:
        return tuple(f for f in self._figures.values() if f.deterministic)

    def adopt(self, recorded: Iterable[Figure]) -> list[Figure]:
        """Declare the figures a run recorded that this process does not know (a plug-in's, say):
        a declaration already known wins. Returns those adopted."""
        new = [f for f in recorded if f.name not in self._figures]
        self.declare(*new)
        return new


def names(items: Iterable[Figure]) -> list[str]:
    return [f.name for f in items]


def to_json(figure: Figure) -> dict[str, object]:
    """A declaration as plain JSON, written beside a run's results (``bench.schema.files.FIGURES_FILE``)."""
    data = asdict(figure)
    data["kind"] = figure.kind.value
    data["views"] = sorted(v.value for v in figure.views)
    return data


def from_json(data: dict[str, object]) -> Figure:
    """The declaration a run folder recorded; unknown keys (from a newer blitzbench) are ignored."""
    known = {f.name for f in fields(Figure)}
    values = {k: v for k, v in data.items() if k in known}
    values["kind"] = Kind(values["kind"])
    values["views"] = frozenset(View(v) for v in values.get("views", ()))
    return Figure(**values)
