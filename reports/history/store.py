"""The history of runs: every finished run's cases in one SQLite file.

Two tables. ``case_runs``: one row per (run, case) with the case fields as columns (a new
axis is a new column, added on the next append), how the case ended, the raw round times
(JSON), the run's environment (JSON) and git commit. ``figures``: one row per (run, case,
figure) with the figure's number (``value``) or text (``text``; lists as JSON), so a newly
declared figure needs no schema change. Files written before the figures table existed kept
every figure as a column of ``case_runs``; they are read as they are (their columns are the
figures of their rows) and a later append adds the figures table beside them: migrated on
read, never rewritten. SQLite because it is in the standard
library and safe for several writers: each run is appended in one ``BEGIN IMMEDIATE``
transaction and a second writer waits for the first (busy timeout), so two runs finishing
at the same time both land. The default rollback journal, not write-ahead logging: it
leaves no -wal/-shm files beside the history and also works on network file systems.
A file that is not a blitzbench history (or is damaged) is reported and never written to.
A ``postgresql://`` location keeps the same tables on a server that several machines share
(``postgres.py``); everything here but the SQLite file handling serves both.
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

from bench.schema.case import CASE_DEFAULTS
from bench.schema.files import DEFAULT_RESULTS_DIR, HISTORY_DB

from ..environment import read_environment
from ..load import load
from ..run.tables import matrix_order
from ..schema import View, get
from ..stats import derive
from . import postgres
from .layout import COLUMNS, FIGURES, TABLE, HistoryError, free_name

DEFAULT_NAME = HISTORY_DB
BUSY_TIMEOUT_S = 60.0
SQLITE_HEADER = b"SQLite format 3\x00"
# Per row, from its run's environment: what kind of run and how long pytest-benchmark timed
# each case. Shifts are marked only between runs that agree on both.
RUN_KIND, MAX_TIME, DEFAULT_KIND = "run_kind", "benchmark_max_time", "bench"

FIGURES_SCHEMA = (f"CREATE TABLE IF NOT EXISTS {FIGURES} (run TEXT NOT NULL, case_id TEXT NOT NULL, "
                  "name TEXT NOT NULL, value REAL, text TEXT, PRIMARY KEY (run, case_id, name))")


def locate(spec: str | Path) -> Path:
    """The file behind a ``--history-db`` value: a path, ``sqlite:///PATH`` or ``file:PATH``."""
    text = str(spec)
    if text.startswith("sqlite:///"):
        return Path(text.removeprefix("sqlite:///"))  # sqlite:////abs/x -> /abs/x
    if text.startswith("file:"):
        return Path(text.removeprefix("file:").removeprefix("//"))
    if "://" in text:
        raise HistoryError(f"unsupported history location {postgres.masked(text)!r}; valid forms: a file path, "
                           "sqlite:///PATH or file:PATH (an SQLite file), postgresql://USER@HOST[:PORT]/DB "
                           "(a PostgreSQL server)")
    return Path(text)


def describe(spec: str | Path) -> str:
    """The history as messages and pages name it: its file, or its URL without the password."""
    return postgres.masked(str(spec)) if postgres.is_server(spec) else str(locate(spec))


# --- opening safely --------------------------------------------------------------------


def check(db: Path | str, write: bool = True) -> Path | str:
    """The history of ``db``, once it is known writable: a file that is not a blitzbench
    history is refused untouched; otherwise the file is opened for writing (created, with the
    schema, where absent), so that a run learns before measuring that it could not append.
    A server is connected to and its tables created where absent. Raises ``HistoryError``
    naming the path (or the URL, password masked). ``write=False`` only reads: what can be
    refused without creating, writing or connecting to anything (a run's first, quick check)."""
    if postgres.is_server(db):
        return postgres.check(str(db)) if write else db
    path = locate(db)
    _check(path)
    if not write:
        return path
    try:
        with _connect(path) as conn:
            conn.execute("BEGIN IMMEDIATE")  # takes the write lock: a read-only file fails here
            try:
                _ensure_schema(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"{path}: the history cannot be written ({exc}); pass a writable "
                           f"--history-db, such as {DEFAULT_RESULTS_DIR}/{DEFAULT_NAME}") from None
    return path


