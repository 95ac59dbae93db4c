"""The history of runs: ``store`` (the SQLite file: append, check, load, migrate on read),
``changes`` (the shift of a case's median between consecutive runs) and ``pages``
(history.md and history.html). The bench run calls ``check`` before measuring and
``append_run`` after."""

from .changes import MIN_SHIFT, latest_table, mark_shifts, runs_table, shifts_table
from .pages import write_history_report
from .store import DEFAULT_NAME, HistoryError, append_run, check, load_history, locate

__all__ = ["DEFAULT_NAME", "HistoryError", "MIN_SHIFT", "append_run", "check", "latest_table", "load_history",
           "locate", "mark_shifts", "runs_table", "shifts_table", "write_history_report"]
