"""The history: every finished run lands in SQLite; changes between runs are marked."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from bench.matrix import select as matrix
from reports.__main__ import main
from reports.history import (HistoryError, append_run, check, load_history, locate, mark_shifts,
                             write_history_report)
from reports.stats import median_ci, shifted
from tests.browser import open_page
from tests.helpers import ROOT, run_bench
from tests.synthetic import entry, rounds, write_run

SMOKE = matrix.select("smoke")
SLOWED, FASTER, STEADY = SMOKE[0], SMOKE[1], SMOKE[2]


def run_name(i: int) -> str:
    return f"20261122-{10 + i:02d}0000"  # named by start time, as the suite names runs


def planted_runs(tmp_path, count: int = 4) -> list:
    """Runs in which SLOWED gets 30% slower from run 2 on and FASTER 20% faster from run 3."""
    runs = []
    for r in range(count):
        entries = []
        for i, case in enumerate(SMOKE):
            median = 1e-3 * (i + 1)
            median *= 1.3 if case == SLOWED and r >= 2 else 1.0
            median *= 0.8 if case == FASTER and r >= 3 else 1.0
            entries.append(entry(case, rounds(median, n=60, spread=0.02, seed=100 * r + i)))
        env = {"git_commit": f"c0ffee{r}", "torch_version": "2.15.0", "gpu_name": "none"}
        runs.append(write_run(tmp_path / run_name(r), entries, environment=env))
    return runs


@pytest.mark.slow
def test_smoke_run_is_appended_to_the_history(smoke_run):
    db = smoke_run.results_dir / "history.sqlite"
    assert f"history: {db} (+8 cases)" in smoke_run.proc.stdout
    history = load_history(db)
    assert set(history["run"]) == {smoke_run.run_dir.name}
    assert sorted(history["case_id"]) == sorted(c.id for c in SMOKE)
    assert (history["status"] == "ok").all() and (history["median_s"] > 0).all()
    assert all(len(t) == n for t, n in zip(history["times_s"], history["rounds"]))
    # The run's environment and git commit come with every row.
    env = json.loads((smoke_run.run_dir / "environment.json").read_text())
    assert env["git_commit"] and set(history["git_commit"]) == {env["git_commit"]}
    assert set(history["started_at"]) == {env["started_at"]}
    assert json.loads(history["environment"].iloc[0])["hostname"] == env["hostname"]


def test_runs_are_ordered_by_when_they_started(tmp_path):
    db = tmp_path / "history.sqlite"
    # --run-dir folders need not be named by time: "b" started first.
    for name, started in (("a", "2026-11-22T12:00:00Z"), ("b", "2026-11-22T11:00:00Z")):
        run = write_run(tmp_path / name, [entry(SLOWED, rounds(1e-3))], environment={"started_at": started})
        append_run(run, db)
    assert list(load_history(db)["run"]) == ["b", "a"]


def test_runs_append_and_planted_shifts_are_marked(tmp_path):
    db = tmp_path / "history.sqlite"
    runs = planted_runs(tmp_path)
    for run in runs:
        assert append_run(run, db) == len(SMOKE)
    append_run(runs[1], db)  # appending a run again replaces it, never duplicates it
    history = load_history(db)
    assert len(history) == len(runs) * len(SMOKE)
    assert list(dict.fromkeys(history["run"])) == [r.name for r in runs]
    stored = history.set_index(["run", "case_id"]).loc[(runs[3].name, SLOWED.id)]
    assert stored["git_commit"] == "c0ffee3" and '"gpu_name": "none"' in stored["environment"]

    marked = mark_shifts(history).set_index(["case_id", "run"])["shift"]
    assert marked[SLOWED.id].to_dict() == {runs[0].name: "", runs[1].name: "", runs[2].name: "slower",
                                           runs[3].name: ""}
    assert marked[FASTER.id][runs[3].name] == "faster"
    assert (marked[FASTER.id].iloc[:3] == "").all()
    unchanged = [c.id for c in SMOKE if c not in (SLOWED, FASTER)]
    assert (marked.loc[unchanged] == "").all()  # noise alone is never marked


def test_a_shift_needs_disjoint_intervals_and_a_real_move():
    base = (1.00, 0.99, 1.01)
    assert shifted(base, (1.10, 1.09, 1.11), 0.05)
    assert shifted(base, (0.90, 0.89, 0.91), 0.05)
    assert not shifted(base, (1.03, 1.02, 1.04), 0.05)  # certain, but under 5%
    assert not shifted(base, (1.10, 1.00, 1.20), 0.05)  # intervals overlap
    times = [float(t) for t in range(1, 101)]
    low, high = median_ci(times)
    assert low < 50.5 < high and high - low < 25
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few rounds for 95%: the whole range


def test_recorded_interval_is_preferred_to_the_raw_rounds():
    # Three rounds give no 95% interval of their own (it is their whole range, which
    # overlaps); newer runs record one, and then it decides.
    history = pd.DataFrame({
        "run": ["a", "b"], "case_id": ["x", "x"], "status": ["ok", "ok"],
        "median_s": [1.0, 1.3], "times_s": [[0.5, 1.0, 1.5], [0.8, 1.3, 1.8]],
    })
    assert list(mark_shifts(history)["shift"]) == ["", ""]
    recorded = history.assign(median_ci_low_s=[0.95, 1.25], median_ci_high_s=[1.05, 1.35])
    assert list(mark_shifts(recorded)["shift"]) == ["", "slower"]


def run_reports(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reports", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def test_history_command_writes_a_page_that_renders(tmp_path):
    db = tmp_path / "history.sqlite"
    for run in planted_runs(tmp_path):
        append_run(run, db)
    proc = run_reports("--history", "--history-db", f"sqlite:///{db}")
    assert proc.returncode == 0, proc.stderr
    markdown = (tmp_path / "history.md").read_text()
    assert "4 runs, 8 cases, 2 shifts" in markdown and "## Cases that changed" in markdown
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {run_name(2)} | {SLOWED.id} "))
    assert 25 < float(line.split("|")[5].strip().rstrip("%")) < 35  # planted: +30%
    with open_page((tmp_path / "history.html").as_uri()) as (page, errors):
        sizes = page.evaluate("Promise.all(Array.from(document.images).map(i => i.decode().then(() => i.naturalWidth)))")
        marked_rows = page.locator("#shifts tbody tr").count()
    assert errors.all == [] and sizes and all(w > 0 for w in sizes)
    assert marked_rows == 2


CONCURRENT_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from reports.history import append_run
    db, go, *runs = sys.argv[1:]
    while not Path(go).exists():
        time.sleep(0.001)
    for run in runs:
        append_run(run, db)
""")