def _check(path: Path) -> None:
    """Refuse, without writing, a file that is not a readable blitzbench history."""
    if path.is_dir():
        raise HistoryError(f"{path}: is a folder; the history is a file such as {DEFAULT_RESULTS_DIR}/{DEFAULT_NAME}")
    if not path.exists() or path.stat().st_size == 0:
        return
    untouched = "it was left untouched; move it away or pass another --history-db"
    with path.open("rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
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
    """Create the tables, or add what a newer version stores to an older file: a new case
    field's column, the figures table beside a file that kept figures as columns."""
    spec = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({spec}, PRIMARY KEY (run, case_id))")
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")}
    for name, kind in COLUMNS.items():
        if name not in existing:
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind.replace(' NOT NULL', '')}")
    conn.execute(FIGURES_SCHEMA)


# --- writing ---------------------------------------------------------------------------


def append_run(run_dir: Path | str, db: Path | str, environment: dict[str, Any] | None = None) -> int:
    """Append (or replace) one run's cases in the history; returns the number of rows.

    One transaction: a reader sees all of a run or none of it, and a second writer waits.
    """
    run_dir = Path(run_dir)
    df = load(run_dir)
    env = read_environment(run_dir) if environment is None else environment
    records = _records(df, env, run_dir)
    if postgres.is_server(db):
        postgres.append(str(db), run_dir.name, str(run_dir.resolve()), records)
        return len(records)
    names = list(COLUMNS)
    sql = (f"INSERT OR REPLACE INTO {TABLE} ({', '.join(names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")
    figure_sql = f"INSERT INTO {FIGURES} (run, case_id, name, value, text) VALUES (?, ?, ?, ?, ?)"
    path = locate(db)
    try:
        with _connect(path) as conn:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: waits, never deadlocks
            try:
                _ensure_schema(conn)
                run = _run_name(conn, run_dir)
                conn.executemany(sql, [[run if n == "run" else r.get(n) for n in names] for r in records])
                conn.executemany(f"DELETE FROM {FIGURES} WHERE run = ? AND case_id = ?",
                                 [(run, r["case_id"]) for r in records])
                conn.executemany(figure_sql, [(run, r["case_id"], *f) for r in records for f in r["figures"]])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:  # locked past the timeout, disk full, read-only folder
        raise HistoryError(f"{path}: could not append run {run_dir.name} ({exc})") from None
    return len(records)


def _run_name(conn: sqlite3.Connection, run_dir: Path) -> str:
    """The folder's name, or NAME-1… where another folder of that name is in the history
    (``layout.free_name``). Appending the same folder again replaces its rows."""
    taken = dict(conn.execute(f"SELECT DISTINCT run, run_dir FROM {TABLE} WHERE run = ? OR run LIKE ?",
                              (run_dir.name, f"{run_dir.name}-%")).fetchall())
    return free_name(run_dir.name, taken, str(run_dir.resolve()))


