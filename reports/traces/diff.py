"""``python -m reports trace-diff BASE_RUN CURRENT_RUN``: where two runs' profiles differ.

Per case profiled in both runs, the operators (and, on a GPU, the kernels) whose calls per
step or self time per step changed most, read from the traces themselves with pandas (no
viewer, no torch): a regression says where it happened. The gate puts the same tables into
gate.md for each case it flags, when both sides were profiled (``gate_traces``).

Each trace holds several profiled steps, so each side knows how much an operator's self time
moves from one step to the next: the spread of its per-step self times (slowest less
fastest step). A change of self time no larger than the wider of the two sides' spreads is
within the run-to-run noise and is marked so (two runs of the same code differ by that much
all the time: with three steps a side, a difference of means beyond both ranges happens a few
times in a hundred); such changes are listed after the ones beyond it.

A run without traces, a trace missing on one side or a corrupt trace is refused with a
message naming the folder or file, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.schema.files import PROFILE_FILE, TRACES_DIR
from bench.schema.results import write_atomic

from .. import format as fmt
from . import events as ev
from .files import TraceError, case_trace, read_trace
from .profile import trace_folders

OP_TABLE_COLUMNS = ["name", "kind", "calls", "self_s", "self_spread_s"]
DIFF_COLUMNS = ["case_id", "name", "kind", "calls_base", "calls_current", "calls_change",
                "self_base_s", "self_current_s", "self_change_s", "noise_s", "within_noise",
                "step_base_s", "step_current_s", "step_noise_s"]
DEFAULT_TOP = 10
EXIT_BAD_INPUT = 2
CALLS_EPSILON = 1e-9  # calls per step are means over the steps: compare them with a margin


def per_step(trace: Mapping[str, Any] | ev.Trace) -> pd.DataFrame:
    """Per operator (``kind`` op) and device kernel, copy or memset (``kind`` kernel), per timed
    step: calls and self seconds (0 in a step where it did not run)."""
    t = trace if isinstance(trace, ev.Trace) else ev.Trace(trace)
    spans = pd.concat([t.host, t.device])
    spans = spans[spans["step"] >= 0]
    if not len(t.windows) or spans.empty:
        return pd.DataFrame(columns=["name", "kind", "step", "calls", "self_s"])
    spans = spans.assign(self_us=ev.self_times(spans))
    kind = np.where(spans["cat"] == "cpu_op", "op", np.where(ev.on_device(spans), "kernel", ""))
    spans = spans.assign(kind=kind)[kind != ""]
    grouped = spans.groupby(["name", "kind", "step"]).agg(calls=("name", "size"), self_us=("self_us", "sum"))
    every = pd.MultiIndex.from_tuples([(n, k, step) for n, k in grouped.index.droplevel("step").unique()
                                       for step in range(len(t.windows))], names=["name", "kind", "step"])
    full = grouped.reindex(every, fill_value=0).reset_index()
    return pd.DataFrame({"name": full["name"], "kind": full["kind"], "step": full["step"],
                         "calls": full["calls"].astype(float), "self_s": full["self_us"] * 1e-6})


def op_table(trace: Mapping[str, Any] | ev.Trace) -> pd.DataFrame:
    """Per operator and device kernel: calls and self seconds per timed step (means over the
    steps), and the spread of its self time over them (slowest less fastest step)."""
    steps = per_step(trace)
    if steps.empty:
        return pd.DataFrame(columns=OP_TABLE_COLUMNS)
    grouped = steps.groupby(["name", "kind"], as_index=False).agg(
        calls=("calls", "mean"), self_s=("self_s", "mean"), low=("self_s", "min"), high=("self_s", "max"))
    return pd.DataFrame({"name": grouped["name"], "kind": grouped["kind"], "calls": grouped["calls"],
                         "self_s": grouped["self_s"], "self_spread_s": grouped["high"] - grouped["low"]})


def step_seconds(t: ev.Trace) -> float:
    """The mean timed step (host), in seconds."""
    return float((t.windows["end_us"] - t.windows["start_us"]).mean()) * 1e-6 if len(t.windows) else np.nan


def step_spread(t: ev.Trace) -> float:
    """The slowest timed step less the fastest, in seconds."""
    lengths = t.windows["end_us"] - t.windows["start_us"]
    return float(lengths.max() - lengths.min()) * 1e-6 if len(t.windows) else np.nan


def case_diff(case_id: str, base: ev.Trace, current: ev.Trace) -> pd.DataFrame:
    """One case's operators on both sides: the changes of self time beyond the steps' spread
    first, then those within it, each the largest first (then by change of calls)."""
    merged = op_table(base).merge(op_table(current), on=["name", "kind"], how="outer", suffixes=("_base", "_current"))
    for column in ("calls_base", "calls_current", "self_s_base", "self_s_current", "self_spread_s_base",
                   "self_spread_s_current"):
        merged[column] = merged[column].astype(float).fillna(0.0)
    change = merged["self_s_current"] - merged["self_s_base"]
    noise = np.maximum(merged["self_spread_s_base"], merged["self_spread_s_current"])
    out = pd.DataFrame({
        "case_id": case_id, "name": merged["name"], "kind": merged["kind"],
        "calls_base": merged["calls_base"], "calls_current": merged["calls_current"],
        "calls_change": merged["calls_current"] - merged["calls_base"],
        "self_base_s": merged["self_s_base"], "self_current_s": merged["self_s_current"],
        "self_change_s": change, "noise_s": noise, "within_noise": change.abs() <= noise,
        "step_base_s": step_seconds(base), "step_current_s": step_seconds(current),
        "step_noise_s": max(step_spread(base), step_spread(current))}, columns=DIFF_COLUMNS)
    order = np.lexsort((out["name"].to_numpy(), -out["calls_change"].abs().to_numpy(),
                        -out["self_change_s"].abs().to_numpy(), out["within_noise"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def trace_diff(base_run: Path | str, current_run: Path | str,
               cases: str | Collection[str] | None = None) -> pd.DataFrame:
    """Every operator of every case profiled in both runs (``DIFF_COLUMNS``), per case the
    largest change of self time per step first. ``cases``: a pattern (``*`` and ``?``, else
    literal, as the gate's) or the case ids to diff. A ``TraceError`` names what cannot be read."""
    base, current = trace_folders(base_run), trace_folders(current_run)
    keep = _selector(cases)
    common = [case_id for case_id in current if case_id in base and keep(case_id)]
    if not common:
        which = "" if cases is None else " among the cases asked for"
        raise TraceError(f"no case profiled in both {base_run} ({fmt.count(len(base), 'case')}) and "
                         f"{current_run} ({fmt.count(len(current), 'case')}){which}")
    frames = [case_diff(case_id, _trace(base[case_id]), _trace(current[case_id])) for case_id in common]
    diff = pd.concat(frames, ignore_index=True)
    diff.attrs["only_base"] = [c for c in base if c not in current and keep(c)]
    diff.attrs["only_current"] = [c for c in current if c not in base and keep(c)]
    return diff


def _trace(folder: Path) -> ev.Trace:
    path = case_trace(folder)
    t = ev.Trace(read_trace(path))
    if t.windows.empty:
        raise TraceError(f"{path}: no profiled step in this trace")
    return t


def _selector(cases: str | Collection[str] | None) -> Callable[[str], bool]:
    if cases is None:
        return lambda case_id: True
    if isinstance(cases, str):
        from ..gate.compare import match_case  # the gate's patterns (the gate's package imports this one)

        return lambda case_id: match_case(cases, case_id)
    wanted = set(cases)
    return lambda case_id: case_id in wanted


def top_changes(diff: pd.DataFrame, top: int = DEFAULT_TOP) -> pd.DataFrame:
    """Per case, the ``top`` largest changes of self time, then up to ``top`` more operators
    whose calls per step changed (largest change first), in case order."""
    picked = []
    for _, rows in diff.groupby("case_id", sort=False):
        by_time = rows.head(top)
        rest = rows.drop(by_time.index)
        by_calls = rest[rest["calls_change"].abs() > CALLS_EPSILON]
        by_calls = by_calls.iloc[np.argsort(-by_calls["calls_change"].abs().to_numpy(), kind="stable")].head(top)
        picked += [by_time, by_calls]
    return pd.concat(picked) if picked else diff.head(0)


NAME_CHARS = 90  # GPU kernels' names (templates) run to hundreds of characters


def _shortened(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def _case_table(rows: pd.DataFrame) -> str:
    unit, scale = fmt.time_unit(pd.concat([rows["self_base_s"], rows["self_current_s"]]))
    status = np.where(rows["calls_base"] == 0, " (new)", np.where(rows["calls_current"] == 0, " (gone)", ""))
    view = pd.DataFrame({
        "operator": [f"`{_shortened(name)}`{s}" for name, s in zip(rows["name"], status)],
        "kind": rows["kind"],
        "calls/step": [f"{fmt.number(b)} → {fmt.number(c)}" for b, c in zip(rows["calls_base"], rows["calls_current"])],
        f"self/step ({unit})": [f"{fmt.number(b / scale)} → {fmt.number(c / scale)}"
                                for b, c in zip(rows["self_base_s"], rows["self_current_s"])],
        f"change ({unit})": [("+" if d > 0 else "") + fmt.number(d / scale) for d in rows["self_change_s"]],
        f"steps' spread ({unit})": [("within ±" if within else "beyond ±") + fmt.number(n / scale)
                                    for n, within in zip(rows["noise_s"], rows["within_noise"])],
        "calls change": [("+" if d > 0 else "") + fmt.number(d) if abs(d) > CALLS_EPSILON else ""
                         for d in rows["calls_change"]],
    })
    return view.to_markdown(index=False)


def _noise_line(case: pd.DataFrame) -> str:
    """How many of a case's changes of self time lie beyond the steps' spread."""
    beyond = int((~case["within_noise"].astype(bool)).sum())
    if not beyond:
        return ("No operator's self time changed beyond the run-to-run spread of the profiled steps: "
                "what differs below is noise.")
    return f"{fmt.count(beyond, 'operator')} changed self time beyond the spread of the profiled steps (listed first)."


def diff_markdown(diff: pd.DataFrame, top: int = DEFAULT_TOP, level: int = 3) -> list[str]:
    """Markdown lines: per case a heading with its step time on both sides and how many
    changes lie beyond the noise, then the table of its operators that changed most."""
    lines: list[str] = []
    for case_id, rows in top_changes(diff, top).groupby("case_id", sort=False):
        first = rows.iloc[0]
        step = (f"{fmt.with_unit(first['step_base_s'], fmt.TIME_UNITS)} → "
                f"{fmt.with_unit(first['step_current_s'], fmt.TIME_UNITS)} (the steps' spread: "
                f"{fmt.with_unit(first['step_noise_s'], fmt.TIME_UNITS)})")
        lines += [f"{'#' * level} `{case_id}`", "", f"Mean profiled step: {step}. "
                  f"{_noise_line(diff[diff['case_id'] == case_id])}", "", _case_table(rows), ""]
    return lines


def report(diff: pd.DataFrame, base_run: Path, current_run: Path, top: int = DEFAULT_TOP) -> str:
    """The trace diff as a Markdown document."""
    cases = diff["case_id"].nunique()
    lines = [f"# Trace diff: {base_run} → {current_run}", "",
             f"{fmt.count(cases, 'case')} profiled in both runs. Per case, the {top} operators whose self time per "
             f"step changed most, then those whose calls per step changed; per step means over each trace's "
             "profiled steps (timed part only). A change of self time no larger than the spread of that operator's "
             "per-step self times (slowest less fastest step, the wider side's) is within the run-to-run noise and "
             "marked so; changes beyond it come first. Calls per step are exact.", ""]
    for key, where in (("only_base", base_run), ("only_current", current_run)):
        if diff.attrs.get(key):
            lines += [f"Profiled in {where} only (not compared): " + ", ".join(f"`{c}`" for c in diff.attrs[key]), ""]
    return "\n".join(lines + diff_markdown(diff, top, level=2)).rstrip() + "\n"


# --- the gate --------------------------------------------------------------------------------


@dataclass
class GateTraces:
    """The trace diff of the gate's flagged cases, or why there is none (``note``)."""

    diff: pd.DataFrame
    note: str | None = None


def profiled(run: Path) -> bool:
    return (run / PROFILE_FILE).is_file() or (run / TRACES_DIR).is_dir()


def _run_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def gate_traces(base_runs: Sequence[Path], current_runs: Sequence[Path], cases: Collection[str]) -> GateTraces | None:
    """The diff of the flagged ``cases`` when both sides were profiled (the first profiled run
    of each side); None when nothing is flagged or a side has no traces. A trace that cannot
    be read gives a note, not a failed gate."""
    sides = [next((r for r in map(_run_dir, runs) if profiled(r)), None) for runs in (base_runs, current_runs)]
    if not cases or None in sides:
        return None
    try:
        return GateTraces(trace_diff(sides[0], sides[1], cases))
    except TraceError as exc:
        return GateTraces(pd.DataFrame(columns=DIFF_COLUMNS), note=f"No trace diff: {exc}.")


# --- the command line --------------------------------------------------------------------------


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid --top {text!r}; expected a whole number of 1 or more")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports trace-diff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="the base's run folder (recorded with --profile)")
    parser.add_argument("current", type=Path, help="the current run folder (recorded with --profile)")
    parser.add_argument("--cases", default=None, metavar="PATTERN",
                        help="only the cases matching PATTERN (* and ? as wildcards, else literal: brackets too)")
    parser.add_argument("--top", type=_positive, default=DEFAULT_TOP,
                        help=f"operators per case by change of self time (default {DEFAULT_TOP})")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                        help="also write the Markdown to FILE")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        diff = trace_diff(args.base, args.current, args.cases)
    except TraceError as exc:
        print(f"trace-diff: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    text = report(diff, args.base, args.current, args.top)
    print(text, end="")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, text)
        print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
