"""Writing a run's report: ``report.md``, ``report.csv``, ``report.html`` (and ``profile.csv``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.schema.files import PROFILE_CSV, REPORT_CSV, REPORT_HTML, REPORT_MD
from bench.schema.results import write_atomic

from ..load import load
from ..traces.profile import empty_profile, load_profile
from . import tables
from .html import write_html
from .markdown import write_markdown
from .sections import run_sections


def report_markdown(df: pd.DataFrame, title: str = "blitzbench report", profile: pd.DataFrame | None = None,
                    run_dir: Path | None = None) -> str:
    """The Markdown report of loaded results."""
    return write_markdown(title, run_sections(df, empty_profile() if profile is None else profile, run_dir))


def report_html(df: pd.DataFrame, title: str = "blitzbench report", profile: pd.DataFrame | None = None,
                run_dir: Path | None = None) -> str:
    """The HTML report of loaded results (the same sections as the Markdown, with charts)."""
    sections = run_sections(df, empty_profile() if profile is None else profile, run_dir)
    return write_html(title, subtitle(df), sections)


def subtitle(df: pd.DataFrame) -> str:
    runs = ", ".join(sorted(df["run"].astype(str).unique()))
    return (f"run {runs} · {len(tables.ok(df))} of {len(df)} cases measured · "
            f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def write_report(run_dir: Path | str) -> dict[str, Any]:
    """Load a run folder and write ``report.md``, ``report.csv`` and ``report.html`` into it
    (and ``profile.csv`` when the run was profiled); returns the paths by kind, and under
    ``"skipped"`` what was skipped when reading (a list of messages, empty when nothing was)."""
    run_dir = Path(run_dir)
    df = load(run_dir)
    profile = load_profile(run_dir)
    title = f"blitzbench report — {run_dir.name}"
    sections = run_sections(df, profile, run_dir)
    paths: dict[str, Any] = {"markdown": run_dir / REPORT_MD, "csv": run_dir / REPORT_CSV}
    # Each file whole or not at all (a full disk leaves the previous report, never half of one).
    write_atomic(paths["markdown"], write_markdown(title, sections))
    write_atomic(paths["csv"], df.drop(columns=["times_s"]).to_csv(index=False))
    if not profile.empty:
        paths["profile csv"] = run_dir / PROFILE_CSV
        write_atomic(paths["profile csv"], profile.to_csv(index=False))
    paths["html"] = run_dir / REPORT_HTML
    write_atomic(paths["html"], write_html(title, subtitle(df), sections))
    paths["skipped"] = list(df.attrs.get("skipped", []))
    return paths
