import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from reports.load import ResultsWarning
from reports import ResultsError, compile_speedup, device_speedup, load, phase_table
from reports.format import humanize, time_unit
from reports.run.write import report_markdown as markdown
from reports.stats import median_ci
from tests.helpers import ROOT


def entry(phase="train_step", model="lenet", optimizer="sgd", device="cpu", mode="eager", median=0.002):
    case = dict(phase=phase, model=model, optimizer=optimizer, device=device, mode=mode,
                dtype="float32", batch_size=64)
    params = "-".join(x for x in (model, optimizer, device, mode) if x) + "-b64"
    case_id = f"{phase}[{params}]"
    return {"name": case_id, "extra_info": dict(case, case_id=case_id, status="ok", torch_version="2.x",
                                                num_threads=2),
            "stats": {"median": median, "mean": median, "min": median * 0.9, "max": median * 1.2,
                      "stddev": 0.0, "iqr": 0.0, "q1": median, "q3": median, "rounds": 3,
                      "iterations": 1, "ops": 1 / median, "total": 3 * median,
                      "data": [median] * 3}}


def write_json(path, entries):
    path.write_text(json.dumps({"benchmarks": entries}))
    return path


def test_load_malformed_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match=r"bad\.json: not valid JSON"):
        load(bad)
    other = write_json(tmp_path / "other.json", [{"name": "test_x", "stats": {}}])
    with pytest.raises(ResultsError, match=r"other\.json: benchmark test_x lacks the case fields"):
        load(other)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ResultsError, match=r"list\.json: not a pytest-benchmark JSON file"):
        load(tmp_path / "list.json")
    with pytest.raises(ResultsError, match=r"missing\.json: no such file"):
        load(tmp_path / "missing.json")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ResultsError, match=r"empty_run: no cases\.jsonl or benchmark\.json"):
        load(tmp_path / "empty_run")


def test_load_tolerates_a_last_line_cut_short_and_says_so(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps(entry()) + "\n" + json.dumps(entry(model="lenet3x3"))[:40])
    with pytest.warns(ResultsWarning, match=r"cases\.jsonl:2: the last line is cut short"):
        df = load(path)
    assert list(df["case_id"]) == ["train_step[lenet-sgd-cpu-eager-b64]"]
    assert len(df.attrs["skipped"]) == 1 and "cases.jsonl:2" in df.attrs["skipped"][0]
    # The report says so at the top, in both formats, and write_report returns it.
    from reports.run import write_report

    paths = write_report(tmp_path)
    assert paths["skipped"] == df.attrs["skipped"]
    for name, start, end in (("report.md", "## Summary", "## Fastest"),
                             ("report.html", '<section id="summary">', '<section id="fastest">')):
        text = (tmp_path / name).read_text(encoding="utf-8")
        summary = text[text.index(start):text.index(end)]
        assert "skipped when reading" in summary and "the last line is cut short" in summary
    path.write_text("{broken\n" + json.dumps(entry()) + "\n")
    with pytest.raises(ResultsError, match=r"cases\.jsonl:1: not valid JSON"):
        load(path)


