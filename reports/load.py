"""Results files -> one tidy DataFrame: a row per case (per run), numbers in their stored units.

The columns: the row fields (``bench.schema.case.ROW_FIELDS``), every declared figure in
declaration order, then any column nobody declared (a plug-in's extra), then ``times_s``
(the raw rounds), ``run`` and ``source``. The derived statistics (``reports.stats.DERIVED``)
are computed from the rounds for every row, whether or not the file stored them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.schema.case import CASE_DEFAULTS, CASE_FIELDS, ROW_FIELDS
from bench.schema.status import Status
from bench.schema.files import BENCHMARK_JSON, CASES_FILE, ENVIRONMENT_FILE, RUN_FILES
from bench.passes.timing import REQUIRED_STATS, STAT_COLUMNS

from .environment import EnvironmentMismatchWarning, describe_differences, differing_fields, read_environment
from .schema import adopt_recorded, names
from .stats import derive

__all__ = ["ResultsError", "ResultsWarning", "load", "read_jsonl", "columns"]


class ResultsError(ValueError):
    """A results file or folder that cannot be read; the message names it."""


class ResultsWarning(UserWarning):
    """Part of the results was skipped when reading (the message names the file and why);
    the frame lists every such skip in ``df.attrs["skipped"]``, and the report shows them."""


def columns() -> list[str]:
    """The known columns, in the order tables and the CSV show them."""
    return [*ROW_FIELDS, *(n for n in names() if n not in ROW_FIELDS), "times_s"]


def load(*paths: str | Path) -> pd.DataFrame:
    """Read run folders, pytest-benchmark JSON files or JSON-lines files into one DataFrame."""
    if not paths:
        raise ResultsError("no results path given")
    skipped: list[str] = []
    frames = [_load_one(Path(p), skipped) for p in paths]
    df = derive(pd.concat(frames, ignore_index=True))
    df.attrs["skipped"] = skipped
    for message in skipped:
        warnings.warn(message, ResultsWarning, stacklevel=2)
    if df.empty:
        raise ResultsError(f"no results in {', '.join(map(str, paths))}")
    environments = {str(frame["run"].iloc[0]): read_environment(p) for frame, p in zip(frames, paths)
                    if not frame.empty}
    df.attrs["environments"] = environments
    differing = differing_fields(environments)
    if differing:
        warnings.warn(describe_differences(differing), EnvironmentMismatchWarning, stacklevel=2)
    return df


def _load_one(path: Path, skipped: list[str]) -> pd.DataFrame:
    adopt_recorded(path if path.is_dir() else path.parent)  # a plug-in's figures, as the run declared them
    if path.is_dir():
        # The JSON lines hold every finished case, also of an interrupted run.
        for name in (CASES_FILE, BENCHMARK_JSON):
            if (path / name).is_file():
                df = _load_one(path / name, skipped)
                if name == CASES_FILE:
                    skipped += _unread_beside(path / BENCHMARK_JSON, set(df["case_id"]))
                skipped += _unreadable_environment(path)
                return df
        raise ResultsError(f"{path}: no {CASES_FILE} or {BENCHMARK_JSON} in this folder")
    if not path.is_file():
        raise ResultsError(f"{path}: no such file or folder")
    known = columns()
    if path.suffix == ".jsonl":  # each row named by its line, so a bad one can be found
        rows = [_row(entry, f"{path}:{number}", None, known) for number, entry in _numbered_jsonl(path, skipped)]
    else:
        rows = [_row(entry, str(path), i, known) for i, entry in enumerate(_read_benchmark_json(path))]
    run = path.parent.name if path.name in RUN_FILES else path.stem
    extra_keys = [k for row in rows for k in row if k not in known]
    df = pd.DataFrame(rows, columns=[*known, *dict.fromkeys(extra_keys)])
    df["run"] = run
    df["source"] = str(path)
    # Latest row wins if a case was recorded twice in one file (a rerun appended to it).
    return df.drop_duplicates(subset=["case_id"], keep="last").reset_index(drop=True)


def _read_benchmark_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return data["benchmarks"]


def _unread_beside(path: Path, read: set[str]) -> list[str]:
    """What the run folder's benchmark.json holds that was not read from cases.jsonl (which is
    what the report reads): the file itself when it is not valid, or the cases only it has."""
    if not path.is_file():
        return []
    try:
        entries = _read_benchmark_json(path)
    except ResultsError as exc:
        return [f"{exc}; skipped it, the report reads {CASES_FILE}"]
    only = sorted({str((e.get("extra_info") or {}).get("case_id", e.get("name"))) for e in entries
                   if isinstance(e, dict)} - read)
    if not only:
        return []
    return [f"{path}: {len(only)} case(s) not in {CASES_FILE} were not read ({', '.join(only[:5])}"
            f"{', …' if len(only) > 5 else ''})"]


def _unreadable_environment(folder: Path) -> list[str]:
    path = folder / ENVIRONMENT_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{path}: not valid JSON ({exc}); the run's environment is not shown"]
    return [] if isinstance(data, dict) else [f"{path}: not a JSON object; the run's environment is not shown"]


def read_jsonl(path: Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file; a last line cut short by a killed run is dropped
    (and named in ``skipped``, when given)."""
    return [entry for _, entry in _numbered_jsonl(path, skipped)]


def _numbered_jsonl(path: Path, skipped: list[str] | None) -> list[tuple[int, Any]]:
    """``(line number, object)`` per line. Read as bytes and decoded line by line, so a line cut
    inside a character, or garbage bytes, is named by its line like any line that is not JSON."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    entries = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entries.append((number, json.loads(raw.decode("utf-8"))))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if number == len(lines):  # everything before it is intact
                if skipped is not None:
                    line = raw.decode("utf-8", errors="replace")
                    skipped.append(f"{path}:{number}: the last line is cut short (a run killed while "
                                   f"writing it?), skipped: {line[:60]!r}{'…' if len(line) > 60 else ''}")
                break
            raise ResultsError(f"{path}:{number}: not valid JSON ({exc})") from None
    return entries


def _row(entry: Any, where: str, index: int | None, known: list[str]) -> dict[str, Any]:
    """One result as a row; ``where``: its file (and line, for JSON lines), for the messages;
    ``index``: its position in a JSON file's list."""
    if not isinstance(entry, dict):
        raise ResultsError(f"{where}: " + ("not a JSON object" if index is None
                                           else f"benchmark #{index} is not an object"))
    # Case fields added since a file was written read as their defaults (what the run used).
    extra = {**CASE_DEFAULTS, **(entry.get("extra_info") or {})}
    missing = [c for c in ("case_id", *CASE_FIELDS) if c not in extra]
    if missing:
        name = entry.get("name", f"#{index}")
        raise ResultsError(
            f"{where}: benchmark {name} lacks the case fields {', '.join(missing)}"
            " (not written by blitzbench?)"
        )
    row: dict[str, Any] = {c: extra.get(c) for c in known}
    row.update({k: v for k, v in extra.items() if k not in row})
    stats = entry.get("stats") or {}
    lacking = [k for k in REQUIRED_STATS if stats and k not in stats]
    if lacking:
        raise ResultsError(
            f"{where}: benchmark {extra['case_id']} lacks the statistics {', '.join(lacking)}"
            f" (expected pytest-benchmark stats: {', '.join(STAT_COLUMNS)})"
        )
    for key, column in STAT_COLUMNS.items():
        value = stats.get(key)
        row[column] = np.nan if value is None else value
    row["times_s"] = list(stats.get("data") or [])
    row["status"] = row["status"] or (Status.OK if stats else Status.ERROR).value
    return row
