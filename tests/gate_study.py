"""How often does the gate cry wolf, and how often does it catch a 10% slowdown?

    python -m tests.gate_study --runs 10 --out results/gate-study

Runs a 30-case CPU selection ``--runs`` times unchanged and ``--runs`` times with a planted
slowdown in fashion_mlp (``tests/plant_plugin.py``), interleaved, then gates:
- every pair of unchanged runs (A/A): each case compared is one chance of a false alarm;
- every (unchanged, planted) pair: the planted cases should be flagged, nothing else.
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
from reports.gate import gate
from reports.gate_report import markdown

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


def timing_only(base: pd.DataFrame, cur: pd.DataFrame) -> pd.DataFrame:
    return gate(base, cur)["timing"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--plant", default="fashion_mlp:slower:0.1")
    parser.add_argument("--max-time", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("results/gate-study"))
    args = parser.parse_args(argv)
    planted_model = args.plant.split(":")[0]

    base_runs, plant_runs = [], []
    for i in range(args.runs):  # interleaved, so drift of the machine hits both sides alike
        base_runs.append(quiet_load(run(args.out / "base" / f"run-{i:02d}", None, args.max_time)))
        plant_runs.append(quiet_load(run(args.out / "plant" / f"run-{i:02d}", args.plant, args.max_time)))
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr)

    aa = pd.concat([timing_only(a, b) for a, b in itertools.combinations(base_runs, 2)])
    ab = pd.concat([timing_only(a, b) for a, b in itertools.product(base_runs, plant_runs)])
    # optimizer_step never calls the model, so the plant cannot slow it.
    affected = ab["case_id"].str.contains(f"[{planted_model}-", regex=False) & \
        ~ab["case_id"].str.startswith("optimizer_step")
    hit = ab[affected]
    rest = ab[~affected]

    ids = [f"case{i}" for i in range(1000)]
    rng = np.random.default_rng(0)
    synth = [pd.DataFrame({"case_id": ids, "status": "ok", "run": r,
                           "times_s": [list(rng.normal(1e-3, 2e-5, 300)) for _ in ids]}) for r in "ab"]
    started = time.perf_counter()
    markdown(gate(*synth))
    gate_seconds = time.perf_counter() - started

    lines = [
        f"# Gate study: {args.runs} unchanged + {args.runs} planted runs ({args.plant}), "
        f"{len(base_runs[0])} cases, --benchmark-max-time {args.max_time}", "",
        f"- A/A: {len(aa)} case comparisons, {int((aa['verdict'] == 'regression').sum())} false regressions "
        f"({100 * (aa['verdict'] == 'regression').mean():.2f}%), "
        f"{int((aa['verdict'] == 'improvement').sum())} false improvements; "
        f"largest A/A change {100 * (aa['ratio'] - 1).abs().max():.1f}%.",
        f"- Planted: {len(hit)} comparisons of affected cases, detected {int((hit['verdict'] == 'regression').sum())} "
        f"({100 * (hit['verdict'] == 'regression').mean():.1f}%); measured slowdown median "
        f"{100 * (hit['ratio'].median() - 1):.1f}% (range {100 * (hit['ratio'].min() - 1):.1f}% … "
        f"{100 * (hit['ratio'].max() - 1):.1f}%).",
        f"- Others in the planted comparisons: {len(rest)}, flagged {int((rest['verdict'] == 'regression').sum())}.",
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