def test_garbage_benchmark_json_beside_good_cases_is_named(tmp_path):
    (tmp_path / "cases.jsonl").write_text(json.dumps(entry()) + "\n")
    (tmp_path / "benchmark.json").write_text('{"benchmarks": [')
    with pytest.warns(ResultsWarning, match=r"benchmark\.json: not valid JSON"):
        df = load(tmp_path)
    assert len(df) == 1
    assert [m for m in df.attrs["skipped"] if "benchmark.json" in m and "cases.jsonl" in m]
    # A valid benchmark.json with a case cases.jsonl lacks: named, not silently ignored.
    write_json(tmp_path / "benchmark.json", [entry(), entry(model="lenet3x3")])
    with pytest.warns(ResultsWarning, match=r"1 case\(s\) not in cases\.jsonl.*lenet3x3"):
        load(tmp_path)
    # A good pair reads without a word.
    write_json(tmp_path / "benchmark.json", [entry()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(tmp_path).attrs["skipped"] == []


def test_load_several_files_keeps_the_run(tmp_path):
    a = write_json(tmp_path / "a.json", [entry(median=0.002)])
    b = write_json(tmp_path / "b.json", [entry(median=0.004)])
    df = load(a, b)
    assert list(df["run"]) == ["a", "b"] and list(df["median_s"]) == [0.002, 0.004]
    assert df.loc[0, "times_s"] == [0.002] * 3


def frame(tmp_path, entries):
    return load(write_json(tmp_path / "r.json", entries))


def test_compile_and_device_speedups(tmp_path):
    df = frame(tmp_path, [entry(mode="eager", median=0.004), entry(mode="compile", median=0.002),
                          entry(device="cuda", median=0.001), entry(phase="forward", optimizer=None),
                          entry(phase="forward", optimizer=None, mode="compile", median=0.001)])
    comp = compile_speedup(df).set_index("phase")
    assert comp.loc["train_step", "speedup"] == pytest.approx(2.0)
    assert comp.loc["forward", "speedup"] == pytest.approx(2.0)
    assert pd.isna(comp.loc["forward", "optimizer"])
    dev = device_speedup(df)
    assert len(dev) == 1 and dev.iloc[0]["speedup"] == pytest.approx(4.0)
    assert compile_speedup(df[df["mode"] == "eager"]).empty


def test_phase_table_keeps_numbers(tmp_path):
    df = frame(tmp_path, [entry(), entry(phase="forward", optimizer=None)])
    table = phase_table(df, "train_step")
    assert list(table["case_id"]) == ["train_step[lenet-sgd-cpu-eager-b64]"]
    assert table["median_s"].dtype == np.float64


def test_units_are_chosen_when_rendering():
    assert time_unit([0.002, 0.003]) == ("ms", 1e-3)
    assert time_unit([2e-7]) == ("ns", 1e-9)
    assert time_unit([1.5]) == ("s", 1.0)
    shown = humanize(pd.DataFrame({"median_s": [0.0025, 0.004]}))
    assert list(shown.columns) == ["median (ms)"] and list(shown["median (ms)"]) == ["2.5", "4"]


def test_markdown_lists_unmeasured_cases(tmp_path):
    skipped = entry(device="cuda")
    skipped["stats"] = None
    skipped["extra_info"].update(status="skipped", error="CUDA is not available on this machine")
    text = markdown(frame(tmp_path, [entry(), skipped]))
    assert "train_step[lenet-sgd-cpu-eager-b64]" in text
    assert "## Not measured" in text and "CUDA is not available" in text


def run_reports(*args):
    return subprocess.run([sys.executable, "-m", "reports", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_reports_command_rerenders_a_run(smoke_run):
    (smoke_run.run_dir / "report.md").unlink()
    proc = run_reports(smoke_run.run_dir)
    assert proc.returncode == 0, proc.stderr
    assert "train_step[fashion_mlp-adam-cpu-eager-b64]" in (smoke_run.run_dir / "report.md").read_text()


def test_reports_command_bad_folder_exits_2(tmp_path):
    proc = run_reports(tmp_path / "nope")
    assert proc.returncode == 2
    assert "nope: no such file or folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_reports("--results-dir", tmp_path)
    assert proc.returncode == 2 and "no run folders" in proc.stderr


def test_latest_run_is_the_newest_folder_with_results(tmp_path):
    import os

    from reports.__main__ import latest_run

    old = tmp_path / "20260101-000000"
    old.mkdir()
    (old / "cases.jsonl").write_text("")
    (tmp_path / "calibration" / "a").mkdir(parents=True)  # a folder of runs, not a run
    (tmp_path / "zzz-empty").mkdir()
    assert latest_run(tmp_path) == old
    named = tmp_path / "mine"  # --run-dir names need not sort by time
    named.mkdir()
    (named / "cases.jsonl").write_text("")
    later = (old / "cases.jsonl").stat().st_mtime + 10
    os.utime(named / "cases.jsonl", (later, later))
    assert latest_run(tmp_path) == named


def test_median_ci_matches_scipy_quantile_test_from_six_rounds():
    # reports.stats keeps its cached binomial ranks: scipy's interval is the same from 6
    # rounds on, but NaN below that, where ours is the whole range.
    from scipy import stats as sps

    rng = np.random.default_rng(0)
    for n in [*range(6, 120), 200, 500, 1000, 3001]:
        x = rng.random(n)
        ci = sps.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
        assert median_ci(x) == (ci.low, ci.high), n
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_statistics_are_derived_from_the_rounds_whatever_the_file_stored(tmp_path):
    stored = entry(median=0.002)
    stored["stats"]["data"] = [0.001, 0.002, 0.003, 0.002, 0.002, 0.002, 0.002, 0.002]
    stored["extra_info"].update(median_ci_low_s=123.0, median_ci_high_s=456.0, iqr_rel=9.0, noisy=True)
    bare = entry(median=0.002, model="lenet3x3")
    bare["stats"]["data"] = list(stored["stats"]["data"])
    df = frame(tmp_path, [stored, bare])
    derived = ["median_ci_low_s", "median_ci_high_s", "iqr_rel", "ci_rel_width", "noisy"]
    assert df.loc[0, derived].tolist() == df.loc[1, derived].tolist()
    assert (df.loc[0, "median_ci_low_s"], df.loc[0, "median_ci_high_s"]) == median_ci(stored["stats"]["data"])


def test_a_column_nobody_declared_loads_and_reaches_the_csv(tmp_path):
    extra = entry()
    extra["extra_info"]["plugin_widgets"] = 7
    run = tmp_path / "run"
    run.mkdir()
    (run / "cases.jsonl").write_text(json.dumps(extra) + "\n")
    assert load(run).loc[0, "plugin_widgets"] == 7
    from reports.run import write_report

    write_report(run)
    assert pd.read_csv(run / "report.csv").loc[0, "plugin_widgets"] == 7


def test_noisy_separates_unsafe_cases():
    from reports.stats import summarize

    rng = np.random.default_rng(5)
    steady = 1e-3 * (1 + 0.05 * rng.standard_normal(400))  # wide spread, stable: a precise median
    step = np.concatenate([steady[:200], steady[200:] * 1.05])  # 5% slower half-way
    few = 1e-3 * (1 + 0.05 * rng.standard_normal(5))  # too few rounds for a ±2% interval
    assert summarize(steady)["noisy"] is False and summarize(steady)["iqr_rel"] > 0.05
    assert summarize(step)["noisy"] is True
    assert summarize(step)["drift_rel"] == pytest.approx(0.05, abs=0.015)
    assert summarize(few)["noisy"] is True
    # A drift below 1% is not a reason, however many rounds make it significant.
    many = 1e-3 * (1 + 0.002 * rng.standard_normal(4000))
    assert summarize(np.concatenate([many[:2000], many[2000:] * 1.005]))["noisy"] is False
