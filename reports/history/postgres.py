"""The history on a PostgreSQL server (``--history-db postgresql://user@host/db``), shared by
every machine that runs a shard, through SQLAlchemy with psycopg 3 as the driver.

The same two tables as the SQLite file (``layout.py``), created on first use. Writers take a
transaction-level advisory lock first, as SQLite's ``BEGIN IMMEDIATE`` takes the file's write
lock: each run is appended in one transaction, a second writer waits for the first, so runs
appended at the same time all land (and two of the same name become NAME and NAME-1).
SQLAlchemy and psycopg are imported only here and only when a server is named, so readers of
an SQLite history do without them. Messages name the URL with its password masked.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import pandas as pd

from .layout import COLUMNS, FIGURE_COLUMNS, FIGURES, TABLE, HistoryError, free_name

SCHEMES = ("postgresql", "postgres")
DRIVER = "postgresql+psycopg"  # SQLAlchemy's plain postgresql:// means psycopg2
LOCK_KEY = 0x626C69747A  # "blitz": the one advisory lock every writer of a history takes
CONNECT_TIMEOUT_S = 10
INSTALL = "pip install 'sqlalchemy>=2.0' 'psycopg[binary]>=3.1'"
_TYPES = {"REAL": "DOUBLE PRECISION"}  # SQLite's REAL is 8 bytes; PostgreSQL's is 4


def is_server(spec: object) -> bool:
    """Whether a ``--history-db`` value names a PostgreSQL server rather than an SQLite file."""
    scheme = str(spec).partition("://")[0] if "://" in str(spec) else ""
    return scheme.split("+")[0] in SCHEMES


def masked(url: str) -> str:
    """The URL as messages show it: any password replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(url))


def _engine(url: str) -> Any:
    try:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
        from sqlalchemy.pool import NullPool
    except ImportError:
        raise HistoryError(f"{masked(url)}: a PostgreSQL history needs SQLAlchemy and psycopg, "
                           f"not installed here ({INSTALL})") from None
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise HistoryError(f"{masked(url)}: not a database URL ({exc}); expected "
                           "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE") from None
    if parsed.drivername in SCHEMES:
        parsed = parsed.set(drivername=DRIVER)
    try:
        # NullPool: a run connects twice (check, append); no connection is held between.
        return create_engine(parsed, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    except (ArgumentError, ImportError) as exc:
        raise HistoryError(f"{masked(url)}: cannot use this URL ({exc}); expected "
                           f"postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE ({INSTALL})") from None


@contextmanager
def _connection(url: str, write: bool) -> Iterator[Any]:
    """A connection in one transaction (committed at the end, rolled back on error); writing,
    after the writers' lock and with the tables in place. Database errors become
    ``HistoryError`` naming the URL."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    engine = _engine(url)
    try:
        connection = engine.connect()
    except DBAPIError as exc:
        raise HistoryError(f"{masked(url)}: the history database cannot be reached ({_reason(exc)}); "
                           "check the URL and that the server runs and accepts this user, or pass "
                           "another --history-db") from None
    try:
        with connection, connection.begin():
            if write:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                _ensure_schema(connection)
            yield connection
    except SQLAlchemyError as exc:
        action = "written" if write else "read"
        raise HistoryError(f"{masked(url)}: the history cannot be {action} ({_reason(exc)})") from None
    finally:
        engine.dispose()


def _reason(exc: Exception) -> str:
    """The driver's own first line (the server's message), without SQLAlchemy's wrapping."""
    original = getattr(exc, "orig", None) or exc
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


def _existing(connection: Any, table: str) -> set[str]:
    from sqlalchemy import text

    rows = connection.execute(text("SELECT column_name FROM information_schema.columns "
                                   "WHERE table_schema = current_schema() AND table_name = :t"), {"t": table})
    return {row[0] for row in rows}


