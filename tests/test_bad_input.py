"""Bad results given to ``python -m reports``: a message naming the problem, exit 2, no traceback.

``main`` runs in-process (the subprocess path is covered in test_reports): what is checked
is what it prints and returns.
"""

from __future__ import annotations

import pytest

from bench.schema.case import Case
from reports.__main__ import main
from tests.synthetic import entry, rounds, write_run

CASE = Case(phase="forward", model="lenet", optimizer=None, device="cpu", mode="eager")  # no torch needed


def without(section: str, name: str) -> dict:
    """A result line lacking one field: ``section`` is "stats" or "extra_info" (the case)."""
    bad = entry(CASE, rounds(1e-3))
    del bad[section][name]
    return bad


@pytest.mark.parametrize(("lines", "message"), [
    (None, "no cases.jsonl or benchmark.json in this folder"),
    ([], "no results in"),
    ([without("stats", "median")], f"benchmark {CASE.id} lacks the statistics median (expected pytest-benchmark stats: median"),
    ([without("extra_info", "model")], "lacks the case fields model"),
], ids=["empty-folder", "empty-results", "missing-statistic", "missing-case-field"])
def test_bad_results_folder_gives_a_message_and_exit_2(tmp_path, capsys, lines, message):
    run = tmp_path / "20261122-120000"
    run.mkdir()
    if lines is not None:
        write_run(run, lines)
    assert main([str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(run) in err
    assert not (run / "report.html").exists()
