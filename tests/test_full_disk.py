"""A full disk: a run too big for it is refused before it starts; a write that fails on the way
leaves every file whole or absent, never half of one; cases.jsonl keeps its finished rows and
one line names the folder.

No disk is filled. In-process, the error is raised where the write fails (``os.fsync``, which
reports a full disk on file systems that allocate late); in a subprocess, RLIMIT_FSIZE makes
the kernel refuse any write past a size (EFBIG), wherever it comes from; in a benchmark run,
``-p tests.disk_plugin`` raises ENOSPC where writing would fail.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from bench.matrix import space
from bench.schema.case import Case
from bench.schema.results import RunWriter, write_atomic
from tests.helpers import ROOT, run_bench
from tests.synthetic import entry, rounds, write_run

CASES = [Case(phase="forward", model=model, optimizer=None, device="cpu", mode="eager")
         for model in ("lenet", "fashion_mlp", "lenet3x3")]
ONE_CASE = ["--models", "fashion_mlp", "--phases", "forward,backward", "--modes", "eager"]


def no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_row_that_cannot_be_written_leaves_the_rows_before_it(tmp_path, monkeypatch):
    writer = RunWriter(tmp_path)
    writer.write(entry(CASES[0], rounds(1e-3)))
    before = writer.path.read_bytes()
    monkeypatch.setattr(os, "fsync", no_space)  # the line reached the file; making it durable fails
    with pytest.raises(OSError) as raised:
        writer.write(entry(CASES[1], rounds(1e-3, n=5000)))
    assert raised.value.errno == errno.ENOSPC
    assert writer.path.read_bytes() == before and writer.count == 1  # no half line left behind


def test_write_atomic_leaves_the_previous_file_or_none(tmp_path, monkeypatch):
    old, new = tmp_path / "report.md", tmp_path / "gate.md"
    old.write_text("the previous report")
    monkeypatch.setattr(os, "fsync", no_space)
    for path in (old, new):
        with pytest.raises(OSError):
            write_atomic(path, "x" * 100_000)
    assert old.read_text() == "the previous report" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temporary file stays
    monkeypatch.undo()
    write_atomic(new, "whole")
    assert new.read_text() == "whole" and oct(new.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def python_with_files_up_to(limit: int, code: str) -> subprocess.CompletedProcess:
    """``code`` in a Python that may not grow any file past ``limit`` bytes (a write beyond it fails)."""
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), preexec_fn=limit_files)


def test_a_report_that_cannot_be_written_whole_is_not_written_at_all(tmp_path):
    run = write_run(tmp_path / "run", [entry(c, rounds(1e-3 * (i + 1))) for i, c in enumerate(CASES)])
    proc = python_with_files_up_to(20_000, f"from reports.run import write_report\nwrite_report({str(run)!r})")
    assert proc.returncode != 0 and "File too large" in proc.stderr  # report.html is larger than that
    assert not (run / "report.html").exists()
    assert (run / "report.md").read_text().startswith("# blitzbench report")  # smaller: written before
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_the_gate_writes_gate_md_and_gate_json_whole_or_not_at_all(tmp_path):
    sides = [write_run(tmp_path / name, [entry(c, rounds(1e-3, seed=side)) for c in CASES])
             for side, name in enumerate(("base", "head"))]
    out = tmp_path / "gate"
    code = (f"from reports.__main__ import main\n"
            f"main(['gate', {str(sides[0])!r}, {str(sides[1])!r}, '--output', {str(out)!r}])")
    proc = python_with_files_up_to(1_000, code)  # gate.md, written first, is larger than that
    assert "File too large" in proc.stderr
    assert not list(out.iterdir()), "no gate.md, half or whole, and no gate.json after it"


def plan(count: int = 3, **settings: object) -> space.Plan:
    return space.Plan(cases=CASES[:count], max_time=1.0, min_rounds=5, **settings)


class Disk:
    def __init__(self, free: int, total: int = 10**12) -> None:
        self.free, self.total = free, total


def test_the_space_a_run_needs_is_estimated_from_what_it_writes(tmp_path):
    base = space.run_folder_bytes(plan())
    assert base >= 3 * (1.0 / space.FASTEST_ROUND_S) * space.RUN_BYTES_PER_ROUND  # each case, a fast step's rounds
    assert space.run_folder_bytes(plan(1)) < base
    assert space.run_folder_bytes(plan(profiled=True)) > base and space.run_folder_bytes(plan(isolated=True)) > base
    assert space.history_bytes(plan(counted=True)) < space.history_bytes(plan())  # counts keep no rounds
    results = tmp_path / "results"
    assert space.needs(plan(), results, results / "history.sqlite") == {results: base + space.history_bytes(plan())}
    assert space.needs(plan(), results, None) == {results: base}  # a history on a server


def test_a_disk_too_full_for_the_run_is_refused_naming_the_folder_and_both_amounts(tmp_path):
    results, elsewhere = tmp_path / "results", tmp_path / "results" / "h"
    needs = space.needs(plan(), results, elsewhere / "history.sqlite")
    total = sum(needs.values())
    space.check(needs, plan(), usage=lambda path: Disk(free=total + 1))
    with pytest.raises(space.SpaceError) as refused:
        space.check(needs, plan(), usage=lambda path: Disk(free=total - 1))
    message = str(refused.value)
    assert message.startswith(f"{results} and {elsewhere}: not enough free disk space for this run: it writes up to")
    assert space.size(total) in message and f"{space.size(total - 1)} free" in message and "3 cases" in message
    # A file system that reports no size (/proc, /sys) is not judged: creating there fails, named.
    space.check(needs, plan(), usage=lambda path: Disk(free=0, total=0))


@pytest.mark.slow
def test_a_disk_too_full_for_the_run_refuses_it_before_it_measures(tmp_path):
    run = run_bench(tmp_path, "-p", "tests.disk_plugin", *ONE_CASE, env={"BLITZBENCH_DISK": "free:100000"})
    assert run.proc.returncode == 2, run.proc.stdout + run.proc.stderr
    assert f"{tmp_path}: not enough free disk space for this run" in run.proc.stderr
    assert "0.1 MB free" in run.proc.stderr and "Traceback" not in run.proc.stderr
    assert not any(tmp_path.iterdir()), "nothing is created for a refused run"


@pytest.mark.slow
def test_a_full_disk_during_the_run_stops_it_with_one_line_keeping_the_finished_cases(tmp_path):
    run = run_bench(tmp_path, "-p", "tests.disk_plugin", *ONE_CASE, env={"BLITZBENCH_DISK": "row:2"})
    out = run.proc.stdout + run.proc.stderr
    assert run.proc.returncode == 2, out
    assert f"{run.run_dir}: no space left on the device for cases.jsonl" in out and "Traceback" not in out
    lines = (run.run_dir / "cases.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["forward[fashion_mlp-cpu-eager-b64]"]
    benchmarks = json.loads((run.run_dir / "benchmark.json").read_text())["benchmarks"]
    assert [b["name"] for b in benchmarks] == ["forward[fashion_mlp-cpu-eager-b64]"]  # the same cases


@pytest.mark.slow
def test_a_full_disk_at_the_end_leaves_no_half_benchmark_json(tmp_path):
    run = run_bench(tmp_path, "-p", "tests.disk_plugin", *ONE_CASE, env={"BLITZBENCH_DISK": "json"})
    out = run.proc.stdout + run.proc.stderr
    assert run.proc.returncode == 2, out
    assert f"{run.run_dir}: no space left on the device while finishing the run" in out
    assert "Traceback" not in out and "2 passed" in out
    assert not (run.run_dir / "benchmark.json").exists()
    assert len((run.run_dir / "cases.jsonl").read_text().splitlines()) == 2
