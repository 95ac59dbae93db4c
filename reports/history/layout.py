"""The history's two tables, whatever holds them (an SQLite file, a PostgreSQL server), and
the error both report. ``case_runs``: one row per (run, case), the case fields as columns;
``figures``: one row per (run, case, figure)."""

from __future__ import annotations

from dataclasses import fields
from typing import Mapping

from bench.schema.case import ROW_FIELDS, Case

from ..load import ResultsError

TABLE = "case_runs"
FIGURES = "figures"
# What a run adds beside the row fields: when and from what it ran, and where its results are.
RUN_COLUMNS = ("git_commit", "started_at", "environment", "times_s", "run_dir")
_INTEGER_FIELDS = {f.name for f in fields(Case) if f.type in (int, "int")}
# Column types as SQLite spells them; a server's dialect maps them (postgres.py).
COLUMNS = {"run": "TEXT NOT NULL", "case_id": "TEXT NOT NULL",
           **{c: "INTEGER" if c in _INTEGER_FIELDS else "TEXT" for c in ROW_FIELDS if c != "case_id"},
           **{c: "TEXT" for c in RUN_COLUMNS}, "recorded_at": "REAL"}
FIGURE_COLUMNS = {"run": "TEXT NOT NULL", "case_id": "TEXT NOT NULL", "name": "TEXT NOT NULL",
                  "value": "REAL", "text": "TEXT"}


class HistoryError(ResultsError):
    """The history cannot be used; the message names it (a path, or a URL without its
    password) and what to do."""


def free_name(base: str, taken: Mapping[str, str], folder: str) -> str:
    """The name a run folder gets in the history: its own (``base``), unless another folder of
    that name is already there (``taken``: run name -> folder), then ``NAME-1``, ``NAME-2``…,
    as new_run_dir names runs started in the same second. The same folder keeps its name."""
    name, suffix = base, 0
    while name in taken and taken[name] != folder:
        suffix += 1
        name = f"{base}-{suffix}"
    return name
