"""--max-batch: the largest batch that fits in the budget, found exactly and reported."""

from __future__ import annotations

import json

import pytest

from bench.schema.case import Case
from bench.schema.files import CASES_FILE
from bench.matrix.options import parse_bytes
from bench.passes.max_batch import fits, search
from tests.helpers import run_bench


@pytest.mark.parametrize(("largest", "start", "limit"), [
    (437, 64, 4096), (64, 64, 4096), (63, 64, 4096), (1, 64, 4096), (5000, 3, 65536), (100, 100, 101),
])
def test_search_finds_the_exact_largest_fitting_batch(largest, start, limit):
    tried: list[int] = []

    def fit(batch: int) -> bool:
        tried.append(batch)
        return batch <= largest

    assert search(fit, start, limit) == (largest, False)
    # Doubling then bisecting: a number of tries logarithmic in the answer, never a linear walk.
    assert len(tried) <= 2 * (largest.bit_length() + start.bit_length()) + 2
    assert len(set(tried)) == len(tried)


def test_search_says_when_it_stopped_at_the_limit_or_nothing_fits():
    assert search(lambda b: True, 64, 1000) == (1000, True)
    assert search(lambda b: False, 64, 1000) == (0, False)


def test_parse_bytes_and_its_refusal():
    assert parse_bytes("16MiB") == 16 * 2**20
    assert parse_bytes("2GB") == 2 * 10**9
    assert parse_bytes("1e6") == 10**6
    with pytest.raises(ValueError, match=r"invalid memory size 'lots'; expected a positive number .*MiB"):
        parse_bytes("lots")


@pytest.mark.slow
def test_max_batch_is_a_figure_of_the_row_and_exact_against_the_budget(tmp_path):
    budget = "24MiB"
    run = run_bench(tmp_path / "r", "--preset", "smoke", "--models", "fashion_mlp", "--phases", "train_step",
                    "--max-batch", "--max-batch-memory", budget)
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    row = json.loads((run.run_dir / CASES_FILE).read_text().splitlines()[0])["extra_info"]
    found, limit = row["max_batch"], parse_bytes(budget)
    assert row["max_batch_budget_bytes"] == limit and row["max_batch_capped"] is False
    assert row["batch_size"] == 64  # the measured case keeps its batch: nothing shrinks silently
    assert found > 64
    case = Case(phase="train_step", model="fashion_mlp", optimizer="adam", device="cpu", mode="eager")
    # Exact: the batch found fits and one more sample does not (the peak grows with the batch).
    assert fits(case, found, limit, "inductor") and not fits(case, found + 1, limit, "inductor")
    assert "max batch" in (run.run_dir / "report.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--max-batch", "--max-batch-memory", "lots"], "invalid memory size 'lots'"),
    (["--max-batch-memory", "1GB"], "--max-batch-memory is given without --max-batch"),
    (["--max-batch", "--max-batch-limit", "0"], "invalid value '0' for --max-batch-limit"),
])
@pytest.mark.slow
def test_bad_max_batch_options_are_refused_before_measuring(tmp_path, args, message):
    run = run_bench(tmp_path / "r", "--preset", "smoke", "--models", "fashion_mlp", *args)
    assert run.proc.returncode == 2
    assert message in run.proc.stdout + run.proc.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
