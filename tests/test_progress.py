"""Progress lines while a run goes: case, i of N, elapsed, time left; never inside a case."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from bench.matrix import select as matrix
from bench.matrix.progress import Estimate, clock_text
from tests.helpers import ROOT

LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+)  (\d+:\d\d) elapsed(?:, ~(\d+:\d\d) left)? [.sFE]", re.M)


@pytest.mark.slow
def test_smoke_run_shows_each_case_as_it_starts(smoke_run):
    out = smoke_run.proc.stdout
    lines = LINE.findall(out)
    expected = [c.id for c in matrix.select("smoke")]
    assert [case for _, _, case, _, _ in lines] == expected  # in run order, each once
    assert [(int(i), int(n)) for i, n, *_ in lines] == [(k, len(expected)) for k in range(1, len(expected) + 1)]
    assert lines[0][4] == ""  # no estimate before a case has finished
    assert all(left for *_, left in lines[1:])
    # The usual -q output is intact: the summary line and pytest-benchmark's table.
    assert f"{len(expected)} passed" in out
    assert re.search(r"^Name \(time in \w+\)", out, re.M)


def test_estimate_takes_the_mean_of_the_same_kind_of_case():
    estimate = Estimate()
    assert estimate.left([("cpu", "eager")]) is None
    for seconds in (1.0, 3.0):
        estimate.add(("cpu", "eager"), seconds)
    estimate.add(("cpu", "compile"), 20.0)
    # eager: 2 s each; compile: 20 s; a kind not seen yet: the mean of all, 8 s.
    assert estimate.left([("cpu", "eager"), ("cpu", "eager"), ("cpu", "compile"), ("cuda", "eager")]) == 32.0
    assert [clock_text(s) for s in (0.4, 7, 754, 3723)] == ["0:00", "0:07", "12:34", "1:02:03"]


PLUGIN_CONFTEST = """
from bench.matrix.progress import PLUGIN_NAME, Progress

def pytest_configure(config):
    config.pluginmanager.register(Progress(config), PLUGIN_NAME)
"""
# Each test marks its "timed region" on stdout (-s), the way a benchmark body would run.
TIMED_TESTS = """
import pytest

@pytest.fixture
def built(request):
    print(f"<setup {request.node.name.removeprefix('test_')}>", end="", flush=True)

def test_first(built):
    print("<timed first>", end="", flush=True)
    print("</timed first>", end="", flush=True)

def test_second(built):
    print("<timed second>", end="", flush=True)
    print("</timed second>", end="", flush=True)
"""


def run_pytest(tmp_path, *args: str) -> str:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(PLUGIN_CONFTEST))
    (tmp_path / "test_timed.py").write_text(textwrap.dedent(TIMED_TESTS))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:benchmark",
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_progress_is_written_before_a_case_and_never_inside_it(tmp_path):
    out = run_pytest(tmp_path, "-s", "-q")
    first, second = out.index("[1/2] test_first "), out.index("[2/2] test_second ")
    # The line comes before the case's setup (where a benchmark builds its model) ...
    assert first < out.index("<setup first>") < out.index("<timed first>") < second
    assert second < out.index("<setup second>") < out.index("<timed second>")
    # ... and nothing lands between the edges of a timed region.
    assert "<timed first></timed first>" in out and "<timed second></timed second>" in out


def test_progress_in_verbose_mode_and_turned_off(tmp_path):
    verbose = run_pytest(tmp_path, "-v")
    assert re.search(r"test_timed\.py::test_first \[1/2, 0:\d\d elapsed\] PASSED", verbose)
    assert re.search(r"test_timed\.py::test_second \[2/2, 0:\d\d elapsed, ~0:\d\d left\] PASSED", verbose)
    off = run_pytest(tmp_path, "-q", "-p", "no:blitzbench-progress")
    assert "[1/2]" not in off and "2 passed" in off
