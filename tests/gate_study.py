"""How often does the gate cry wolf, and how often does it catch a 10% slowdown?

    python -m tests.gate_study --runs 10 --out results/gate-study

Runs a 30-case CPU selection ``--calibration-runs`` times to calibrate noise floors (as
``nox -s calibrate`` does), then ``--runs`` times unchanged and ``--runs`` times with a planted
slowdown in fashion_mlp (``tests/plant_plugin.py``), interleaved, and gates, several ways (one
run per side at the default threshold, with ``--normalize``, with the calibrated floors; and the
fastest of ``--group`` runs per side). Comparisons share no run, so each is independent:
- unchanged against unchanged (A/A): each case compared is one chance of a false alarm;
- unchanged against planted: the planted cases should be flagged, nothing else.
Also times the gate itself on 1,000 synthetic cases. Prints a Markdown summary. Resumable:
runs already in ``--out`` are reused. A study of the machine, not a test.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from reports import load
from reports.gate import GateConfig, gate, markdown, noise_floor

ROOT = Path(__file__).resolve().parents[1]
SELECTION = ["--preset", "smoke", "--models", "lenet,fashion_mlp,fashion_mlp_dropout",
             "--phases", "forward,backward,optimizer_step,train_step",
             "--optimizers", "sgd,adam,adamw,rmsprop"]  # 3 x (2 + 4 x 2) = 30 cases


def run(out: Path, plant: str | None, max_time: float) -> Path:
    if (out / "cases.jsonl").is_file():
        return out
    env = dict(os.environ, **({"BLITZBENCH_PLANT": plant} if plant else {}))
    cmd = [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider", "-p", "tests.plant_plugin",
           "--run-dir", str(out), f"--benchmark-max-time={max_time}", *SELECTION]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return out


def quiet_load(path: Path) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(path)


def timing_only(base: pd.DataFrame, cur: pd.DataFrame, config: GateConfig) -> pd.DataFrame:
    return gate(base, cur, config)["timing"]


def rates(name: str, aa: pd.DataFrame, hit: pd.DataFrame, rest: pd.DataFrame) -> str:
    false = int((aa["verdict"] == "regression").sum())
    found = int((hit["verdict"] == "regression").sum())
    return (f"| {name} | {len(aa)} | {false} ({100 * false / len(aa):.2f}%) | "
            f"{int((aa['verdict'] == 'improvement').sum())} | {found}/{len(hit)} ({100 * found / len(hit):.1f}%) | "
            f"{int((rest['verdict'] == 'regression').sum())}/{len(rest)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--calibration-runs", type=int, default=10,
                        help="single-run floors from every pair; best-of-k floors from the first 2k")
    parser.add_argument("--group", type=int, default=5, help="runs per side for the best-of-k comparisons")
    parser.add_argument("--plant", default="fashion_mlp:slower:0.1")
    parser.add_argument("--max-time", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("results/gate-study"))
    args = parser.parse_args(argv)
    planted_model = args.plant.split(":")[0]

    calibration = [quiet_load(run(args.out / "calibration" / f"run-{i:02d}", None, args.max_time))
                   for i in range(args.calibration_runs)]
    base_runs, plant_runs = [], []
    for i in range(args.runs):  # interleaved, so drift of the machine hits both sides alike
        base_runs.append(quiet_load(run(args.out / "base" / f"run-{i:02d}", None, args.max_time)))
        plant_runs.append(quiet_load(run(args.out / "plant" / f"run-{i:02d}", args.plant, args.max_time)))
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr)

    # Disjoint comparisons, so none shares a run with another: A/A pairs consecutive unchanged
    # runs; best-of-k sides are consecutive groups of k runs (as k interleaved CI runs per side).
    single_aa = list(zip(base_runs[0::2], base_runs[1::2]))
    single_ab = list(zip(base_runs, plant_runs))
    k = args.group
    base_groups = [pd.concat(base_runs[i:i + k]) for i in range(0, len(base_runs) - k + 1, k)]
    plant_groups = [pd.concat(plant_runs[i:i + k]) for i in range(0, len(plant_runs) - k + 1, k)]
    group_aa = list(itertools.combinations(base_groups, 2))
    group_ab = list(itertools.product(base_groups, plant_groups))

    configs = {"1 run per side, default (5%)": (GateConfig(), single_aa, single_ab),
               "1 run per side, --normalize": (GateConfig(normalize=True), single_aa, single_ab)}
    if len(calibration) >= 2:
        floors = noise_floor(calibration)
        configs["1 run per side, calibrated floors"] = (GateConfig(noise_floor=floors), single_aa, single_ab)
    if group_aa:
        configs[f"best of {k} runs per side, default (5%)"] = (GateConfig(), group_aa, group_ab)
        configs[f"best of {k} runs per side, --normalize"] = (GateConfig(normalize=True), group_aa, group_ab)
    if group_aa and len(calibration) >= 2 * k:
        # As `nox -s calibrate -- --runs 2 --best-of k`: two sides of k calibration runs each.
        group_floors = noise_floor([pd.concat(calibration[:k]), pd.concat(calibration[k:2 * k])])
        configs[f"best of {k} runs per side, calibrated floors"] = (
            GateConfig(noise_floor=group_floors), group_aa, group_ab)
        configs[f"best of {k} runs per side, calibrated + --normalize"] = (
            GateConfig(noise_floor=group_floors, normalize=True), group_aa, group_ab)
    table = ["| gate | A/A comparisons | false regressions | false improvements | planted detected "
             "| others flagged |", "|---|---|---|---|---|---|"]
    for name, (config, aa_pairs, ab_pairs) in configs.items():
        aa = pd.concat([timing_only(a, b, config) for a, b in aa_pairs])
        ab = pd.concat([timing_only(a, b, config) for a, b in ab_pairs])
        # optimizer_step never calls the model, so the plant cannot slow it.
        affected = ab["case_id"].str.contains(f"[{planted_model}-", regex=False) & \
            ~ab["case_id"].str.startswith("optimizer_step")
        table.append(rates(name, aa, ab[affected], ab[~affected]))
        if name.startswith("1 run per side, default"):
            default_aa, hit = aa, ab[affected]
    aa = default_aa

    ids = [f"case{i}" for i in range(1000)]
    rng = np.random.default_rng(0)
    synth = [pd.DataFrame({"case_id": ids, "status": "ok", "run": r,
                           "times_s": [list(rng.normal(1e-3, 2e-5, 300)) for _ in ids]}) for r in "ab"]
    started = time.perf_counter()
    markdown(gate(*synth))
    gate_seconds = time.perf_counter() - started

    lines = [
        f"# Gate study: {args.runs} unchanged + {args.runs} planted runs ({args.plant}), "
        f"{len(base_runs[0])} cases, --benchmark-max-time {args.max_time}, "
        f"{len(calibration)} calibration runs", "",
        *table, "",
        f"- Planted, default gate: measured slowdown median {100 * (hit['ratio'].median() - 1):.1f}% "
        f"(range {100 * (hit['ratio'].min() - 1):.1f}% … {100 * (hit['ratio'].max() - 1):.1f}%); "
        f"largest A/A change {100 * (aa['ratio'] - 1).abs().max():.1f}%.",
        f"- Gate on 1,000 cases x 300 rounds (comparison + Markdown): {gate_seconds:.2f} s.", "",
        "Per affected case:", "",
        hit.groupby("case_id").agg(detected=("verdict", lambda v: f"{100 * (v == 'regression').mean():.0f}%"),
                                   median_change=("ratio", lambda r: f"{100 * (r.median() - 1):+.1f}%"),
                                   min_detectable=("min_detectable", lambda m: f"{100 * m.median():.1f}%"))
        .to_markdown(), "",
        "A/A per case (median |change|, max |change|, median minimum detectable):", "",
        aa.assign(change=(aa["ratio"] - 1).abs()).groupby("case_id").agg(
            median_change=("change", lambda c: f"{100 * c.median():.1f}%"),
            max_change=("change", lambda c: f"{100 * c.max():.1f}%"),
            min_detectable=("min_detectable", lambda m: f"{100 * m.median():.1f}%")).to_markdown(),
    ]
    text = "\n".join(lines) + "\n"
    (args.out / "study.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