def append_concurrently(db: str, tmp_path, count: int) -> None:
    """Two machines, two results folders, one shared history: ``count`` runs each, appended
    at the same moment, under the same folder names (both started in the same seconds); then
    every run is in the history, the second of each name as NAME-1."""
    go = tmp_path / "go"
    cases = SMOKE[:4]
    runs = {machine: [write_run(tmp_path / machine / f"20261122-1200{i:02d}",
                                [entry(c, rounds(1e-3, n=500)) for c in cases]) for i in range(count)]
            for machine in ("a", "b")}
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, db, str(go), *map(str, folders)],
                                cwd=ROOT, stderr=subprocess.PIPE, text=True) for folders in runs.values()]
    go.touch()  # both processes start appending at the same moment
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    history = load_history(db)
    assert len(history) == 2 * count * len(cases)
    names = {r.name for r in runs["a"]}
    assert set(history["run"]) == names | {f"{n}-1" for n in names}  # same name: the second gets -1
    assert set(history["run_dir"]) == {str(r.resolve()) for folders in runs.values() for r in folders}
    append_run(runs["b"][0], db)  # appending a folder again replaces its rows, under its name
    assert len(load_history(db)) == 2 * count * len(cases)


def test_concurrent_runs_both_land(tmp_path):
    append_concurrently(str(tmp_path / "history.sqlite"), tmp_path, 20)