def _records(df: pd.DataFrame, env: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    now = time.time()
    environment = json.dumps(env, sort_keys=True, default=str)
    records = []
    stored = [c for c in df.columns if c not in COLUMNS and c not in ("times_s", "run", "source")
              and (get(c) is None or get(c).shown_in(View.HISTORY))]
    for _, row in df.iterrows():
        record = {c: _plain(row.get(c)) for c in COLUMNS if c in row.index}
        record.update(
            figures=[f for f in (_figure(c, row[c]) for c in stored) if f is not None],
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


def _figure(name: str, value: Any) -> tuple[str, float | None, str | None] | None:
    """``(name, value, text)`` of one figure, None when the row has none."""
    value = _plain(value)
    if value is None:
        return None
    return (name, float(value), None) if isinstance(value, (int, float)) else (name, None, value)


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
    """Every stored (run, case) row in run order, a column per figure; ``times_s`` as lists of
    seconds. Figures come from the figures table and, in a file written before it, from the
    columns of ``case_runs`` (the figures table wins where a row has both)."""
    df, long = postgres.read(str(db)) if postgres.is_server(db) else _read_file(locate(db))
    path = describe(db)
    if df is None or df.empty:
        raise HistoryError(f"{path}: the history holds no run yet")
    if long is not None and not long.empty:
        df = _with_figures(df, long)
    df["times_s"] = [json.loads(t) if t else [] for t in df["times_s"]]
    # Case fields added since a row was stored read as their defaults: what that run used.
    for name, default in CASE_DEFAULTS.items():
        column = df[name].astype(object) if name in df else pd.Series(None, index=df.index, dtype=object)
        df[name] = column.where(column.notna(), default)
    settings = [run_settings(_environment(e)) for e in df.get("environment", pd.Series(None, index=df.index))]
    df[RUN_KIND] = [kind for kind, _ in settings]
    df[MAX_TIME] = pd.to_numeric(pd.Series([t for _, t in settings], index=df.index, dtype=object))
    # Runs in the order they started (a --run-dir folder need not be named by its time).
    return order_runs(derive(df))


def _read_file(path: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``(case_runs, figures)`` of an SQLite history file (None for a table it lacks)."""
    if not path.is_file():
        raise HistoryError(f"{path}: no history yet; every `nox -s bench` run appends to "
                           f"{DEFAULT_RESULTS_DIR}/{DEFAULT_NAME} (or the --history-db it is given)")
    _check(path)
    try:
        with _read_only(path) as conn:
            names = _tables(conn)
            df = pd.read_sql_query(f"SELECT * FROM {TABLE}", conn) if TABLE in names else None
            long = pd.read_sql_query(f"SELECT * FROM {FIGURES}", conn) if FIGURES in names else None
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise HistoryError(f"{path}: cannot read the history ({exc})") from None
    return df, long


def _environment(text: Any) -> dict[str, Any]:
    try:
        env = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}
    return env if isinstance(env, dict) else {}


def run_settings(env: dict[str, Any]) -> tuple[str, float | None]:
    """``(run_kind, benchmark_max_time)`` of a run, from its environment; a run recorded before
    they were (contract: it counts as "bench") is read from its command line where it has one."""
    argv = str(env.get("argv") or "").split()
    max_time = env.get("benchmark_max_time")
    if max_time is None:
        for i, arg in enumerate(argv):
            value = arg.partition("=")[2] if arg.startswith("--benchmark-max-time=") else (
                argv[i + 1] if arg == "--benchmark-max-time" and i + 1 < len(argv) else None)
            try:
                max_time = float(value) if value is not None else max_time
            except ValueError:
                pass
    kind = env.get("run_kind") or DEFAULT_KIND
    return str(kind), None if max_time is None else float(max_time)


def _with_figures(df: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """``case_runs`` rows with a column per stored figure (numbers, or text where stored so)."""
    long = long.assign(cell=long["text"].where(long["text"].notna(), long["value"]))
    wide = long.pivot(index=["run", "case_id"], columns="name", values="cell")
    df = df.set_index(["run", "case_id"])
    for name in wide.columns:
        figure = get(name)
        column = wide[name].reindex(df.index)
        if figure is not None and figure.kind.numeric:
            column = pd.to_numeric(column)
        elif figure is None and long.loc[long["name"] == name, "text"].isna().all():
            column = pd.to_numeric(column)  # a plug-in's number
        df[name] = column.combine_first(df[name]) if name in df else column
    return df.reset_index()


def order_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Rows by when their run started, then in matrix order."""
    return matrix_order(df, first=["started_at", "run"])
