"""The run report: tables, sections, Markdown and HTML writers, charts and templates.

``write_report(run_dir)`` is what the bench run calls at the end of a session. The writers
(matplotlib, Jinja2) are imported when it is called, so that importing ``reports`` (as the
bench harness does for its statistics) stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_report"]


def write_report(run_dir: Path | str) -> dict[str, Any]:
    """Load a run folder and write report.md, report.csv and report.html (and profile.csv);
    the paths by kind, and under ``"skipped"`` the messages of what was skipped when reading."""
    from .write import write_report as write

    return write(run_dir)