def corrupt_files(tmp_path):
    """Files a history path may hold by mistake: garbage, a damaged database, another database."""
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database\n" * 200)
    damaged = tmp_path / "damaged.sqlite"
    append_run(planted_runs(tmp_path / "runs", count=1)[0], damaged)
    data = bytearray(damaged.read_bytes())
    data[100:len(data)] = b"\xff" * (len(data) - 100)  # pages overwritten, header intact
    damaged.write_bytes(bytes(data))
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    return {"garbage": (garbage, "not an SQLite database"), "damaged": (damaged, "damaged SQLite database"),
            "other": (other, "without a 'case_runs' table")}


def test_corrupt_history_is_reported_and_left_untouched(tmp_path, capsys):
    run = planted_runs(tmp_path / "runs2", count=1)[0]
    for path, message in corrupt_files(tmp_path).values():
        before = path.read_bytes()
        siblings = sorted(p.name for p in path.parent.iterdir())
        with pytest.raises(HistoryError, match=message) as raised:
            append_run(run, path)
        assert str(path) in str(raised.value) and "left untouched" in str(raised.value)
        assert main(["--history", "--history-db", str(path)]) == 2
        assert message in capsys.readouterr().err
        assert path.read_bytes() == before
        assert sorted(p.name for p in path.parent.iterdir()) == siblings  # no journal left behind


@pytest.mark.slow
def test_bench_run_refuses_a_corrupt_history_before_measuring(tmp_path):
    bad = tmp_path / "garbage.sqlite"
    bad.write_bytes(b"\x00garbage" * 64)
    results = tmp_path / "results"
    proc = run_bench(results, "--preset", "smoke", "--history-db", str(bad)).proc
    assert proc.returncode != 0
    assert f"{bad}: not an SQLite database" in proc.stderr and "Traceback" not in proc.stderr
    assert not results.exists() or not any(results.iterdir())  # nothing was measured
    assert bad.read_bytes() == b"\x00garbage" * 64


def test_new_figures_need_no_schema_change(tmp_path):
    db = tmp_path / "history.sqlite"
    append_run(write_run(tmp_path / "a", [entry(SLOWED, rounds(1e-3), plugin_widgets=3.5, flops=1234)]), db)
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(case_runs)")}
        stored = dict(conn.execute("SELECT name, value FROM figures WHERE name IN ('plugin_widgets', 'flops')"))
    conn.close()
    assert "median_s" not in columns and "flops" not in columns and {"model", "batch_size"} <= columns
    assert stored == {"plugin_widgets": 3.5, "flops": 1234.0}
    row = load_history(db).iloc[0]
    assert row["plugin_widgets"] == 3.5 and row["flops"] == 1234 and row["median_s"] > 0


WIDE_FIXTURE = ROOT / "tests" / "data" / "history-wide-v1.sqlite"  # written by the wide case_runs schema


def test_a_history_of_the_wide_schema_loads_appends_and_renders(tmp_path):
    db = tmp_path / "old.sqlite"
    db.write_bytes(WIDE_FIXTURE.read_bytes())
    old = load_history(db)
    assert len(old) == 6 and set(old["flops"]) == {1000, 1001, 1002} and (old["median_s"] > 0).all()
    assert old["median_ci_low_s"].notna().all()  # derived from the rounds, which the file kept
    # Appending a new run keeps the old rows and adds the figures table beside them.
    append_run(write_run(tmp_path / "20261122-120000", [entry(SMOKE[0], rounds(1e-3), flops=1000)],
                         environment={"started_at": "2026-11-22T12:00:00Z"}), db)
    history = load_history(db)
    assert len(history) == 7 and list(dict.fromkeys(history["run"]))[-1] == "20261122-120000"
    assert history.set_index("run").loc["20261122-120000", "flops"] == 1000
    assert main(["--history", "--history-db", str(db)]) == 0
    markdown = (tmp_path / "history.md").read_text()
    # Planted: the first case +30% in the second run, back to its speed in the third.
    assert "3 runs, 3 cases, 2 shifts" in markdown


