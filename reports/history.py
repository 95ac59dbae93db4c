"""The history of runs: every finished run's cases in one SQLite file, and what changed.

One table, one row per (run, case): the case fields, the statistics, the raw round times
(JSON), the run's environment (JSON) and git commit. SQLite because it is in the standard
library and safe for several writers: each run is appended in one ``BEGIN IMMEDIATE``
transaction and a second writer waits for the first (busy timeout), so two runs finishing
at the same time both land. The default rollback journal, not write-ahead logging: it
leaves no -wal/-shm files beside the history and also works on network file systems.
A file that is not a blitzbench history (or is damaged) is reported and never written to.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .environment import read_environment
from . import tables
from .load import ResultsError, load
from .stats import ci_columns, significant_change

DEFAULT_NAME = "history.sqlite"
TABLE = "case_runs"
BUSY_TIMEOUT_S = 60.0
MIN_CHANGE = 0.05  # a median moving less than 5% is not reported, however certain
_SQLITE_HEADER = b"SQLite format 3\x00"

# Figures stored as numbers; the later ones (confidence interval, memory, FLOPs, compile
# graphs) come from newer runs and stay NULL for runs without them.
NUMBER_COLUMNS = [
    "median_s", "mean_s", "min_s", "max_s", "stddev_s", "iqr_s", "q1_s", "q3_s", "total_s",
    "rounds", "iterations", "samples_per_s", "compile_time_s", "first_call_s", "param_count",
    "num_threads", "load_avg_1m", "median_ci_low_s", "median_ci_high_s", "iqr_rel",
    "ci_rel_width", "noisy", "mem_param_bytes", "mem_held_bytes", "mem_peak_bytes",
    "cuda_max_allocated_bytes", "cuda_max_reserved_bytes", "flops", "flops_per_s",
    "peak_flops_per_s", "peak_share", "graph_count", "graph_break_count", "recompiles",
    "trace_bytes", "op_calls_per_step", "kernel_launches_per_step",
]
# Lists (graph break and recompile reasons, round times) and objects are stored as JSON.
TEXT_COLUMNS = ["phase", "model", "optimizer", "device", "mode", "dtype", "status", "error",
                "invalid_reason", "compile_backend", "peak_source", "graph_breaks",
                "recompile_reasons", "torch_version", "git_commit", "started_at", "environment",
                "times_s", "run_dir", "trace_dir"]
COLUMNS = {"run": "TEXT NOT NULL", "case_id": "TEXT NOT NULL", "batch_size": "INTEGER",
           **{c: "TEXT" for c in TEXT_COLUMNS}, **{c: "REAL" for c in NUMBER_COLUMNS},
           "recorded_at": "REAL"}


class HistoryError(ResultsError):
    """The history file cannot be used; the message names it and what to do."""


def locate(spec: str | Path) -> Path:
    """The file behind a ``--history-db`` value: a path, ``sqlite:///PATH`` or ``file:PATH``."""
    text = str(spec)
    if text.startswith("sqlite:///"):
        return Path(text.removeprefix("sqlite:///"))  # sqlite:////abs/x -> /abs/x
    if text.startswith("file:"):
        return Path(text.removeprefix("file:").removeprefix("//"))
    if "://" in text:
        raise HistoryError(f"unsupported history location {text!r}; valid forms: a file path, "
                           "sqlite:///PATH or file:PATH (the history is an SQLite file)")
    return Path(text)


# --- opening safely --------------------------------------------------------------------


def check(db: Path | str) -> Path:
    """The history file of ``db``, once it is known usable (absent counts: it will be created)."""
    path = locate(db)
    _check(path)
    return path


def _check(path: Path) -> None:
    """Refuse, without writing, a file that is not a readable blitzbench history."""
    if path.is_dir():
        raise HistoryError(f"{path}: is a folder; the history is a file such as results/{DEFAULT_NAME}")
    if not path.exists() or path.stat().st_size == 0:
        return
    untouched = "it was left untouched; move it away or pass another --history-db"
    with path.open("rb") as fh:
        header = fh.read(len(_SQLITE_HEADER))
    if header != _SQLITE_HEADER:
        raise HistoryError(f"{path}: not an SQLite database (corrupt or another kind of file); {untouched}")
    try:
        with _read_only(path) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path}: damaged SQLite database ({exc}); {untouched}") from None
    if verdict != "ok":
        raise HistoryError(f"{path}: damaged SQLite database ({verdict}); {untouched}")
    if tables and TABLE not in tables:
        raise HistoryError(f"{path}: an SQLite database without a {TABLE!r} table "
                           f"(tables: {', '.join(sorted(tables))}), not a blitzbench history; {untouched}")


