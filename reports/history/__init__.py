"""The history of runs: ``store`` (append, check, load; an SQLite file, migrated on read),
``postgres`` (the same tables on a shared PostgreSQL server), ``layout`` (the tables),
``changes`` (the shift of a case's median between consecutive runs) and ``pages``
(history.md and history.html). The bench run calls ``check`` before measuring and
``append_run`` after."""

from .changes import MIN_SHIFT, latest_table, mark_shifts, runs_table, shifts_table
from .pages import write_history_report
from .postgres import is_server, masked
from .store import DEFAULT_NAME, HistoryError, append_run, check, describe, load_history, locate

__all__ = ["DEFAULT_NAME", "HistoryError", "MIN_SHIFT", "append_run", "check", "describe", "is_server",
           "latest_table", "load_history", "locate", "mark_shifts", "masked", "runs_table", "shifts_table",
           "write_history_report"]
