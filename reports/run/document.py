"""What a report is made of, before it is written: sections of notes, tables of strings and
charts. The Markdown and the HTML writers render the same list of sections; a writer leaves
out what its format cannot show (Markdown: charts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import pandas as pd

from .plots import Chart


@dataclass
class Note:
    text: str
    warning: bool = False


@dataclass
class Cards:
    """Headline counts: ``(value, label)``."""

    items: list[tuple[object, str]]


@dataclass
class Table:
    """A table whose cells are already strings (``reports.format`` made them)."""

    frame: pd.DataFrame
    title: str | None = None
    numeric: Sequence[str] = ()  # right-aligned in HTML
    links: dict[str, list[str | None]] = field(default_factory=dict)  # column -> a target per row
    badges: dict[str, list[str]] = field(default_factory=dict)  # column -> a badge style per row ("": none)
    group_by: str | None = None  # HTML: a labelled row wherever this column changes (column hidden)
    folded: bool = False  # HTML: behind a click, the title as its summary (Markdown: shown)


@dataclass
class Charts:
    charts: list[Chart]
    title: str | None = None
    folded: bool = False  # HTML: behind a click (many charts)
    note: str | None = None


Block = Union[Note, Cards, Table, Charts]


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block]

    def has(self, *kinds: type) -> bool:
        return any(isinstance(b, kinds) for b in self.blocks)