def _ensure_schema(connection: Any) -> None:
    """Create the tables, or add a newer version's columns; creating only what is absent, so a
    user allowed to write rows but not to create tables can append to a history set up for it."""
    from sqlalchemy import text

    for table, columns in ((TABLE, COLUMNS), (FIGURES, FIGURE_COLUMNS)):
        existing = _existing(connection, table)
        key = '"run", "case_id"' + (', "name"' if table == FIGURES else "")
        if not existing:
            spec = ", ".join(f'"{name}" {_type(kind)}' for name, kind in columns.items())
            connection.execute(text(f"CREATE TABLE {table} ({spec}, PRIMARY KEY ({key}))"))
            continue
        for name, kind in columns.items():
            if name not in existing:
                connection.execute(text(f'ALTER TABLE {table} ADD COLUMN "{name}" '
                                        f"{_type(kind).replace(' NOT NULL', '')}"))
    for table in (TABLE, FIGURES):
        allowed = connection.execute(text("SELECT has_table_privilege(:t, 'INSERT') AND "
                                          "has_table_privilege(:t, 'DELETE')"), {"t": table}).scalar()
        if not allowed:
            raise HistoryError(f"no INSERT or DELETE privilege on table {table!r}")


def _type(kind: str) -> str:
    first, _, rest = kind.partition(" ")
    return " ".join(filter(None, (_TYPES.get(first, first), rest)))


def check(url: str) -> str:
    """Connect, create the tables where absent and make sure rows can be written; raises
    ``HistoryError`` naming the URL (password masked)."""
    try:
        with _connection(url, write=True):
            pass
    except HistoryError as exc:
        raise HistoryError(_named(url, exc)) from None
    return masked(url)


def _named(url: str, exc: HistoryError) -> str:
    text = str(exc)
    return text if text.startswith(masked(url)) else f"{masked(url)}: the history cannot be written ({text})"


def append(url: str, run_dir_name: str, folder: str, records: Sequence[dict[str, Any]]) -> str:
    """Append one run's records in one transaction; returns the name the run got."""
    from sqlalchemy import text

    names = list(COLUMNS)
    quoted = ", ".join(f'"{n}"' for n in names)
    insert = text(f"INSERT INTO {TABLE} ({quoted}) VALUES ({', '.join(f':{n}' for n in names)})")
    figure_insert = text(f'INSERT INTO {FIGURES} ("run", "case_id", "name", "value", "text") '
                         "VALUES (:run, :case_id, :name, :value, :text)")
    try:
        with _connection(url, write=True) as connection:
            taken = dict(connection.execute(
                text(f'SELECT DISTINCT "run", "run_dir" FROM {TABLE} WHERE "run" = :name OR "run" LIKE :like'),
                {"name": run_dir_name, "like": f"{run_dir_name}-%"}).all())
            run = free_name(run_dir_name, taken, folder)
            keys = [{"run": run, "case_id": r["case_id"]} for r in records]
            for table in (TABLE, FIGURES):  # appending a folder again replaces its rows
                connection.execute(text(f'DELETE FROM {table} WHERE "run" = :run AND "case_id" = :case_id'), keys)
            connection.execute(insert, [{n: run if n == "run" else r.get(n) for n in names} for r in records])
            figures = [dict(zip(("run", "case_id", "name", "value", "text"), (run, r["case_id"], *f)))
                       for r in records for f in r["figures"]]
            if figures:
                connection.execute(figure_insert, figures)
    except HistoryError as exc:
        raise HistoryError(_named(url, exc)) from None
    return run


def read(url: str) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``(case_runs, figures)`` as stored (None for a table not created yet)."""
    from sqlalchemy import text

    with _connection(url, write=False) as connection:
        frames = []
        for table in (TABLE, FIGURES):
            present = bool(_existing(connection, table))
            frames.append(pd.read_sql_query(text(f"SELECT * FROM {table}"), connection) if present else None)
    return frames[0], frames[1]
