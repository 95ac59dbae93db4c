"""The history on a real PostgreSQL server (``--history-db postgresql://…``): the server that
``BLITZBENCH_TEST_POSTGRES`` names (``.ci/run`` starts one), else a throwaway one started here
from Debian's ``postgresql`` binaries; without either the tests skip and say why."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from reports.history import HistoryError, append_run, check, load_history, write_history_report
from tests.helpers import run_bench
from tests.test_history import SMOKE, append_concurrently, planted_runs

URL_VARIABLE = "BLITZBENCH_TEST_POSTGRES"
UNREACHABLE = "postgresql://bench:secret@127.0.0.1:1/blitzbench"


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: Debian keeps them under /usr/lib/postgresql/VERSION/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def throwaway_server(bin_dir: Path) -> Iterator[str]:
    """A PostgreSQL server in a temporary folder, trusting local connections, stopped and
    removed afterwards. initdb refuses to run as root: as root, the server runs as the
    ``postgres`` user (Debian's package creates it)."""
    root = Path(tempfile.mkdtemp(prefix="blitzbench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no 'postgres' user to run a PostgreSQL server as "
                        f"(initdb refuses root); set {URL_VARIABLE}=postgresql://… to use a running server")
        if shutil.which("runuser") is None:
            shutil.rmtree(root)
            pytest.skip("running as root without runuser to start PostgreSQL as the postgres user; "
                        f"set {URL_VARIABLE}=postgresql://…")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), root / "data"
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*pg_ctl, "-l", str(root / "log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (root / "log").read_text(errors="replace") if (root / "log").is_file() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a throwaway PostgreSQL server with {bin_dir}: {exc} "
                    f"{getattr(exc, 'stderr', b'') or b''!r} {log[-500:]}")
    try:
        yield f"postgresql://bench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A running PostgreSQL server's URL (with a user allowed to create schemas)."""
    pytest.importorskip("sqlalchemy", reason="SQLAlchemy is not installed (pip install 'sqlalchemy>=2.0')")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]>=3.1')")
    url = os.environ.get(URL_VARIABLE)
    if url:  # named on purpose (.ci/run started it): unreachable is a failure, not a skip
        yield url
        return
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL server: {URL_VARIABLE} is not set and initdb was found neither under "
                    "/usr/lib/postgresql/*/bin nor on PATH (apt-get install postgresql)")
    with throwaway_server(bin_dir) as url:
        yield url


@pytest.fixture
def history_url(server: str) -> Iterator[str]:
    """The server's URL with a fresh schema of its own first on the search path: each test
    starts from an empty history, and none is left behind."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"blitzbench_test_{uuid.uuid4().hex[:12]}"
    base = make_url(server).set(drivername="postgresql+psycopg")
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.mark.slow
def test_a_server_history_reads_back_as_the_sqlite_file_does(history_url, tmp_path):
    runs = planted_runs(tmp_path / "runs")
    db = tmp_path / "history.sqlite"
    check(history_url)  # creates the tables
    for run in runs:
        assert append_run(run, history_url) == append_run(run, db) == len(SMOKE)
    append_run(runs[0], history_url)  # the same folder again replaces its rows
    server, local = load_history(history_url), load_history(db)
    assert len(server) == len(local) == len(runs) * len(SMOKE)
    assert set(server.columns) == set(local.columns)
    for column in local.columns.drop("recorded_at"):
        assert server[column].map(repr).tolist() == local[column].map(repr).tolist(), column
    pages = write_history_report(history_url, tmp_path / "pages")
    assert "4 runs, 8 cases, 2 shifts" in pages["markdown"].read_text(encoding="utf-8")


@pytest.mark.slow
def test_concurrent_writers_to_a_server_all_land(history_url, tmp_path):
    append_concurrently(history_url, tmp_path, 10)


def test_an_unreachable_server_is_named_with_its_password_masked():
    with pytest.raises(HistoryError) as raised:
        check(UNREACHABLE)
    message = str(raised.value)
    assert message.startswith("postgresql://bench:***@127.0.0.1:1/blitzbench: ") and "secret" not in message


@pytest.mark.slow
def test_bench_refuses_an_unreachable_server_before_measuring(tmp_path):
    results = tmp_path / "results"
    proc = run_bench(results, "--preset", "smoke", "--models", "fashion_mlp", "--history-db", UNREACHABLE).proc
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "postgresql://bench:***@127.0.0.1:1/blitzbench" in proc.stderr and "secret" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not results.exists() or not any(p.is_dir() for p in results.iterdir())  # nothing measured