def _read_only(path: Path) -> closing[sqlite3.Connection]:
    # mode=ro: SQLite itself guarantees that nothing is written to a file being inspected.
    return closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S))


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    _check(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are begun and ended here, explicitly.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the table, or add the columns a newer version stores to an older table."""
    spec = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({spec}, PRIMARY KEY (run, case_id))")
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")}
    for name, kind in COLUMNS.items():
        if name not in existing:
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind.replace(' NOT NULL', '')}")


# --- writing ---------------------------------------------------------------------------


def append_run(run_dir: Path | str, db: Path | str, environment: dict[str, Any] | None = None) -> int:
    """Append (or replace) one run's cases in the history; returns the number of rows.

    One transaction: a reader sees all of a run or none of it, and a second writer waits.
    """
    run_dir = Path(run_dir)
    df = load(run_dir)
    env = read_environment(run_dir) if environment is None else environment
    records = _records(df, env, run_dir)
    names = list(COLUMNS)
    sql = (f"INSERT OR REPLACE INTO {TABLE} ({', '.join(names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")
    path = locate(db)
    try:
        with _connect(path) as conn:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: waits, never deadlocks
            try:
                _ensure_schema(conn)
                run = _run_name(conn, run_dir)
                conn.executemany(sql, [[run if n == "run" else r.get(n) for n in names] for r in records])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:  # locked past the timeout, disk full, read-only folder
        raise HistoryError(f"{path}: could not append run {run_dir.name} ({exc})") from None
    return len(records)


def _run_name(conn: sqlite3.Connection, run_dir: Path) -> str:
    """The folder's name, unless another folder of that name is already in the history
    (two results folders, one history): then ``NAME-1``, ``NAME-2``…, as new_run_dir names
    runs started in the same second. Appending the same folder again replaces its rows."""
    folder = str(run_dir.resolve())
    taken = dict(conn.execute(f"SELECT DISTINCT run, run_dir FROM {TABLE} WHERE run = ? OR run LIKE ?",
                              (run_dir.name, f"{run_dir.name}-%")).fetchall())
    name, suffix = run_dir.name, 0
    while name in taken and taken[name] != folder:
        suffix += 1
        name = f"{run_dir.name}-{suffix}"
    return name


def _records(df: pd.DataFrame, env: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    now = time.time()
    environment = json.dumps(env, sort_keys=True, default=str)
    records = []
    for _, row in df.iterrows():
        record = {c: _plain(row.get(c)) for c in COLUMNS if c in row.index}
        record.update(
            batch_size=_plain(row["batch_size"]),
            times_s=json.dumps([float(t) for t in row["times_s"]]),
            git_commit=env.get("git_commit"), started_at=_started_at(env, run_dir, now),
            environment=environment,
            run_dir=str(run_dir.resolve()), recorded_at=now,
        )
        records.append(record)
    return records


def _started_at(env: dict[str, Any], run_dir: Path, now: float) -> str:
    """When the run started, as ISO UTC text (sorts as time): the environment's record,
    else the run folder's timestamp name, else the time of appending."""
    if env.get("started_at"):
        return str(env["started_at"])
    try:
        stamp = time.strptime(run_dir.name[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        stamp = time.gmtime(now)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)


def _plain(value: Any) -> Any:
    """A value SQLite stores: Python numbers and strings, None for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return value if isinstance(value, (int, float, str)) else str(value)


# --- reading and comparing -------------------------------------------------------------


def load_history(db: Path | str) -> pd.DataFrame:
    """Every stored (run, case) row in run order; ``times_s`` as lists of seconds."""
    path = locate(db)
    if not path.is_file():
        raise HistoryError(f"{path}: no history yet; every `nox -s bench` run appends to "
                           f"results/{DEFAULT_NAME} (or the --history-db it is given)")
    _check(path)
    try:
        with _read_only(path) as conn:
            df = pd.read_sql_query(f"SELECT * FROM {TABLE}", conn) if TABLE in _tables(conn) else None
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise HistoryError(f"{path}: cannot read the history ({exc})") from None
    if df is None or df.empty:
        raise HistoryError(f"{path}: the history holds no run yet")
    df["times_s"] = [json.loads(t) if t else [] for t in df["times_s"]]
    # Runs in the order they started (a --run-dir folder need not be named by its time).
    return tables.matrix_order(df, first=["started_at", "run"])


def mark_changes(history: pd.DataFrame, min_change: float = MIN_CHANGE) -> pd.DataFrame:
    """Measured rows with their 95% CI and ``change``: ``"slower"``/``"faster"`` where the
    median moved significantly since the case's previous measured run, else ``""``."""
    rows = history[history["status"] == "ok"].reset_index(drop=True)
    rows = pd.concat([rows, ci_columns(rows)], axis="columns")
    rows["change"] = ""
    rows["change_rel"] = math.nan
    for _, group in rows.groupby("case_id", sort=False):
        previous = None
        for index, row in group.iterrows():
            current = (row["median_s"], row["ci_low_s"], row["ci_high_s"])
            if previous is not None:
                rows.loc[index, "change_rel"] = current[0] / previous[0] - 1
                if significant_change(previous, current, min_change):
                    rows.loc[index, "change"] = "slower" if current[0] > previous[0] else "faster"
            previous = current
    return rows


def runs_table(history: pd.DataFrame) -> pd.DataFrame:
    """One row per run: when, git commit, torch, how many cases."""
    def first(values: pd.Series) -> object:
        values = values.dropna()
        return values.iloc[0] if len(values) else None

    grouped = history.groupby("run", sort=False)  # in the order the runs started
    return pd.DataFrame({
        "cases": grouped["case_id"].count(),
        "measured": grouped["status"].agg(lambda s: int((s == "ok").sum())),
        "git_commit": grouped["git_commit"].agg(first),
        "torch_version": grouped["torch_version"].agg(first),
    }).reset_index()



def changes_table(marked: pd.DataFrame) -> pd.DataFrame:
    """The significant changes: run, case, median before and after, relative change."""
    rows = []
    for _, group in marked.groupby("case_id", sort=False):
        before = group["median_s"].shift(1)
        hit = group["change"] != ""
        for (_, row), prev in zip(group[hit].iterrows(), before[hit]):
            rows.append({"run": row["run"], "case_id": row["case_id"], "before_s": prev,
                         "after_s": row["median_s"], "change": row["change_rel"]})
    return pd.DataFrame(rows, columns=["run", "case_id", "before_s", "after_s", "change"])


def latest_table(marked: pd.DataFrame) -> pd.DataFrame:
    """Per case: runs measured, the latest median with its CI, the change since the run before."""
    grouped = marked.groupby("case_id", sort=False)
    last = grouped.tail(1).set_index("case_id")
    return pd.DataFrame({
        "runs": grouped["run"].count(),
        "median_s": last["median_s"], "ci_low_s": last["ci_low_s"], "ci_high_s": last["ci_high_s"],
        "change": last["change_rel"], "flag": last["change"],
    }).reset_index()


def write_history_report(db: Path | str, out_dir: Path | str | None = None,
                         min_change: float = MIN_CHANGE) -> dict[str, Path]:
    """Write ``history.html`` and ``history.md`` (beside the history file by default)."""
    from . import html, render

    path = locate(db)
    history = load_history(path)
    marked = mark_changes(history, min_change)
    if marked.empty:
        raise HistoryError(f"{path}: no measured case in the history yet")
    out = Path(out_dir) if out_dir is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)
    changes, latest, runs = changes_table(marked), latest_table(marked), runs_table(history)
    title = f"blitzbench history — {path.name}"
    md_path, html_path = out / "history.md", out / "history.html"
    md_path.write_text(render.history_markdown(title, changes, latest, runs, min_change), encoding="utf-8")
    html_path.write_text(html.history_html(title, marked, changes, latest, runs, min_change), encoding="utf-8")
    return {"markdown": md_path, "html": html_path}
