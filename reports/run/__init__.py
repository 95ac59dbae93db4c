"""The run report: tables, sections, Markdown and HTML writers, charts and templates.

``write_report(run_dir)`` is what the bench run calls at the end of a session. The writers
(matplotlib, Jinja2) are imported when it is called, so that importing ``reports`` (as the
bench harness does for its statistics) stays light."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report"]


def write_report(run_dir: Path | str) -> dict[str, Path]:
    """Load a run folder and write report.md, report.csv and report.html (and profile.csv)."""
    from .write import write_report as write

    return write(run_dir)
