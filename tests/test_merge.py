"""Sharding a run over machines (``--shard i/N``) and merging the shards' folders into one run
(``python -m reports merge``): parts disjoint, complete, balanced and the same on every
machine; one merged run with one report and one history entry; bad input refused."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.matrix import select as matrix
from bench.schema.case import Case
from bench.matrix.shard import SHARD_FORM, ShardError, cost, parse_shard, shard, split
from reports.history import load_history
from reports.merge import main as merge_main
from tests.helpers import ROOT, bench_cmd, run_bench
from tests.synthetic import entry, rounds, write_run
from tests.test_light_env import reports_cli

# Four cases (one per step phase), two per shard: the real runs stay short.
SHARDED = ["--preset", "smoke", "--models", "fashion_mlp", "--benchmark-max-time=0.02"]
SELECTIONS = {"default": matrix.select("default"), "full": matrix.select("full"),
              "pipeline": matrix.select("pipeline")}


# --- the split ------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(SELECTIONS))
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_are_disjoint_complete_and_the_same_from_any_order(preset, count):
    selection = SELECTIONS[preset]
    parts = [shard(selection, i, count) for i in range(1, count + 1)]
    assert sorted(c for part in parts for c in part) == sorted(selection)  # every case, once
    for part in parts:  # each part keeps the selection's order (a shard's report reads as a run's)
        assert part == [c for c in selection if c in set(part)]
    shuffled = list(selection)
    random.Random(count).shuffle(shuffled)
    assert [set(p) for p in split(shuffled, count)] == [set(p) for p in parts]  # what every machine computes


@pytest.mark.parametrize("preset", sorted(SELECTIONS))
@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_are_balanced_by_expected_cost(preset, count):
    parts = split(SELECTIONS[preset], count)
    loads = [sum(map(cost, part)) for part in parts]
    # Longest first into the lightest part: no part exceeds another by more than one case.
    assert max(loads) - min(loads) <= max(map(cost, SELECTIONS[preset]))
    if preset == "default" and count == 2:
        compiled = [sum(c.mode == "compile" for c in part) for part in parts]
        assert compiled == [2, 2]  # the 4 slow compile cases are spread, not counted as cases


def test_expected_cost_follows_what_takes_time():
    step = Case(phase="train_step", model="lenet", optimizer="adam", device="cpu", mode="eager")
    compiled = Case(phase="train_step", model="lenet", optimizer="adam", device="cpu", mode="compile")
    autotuned = Case(phase="train_step", model="lenet", optimizer="adam", device="cpu", mode="compile",
                            compile_mode="max-autotune")
    epoch = Case(phase="epoch", model="lenet", optimizer="adam", device="cpu", mode="eager")
    vision = Case(phase="train_step", model="resnet18", optimizer="adam", device="cpu", mode="eager")
    assert cost(step) < cost(epoch) < cost(compiled) < cost(autotuned)
    assert cost(vision) > cost(step)


@pytest.mark.parametrize("value", ["3/2", "0/2", "a/b", "2", "1/0", "-1/2", ""])
def test_bad_shard_values_name_the_value_and_the_form(value):
    with pytest.raises(ShardError) as raised:
        parse_shard(value)
    assert repr(value) in str(raised.value) and SHARD_FORM in str(raised.value)
    assert parse_shard(" 2 / 3 ") == (2, 3)


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/2"], "invalid --shard value '3/2': shard 3 of 2 does not exist; expected " + SHARD_FORM),
    (["--phases", "forward", "--shard", "2/2"], "--shard 2/2: this part holds no case (the selection has 1)"),
])
@pytest.mark.slow
def test_bench_refuses_a_bad_shard_before_measuring(tmp_path, args, message):
    results = tmp_path / "results"
    proc = run_bench(results, *SHARDED, *args).proc
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not results.exists() or not any(results.iterdir())  # nothing measured, no run folder


# --- two real shards, merged ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The two shards of one run, run side by side as two CI machines would."""
    root = tmp_path_factory.mktemp("shards")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen(bench_cmd(root / f"results-{i}", *SHARDED, "--shard", f"{i}/2",
                                        "--run-dir", str(root / f"shard-{i}")),
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
    return [root / f"shard-{i}" for i in (1, 2)]


def digest(folder: Path) -> str:
    """Every file of a folder, by content: a shard folder must come out of a merge unchanged."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return sha.hexdigest()


def case_ids(folder: Path) -> list[str]:
    return [json.loads(line)["extra_info"]["case_id"] for line in (folder / "cases.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_real_shards_merge_into_one_run_one_report_one_history_entry(shards, tmp_path, capsys):
    selection = matrix.select("smoke", models=("fashion_mlp",))
    ids = [case_ids(folder) for folder in shards]
    assert sorted(ids[0] + ids[1]) == sorted(c.id for c in selection) and len(ids[0]) == len(ids[1]) == 2
    assert [json.loads((f / "environment.json").read_text())["shard"] for f in shards] == ["1/2", "2/2"]
    # A second machine with another CPU: planted in a copy of shard 2.
    other = tmp_path / "shard-2"
    shutil.copytree(shards[1], other)
    env = json.loads((other / "environment.json").read_text())
    (other / "environment.json").write_text(json.dumps(dict(env, cpu_model="Other CPU 9000", hostname="ci-2")))
    before = [digest(shards[0]), digest(other)]
    out, db = tmp_path / "merged", tmp_path / "history.sqlite"
    assert merge_main([str(other), str(shards[0]), "--output", str(out), "--history-db", str(db)]) == 0
    printed = capsys.readouterr()
    assert "warning: the shards' environments differ in cpu_model" in printed.err and "Other CPU 9000" in printed.err
    assert "hostname" not in printed.err  # expected to differ between machines: kept per shard, not warned
    assert f"history: {db} (+4 cases)" in printed.out
    assert [digest(shards[0]), digest(other)] == before  # the shards are only read
    assert case_ids(out) == ids[0] + ids[1]  # in shard order, whatever the order given
    merged_env = json.loads((out / "environment.json").read_text())
    assert set(merged_env["environment_differences"]) == {"cpu_model"}
    assert [s["shard"] for s in merged_env["shards"]] == ["1/2", "2/2"] and "shard" not in merged_env
    assert merged_env["started_at"] == min(s["started_at"] for s in merged_env["shards"])
    benchmark = json.loads((out / "benchmark.json").read_text())
    assert sorted(b["extra_info"]["case_id"] for b in benchmark["benchmarks"]) == sorted(ids[0] + ids[1])
    report = (out / "report.md").read_text()
    for case in selection:
        assert case.id in report or case.params_id in report
    assert "Other CPU 9000" in report  # the environment table shows both shards' CPUs
    history = load_history(db)
    assert set(history["run"]) == {"merged"} and sorted(history["case_id"]) == sorted(c.id for c in selection)


@pytest.mark.slow
def test_a_shard_alone_merges_and_names_the_missing_one(shards, tmp_path, capsys):
    out = tmp_path / "merged"
    assert merge_main([str(shards[0]), "--output", str(out)]) == 0
    assert "shard 2/2 not given" in capsys.readouterr().err
    assert json.loads((out / "environment.json").read_text())["shards_missing"] == ["2/2"]


# --- bad input --------------------------------------------------------------------------------

CASES = matrix.select("smoke")


def synthetic(folder: Path, cases: list, shard_label: str | None = None, **files: str) -> Path:
    env = {"torch_version": "2.x", "git_commit": "abc", **({"shard": shard_label} if shard_label else {})}
    write_run(folder, [entry(c, rounds(1e-3, seed=i)) for i, c in enumerate(cases)], environment=env)
    for name, text in files.items():
        path = folder / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def refused(capsys, *args: object) -> str:
    assert merge_main([str(a) for a in args]) == 2
    return capsys.readouterr().err


def test_merge_refuses_bad_input_before_writing(tmp_path, capsys):
    a = synthetic(tmp_path / "a", CASES[:4], "1/2")
    b = synthetic(tmp_path / "b", CASES[4:], "2/2")
    overlap = synthetic(tmp_path / "overlap", CASES[3:5], "2/2")
    third = synthetic(tmp_path / "third", CASES[4:], "2/3")
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = synthetic(tmp_path / "nothing", [], "1/1")
    assert f"no case in {nothing}: nothing to merge" in refused(capsys, nothing, "--output", tmp_path / "out")
    out = tmp_path / "out"
    err = refused(capsys, a, overlap, "--output", out)
    assert f"{overlap} and {a} both hold 1 case(s) ({CASES[3].id})" in err
    assert f"{empty}: not a run folder" in refused(capsys, a, empty, "--output", out)
    assert "shards of different splits" in refused(capsys, a, third, "--output", out)
    assert f"{a}: given twice" in refused(capsys, a, a, "--output", out)
    assert not out.exists()  # nothing written by a refused merge
    (out / "notes").mkdir(parents=True)
    assert f"--output {out}: not empty" in refused(capsys, a, b, "--output", out)
    err = refused(capsys, a, b, "--output", tmp_path / "out2", "--history-db", "postgresql://x:secret@127.0.0.1:1/db")
    assert "postgresql://x:***@127.0.0.1:1/db" in err and "secret" not in err
    assert not (tmp_path / "out2").exists()


def test_merge_joins_every_file_of_the_shards_without_torch(tmp_path):
    """Profiler rows and trace folders come along; the merge runs where torch is not installed
    (``nox -s merge`` installs the readers' packages only)."""
    a = synthetic(tmp_path / "a", CASES[:4], "1/3", **{"profile.jsonl": '{"case_id": "a"}\n',
                                                       "traces__a__t.pt.trace.json": "{}"})
    b = synthetic(tmp_path / "b", CASES[4:], "2/3", **{"profile.jsonl": '{"case_id": "b"}\n',
                                                       "traces__b__t.pt.trace.json": "{}"})
    c = synthetic(tmp_path / "c", [], "3/3")  # a machine stopped before its first case finished
    out = tmp_path / "merged"
    proc = reports_cli("merge", str(a), str(c), str(b), "--output", str(out))
    assert f"{c} (shard 3/3): holds no case; merged without it" in proc.stderr
    assert [json.loads(line)["case_id"] for line in (out / "profile.jsonl").read_text().splitlines()] == ["a", "b"]
    assert sorted(p.parent.name for p in (out / "traces").rglob("*.json")) == ["a", "b"]
    assert (out / "report.html").is_file() and case_ids(out) == [c.id for c in CASES]


@pytest.mark.slow
def test_nox_merge_session_passes_the_exit_status(tmp_path):
    """``nox -s merge`` (with --no-venv here: the environment has the packages) exits 2 on a
    refusal, as ``python -m reports merge`` does."""
    a = synthetic(tmp_path / "a", CASES[:2])
    proc = subprocess.run([sys.executable, "-m", "nox", "--no-venv", "-s", "merge", "--", str(a), str(a),
                           "--output", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "given twice" in proc.stderr