def test_history_locations():
    assert locate("results/history.sqlite").as_posix() == "results/history.sqlite"
    assert locate("sqlite:///results/h.sqlite").as_posix() == "results/h.sqlite"
    assert locate("sqlite:////abs/h.sqlite").as_posix() == "/abs/h.sqlite"
    assert locate("file:///abs/h.sqlite").as_posix() == "/abs/h.sqlite"
    with pytest.raises(HistoryError, match=r"unsupported history location 'mysql://u:\*\*\*@db/x'; valid forms"):
        check("mysql://u:secret@db/x")


def test_history_command_without_a_history(tmp_path):
    proc = run_reports("--history", "--results-dir", tmp_path)
    assert proc.returncode == 2
    assert f"{tmp_path / 'history.sqlite'}: no history yet" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("where", ["/proc/nope/h.sqlite", "/sys/h.sqlite", "folder", "not-history"])
def test_check_refuses_a_history_that_cannot_be_written(tmp_path, where):
    if where == "folder":
        where = tmp_path
    elif where == "not-history":
        where = tmp_path / "notes.txt"
        where.write_text("not a history")
    with pytest.raises(HistoryError, match=str(where)):
        check(where)
    if where == tmp_path / "notes.txt":
        assert where.read_text() == "not a history"  # refused untouched


def test_check_creates_a_writable_history(tmp_path):
    db = tmp_path / "new" / "h.sqlite"
    assert check(db) == db and db.is_file()
    check(db)  # an existing, empty history passes too


def test_profile_runs_are_compared_only_with_profile_runs(tmp_path):
    """A profile run (short max time) between bench runs: no shift is marked across kinds, and
    the page names each run's kind."""
    db = tmp_path / "history.sqlite"
    case = SMOKE[0]
    kinds = [("bench", 1.0, 1e-3), ("profile", 0.1, 1.5e-3), ("bench", 1.0, 1e-3), ("profile", 0.1, 1.5e-3)]
    for r, (kind, max_time, median) in enumerate(kinds):
        run = write_run(tmp_path / run_name(r), [entry(case, rounds(median, n=60, spread=0.01, seed=r)),
                                                 *([entry(SMOKE[1], rounds(1e-3, n=60, seed=9))] if r == 3 else [])],
                        environment={"run_kind": kind, "benchmark_max_time": max_time,
                                     "started_at": f"2026-11-22T1{r}:00:00Z"})
        append_run(run, db)
    history = load_history(db)
    assert list(history["run_kind"].drop_duplicates()) == ["bench", "profile"]
    marked = mark_shifts(history)
    assert (marked["shift"] == "").all()  # +50% from bench to profile is not a shift
    # An older run (no run_kind) counts as bench; its max time is read from its command line.
    from reports.history.store import run_settings

    assert run_settings({"argv": "bench --benchmark-max-time=0.05 --profile"}) == ("bench", 0.05)
    assert run_settings({}) == ("bench", None)
    pages = write_history_report(db, tmp_path / "out")
    markdown = pages["markdown"].read_text(encoding="utf-8")
    assert "| profile" in markdown and "| bench" in markdown  # the runs table names the kind
    assert f"{case.id} (profile, max time 100 ms)" in markdown
    # SMOKE[1] was measured once: listed, not drawn.
    assert f"Measured in one run only, not drawn (1 case): {SMOKE[1].id}" in markdown


def test_history_page_opens_with_the_cases_that_changed(tmp_path):
    db = tmp_path / "history.sqlite"
    for run in planted_runs(tmp_path):
        append_run(run, db)
    html = write_history_report(db, tmp_path / "out")["html"].read_text(encoding="utf-8")
    ids = [html.index(f'<section id="{s}">') for s in ("summary", "shifts", "trends", "latest", "runs")]
    assert ids == sorted(ids)
    shifts = html[ids[1]:ids[2]]
    assert shifts.count("<img") == 1 and "<details>" not in shifts  # the changed cases' charts, in view
    assert "<details>" in html[ids[2]:ids[3]]  # the others folded
