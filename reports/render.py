"""Rendering: the one place numbers become strings (CSV, Markdown), with units chosen here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from . import profile as profiles
from . import tables
from .load import load
from .tables import PHASE_ORDER

TIME_UNITS = [("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)]
BYTE_UNITS = [("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10), ("B", 1.0)]
RATE_UNITS = [("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6), ("FLOP/s", 1.0)]
COUNT_UNITS = [("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3), ("FLOP", 1.0)]
# Environment fields shown at the top of a report, in this order, with their labels.
ENVIRONMENT_FIELDS = [
    ("torch_version", "torch"), ("cuda_version", "CUDA"), ("cudnn_version", "cuDNN"),
    ("python_version", "Python"), ("gpu_name", "GPU"), ("gpu_driver", "GPU driver"),
    ("gpu_max_sm_clock_mhz", "GPU max SM clock (MHz)"), ("gpu_memory_bytes", "GPU memory"),
    ("cpu_model", "CPU"), ("cpu_count", "CPU cores"), ("torch_num_threads", "torch threads"),
    ("cpu_governor", "CPU governor"), ("cpu_peak_flops", "CPU matmul peak"),
    ("load_avg_1m", "load average at start"), ("tf32_matmul", "TF32 matmul"),
    ("tf32_cudnn", "TF32 cuDNN"), ("cudnn_benchmark", "cudnn.benchmark"),
    ("git_commit", "git commit"), ("git_dirty", "uncommitted changes"), ("hostname", "host"),
    ("started_at", "started"),
]


def _pick(units: list[tuple[str, float]], values: Iterable[Any]) -> tuple[str, float]:
    """One unit for a whole column, picked from its median, so values compare at a glance."""
    present = sorted(abs(float(v)) for v in values if _is_number(v) and v != 0)
    if not present:
        return units[0] if units is TIME_UNITS else units[-1]
    typical = present[len(present) // 2]
    for unit, scale in units:
        if typical >= scale:
            return unit, scale
    return units[-1]


def time_unit(seconds: Iterable[float]) -> tuple[str, float]:
    return _pick(TIME_UNITS, seconds)


def scaled(values: Iterable[Any], units: list[tuple[str, float]]) -> tuple[str, list[str]]:
    """A column of numbers as strings in one unit (picked by ``_pick``): ``(unit, strings)``."""
    values = list(values)
    unit, scale = _pick(units, values)
    return unit, _scaled(values, scale)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def signed_percent(value: float) -> str:
    if value is None or _isnan(value):
        return "–"
    return "0.0%" if abs(value) < 0.0005 else f"{value:+.1%}"  # never "-0.0%"


def time_with_ci(median_s: Iterable[float], low_s: Iterable[float],
                 high_s: Iterable[float]) -> tuple[str, list[str], list[str]]:
    """Medians and their ``low – high`` intervals as strings in the medians' unit."""
    median_s = list(median_s)
    unit, scale = time_unit(median_s)
    _, medians = scaled(median_s, [(unit, scale)])
    _, lows = scaled(low_s, [(unit, scale)])
    _, highs = scaled(high_s, [(unit, scale)])
    return unit, medians, [f"{lo} – {hi}" for lo, hi in zip(lows, highs)]


def speedup_label(value: float) -> str:
    """A speedup short enough for a heatmap cell: ``1.51×``, ``12×``."""
    return f"{value:.0f}×" if value >= 9.95 else f"{value:.2f}×"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _isnan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or _isnan(value):
        return "–"
    if isinstance(value, float):
        # 3 significant digits without scientific notation: 0.193, 19.3, 193, 1,934.
        if abs(value) >= 10 ** (digits - 1):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _scaled(values: pd.Series, scale: float) -> list[str]:
    return [_fmt(float(v) / scale) if _is_number(v) else "–" for v in values]


def humanize(df: pd.DataFrame) -> pd.DataFrame:
    """Raw columns -> display strings; each column's unit is chosen from its values."""
    out = pd.DataFrame(index=df.index)
    time_scale = time_unit(df["median_s"]) if "median_s" in df else None
    for column in df.columns:
        values = df[column]
        if column in ("median_ci_low_s", "median_ci_high_s"):
            continue  # shown together, in the median's unit
        if column == "median_s" and "median_ci_low_s" in df:
            unit, scale = time_scale
            out[f"median ({unit})"] = _scaled(values, scale)
            # As a relative half-width: bounds at 3 digits would often print equal to the median.
            out["95% CI"] = [f"±{50 * (hi - lo) / med:.1f}%" if _is_number(lo) and med else "–"
                             for lo, hi, med in zip(df["median_ci_low_s"], df["median_ci_high_s"], values)]
        elif column == "samples_per_s":
            out["samples/s"] = [_fmt(float(v)) if _is_number(v) else "–" for v in values]
        elif column == "flops_per_s":
            unit, scale = _pick(RATE_UNITS, values)
            out[unit] = _scaled(values, scale)
        elif column == "flops":
            unit, scale = _pick(COUNT_UNITS, values)
            out[f"{unit}/call"] = _scaled(values, scale)
        elif column.endswith("_s"):
            unit, scale = time_unit(values)
            out[f"{column[:-2].replace('_', ' ')} ({unit})"] = _scaled(values, scale)
        elif column.endswith("_bytes"):
            unit, scale = _pick(BYTE_UNITS, values)
            label = column.removeprefix("mem_").removesuffix("_bytes").replace("_", " ")
            out[f"{label} ({unit})"] = _scaled(values, scale)
        elif column in ("iqr_rel", "peak_share"):
            label = {"iqr_rel": "IQR", "peak_share": "of peak"}[column]
            out[label] = [f"{100 * v:.1f}%" if _is_number(v) else "–" for v in values]
        elif column == "speedup":
            out["speedup"] = [f"{v:.2f}×" for v in values]
        elif column == "noisy":
            out["noise"] = ["noisy" if v is True else "" for v in values]
        else:
            out[column] = [_fmt(v) for v in values]
    return out


def _markdown_table(df: pd.DataFrame) -> str:
    return humanize(df).to_markdown(index=False)


PHASE_VIEW = ["case_id", "median_s", "median_ci_low_s", "median_ci_high_s", "iqr_rel", "rounds",
              "samples_per_s", "mem_held_bytes", "mem_peak_bytes", "flops_per_s", "peak_share",
              "compile_time_s", "noisy"]


def _phase_view(table: pd.DataFrame) -> pd.DataFrame:
    """What a reader needs per case; columns with nothing in them are left out."""
    view = table[[c for c in PHASE_VIEW if c in table]].copy()
    if "noisy" in view and not view["noisy"].eq(True).any():
        view = view.drop(columns=["noisy"])
    if "trace_dir" in table:
        view["trace"] = table["trace_dir"].map(_trace_link)
    return view.dropna(axis="columns", how="all")


def environment_table(environments: Mapping[str, Mapping[str, Any]]) -> str:
    """Key environment fields, one column per run."""
    runs = {run: env for run, env in environments.items() if env}
    if not runs:
        return ""
    rows = []
    for key, label in ENVIRONMENT_FIELDS:
        values = [env.get(key) for env in runs.values()]
        if all(v is None for v in values):
            continue
        rows.append([label, *(_env_value(key, v) for v in values)])
    frame = pd.DataFrame(rows, columns=["", *runs])
    return frame.to_markdown(index=False)


def _env_value(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key == "gpu_memory_bytes":
        unit, scale = _pick(BYTE_UNITS, [value])
        return f"{_fmt(value / scale)} {unit}"
    if key == "cpu_peak_flops":
        unit, scale = _pick(RATE_UNITS, [value])
        return f"{_fmt(value / scale)} {unit}"
    if key == "git_commit":
        return str(value)[:12]
    return _fmt(value)


BUSY_LOAD_PER_CORE = 0.5


def busy_machine_warnings(environments: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A warning per run that started on a busy machine: competing processes stall torch's threads."""
    lines = []
    for run, env in environments.items():
        load, cores = env.get("load_avg_1m"), env.get("cpu_count")
        if _is_number(load) and _is_number(cores) and load > BUSY_LOAD_PER_CORE * cores:
            lines += [f"> **Warning:** run {run} started with a load average of {load:.2f} on {cores} "
                      "cores; other processes compete with torch's threads and can inflate times "
                      "many-fold. Each case's `load_avg_1m` is in the CSV.", ""]
    return lines


def compile_view(df: pd.DataFrame) -> pd.DataFrame:
    """Compiled cases: compile time, graphs, graph breaks and their reasons, recompiles."""
    compiled = df[(df["mode"] == "compile") & df["status"].isin(["ok", "invalid"])]
    if compiled.empty or "graph_count" not in compiled:
        return pd.DataFrame()
    return pd.DataFrame({
        "case_id": compiled["case_id"], "compile_time_s": compiled["compile_time_s"],
        "graphs": compiled["graph_count"], "graph breaks": compiled["graph_break_count"],
        "recompiles": compiled["recompiles"],
        "break reasons": compiled["graph_breaks"].map(_join_reasons),
    })


def compile_section(df: pd.DataFrame) -> str:
    view = compile_view(df)
    return "" if view.empty else _markdown_table(view)


def _join_reasons(reasons: Any) -> str:
    if not isinstance(reasons, list) or not reasons:
        return ""
    return "; ".join(str(r)[:120] for r in reasons)


def markdown(df: pd.DataFrame, title: str = "blitzbench report") -> str:
    """The Markdown report: environment, a table per phase, speedups, compile, unmeasured cases."""
    measured = tables.ok(df)
    runs = ", ".join(sorted(df["run"].astype(str).unique()))
    noisy = int(measured["noisy"].eq(True).sum()) if "noisy" in measured else 0
    lines = [f"# {title}", "",
             f"Run {runs}: {len(measured)} cases measured, {len(df) - len(measured)} not measured or "
             f"invalid, {noisy} noisy. Times are medians per call with the 95% confidence interval "
             "of the median; IQR is the interquartile range as a share of the median; held is what a "
             "step keeps between steps, peak the most live tensor memory during one.", ""]
    lines += busy_machine_warnings(df.attrs.get("environments", {}))
    env = environment_table(df.attrs.get("environments", {}))
    if env:
        lines += ["## Environment", "", env, ""]
    for phase in PHASE_ORDER:
        table = tables.phase_table(df, phase)
        if not table.empty:
            lines += [f"## {phase}", "", _markdown_table(_phase_view(table)), ""]
    for heading, table in (("eager → compile speedup", tables.compile_speedup(df)),
                           ("CPU → CUDA speedup", tables.device_speedup(df))):
        if not table.empty:
            lines += [f"## {heading}", "", _markdown_table(table), ""]
    compiled = compile_section(df)
    if compiled:
        lines += ["## Compile behaviour", "", compiled, ""]
    missing = tables.not_measured(df)
    if not missing.empty:
        lines += ["## Not measured or invalid", "", missing.to_markdown(index=False), ""]
    return "\n".join(lines)


def write_report(run_dir: Path | str) -> dict[str, Path]:
    """Load a run folder and write ``report.md``, ``report.csv`` and ``report.html`` into it."""
    run_dir = Path(run_dir)
    df = load(run_dir)
    md_path = run_dir / "report.md"
    csv_path = run_dir / "report.csv"
    profile = profiles.load_profile(run_dir)
    text = markdown(df, title=f"blitzbench report — {run_dir.name}") + profiles_markdown(profile)
    md_path.write_text(text, encoding="utf-8")
    df.drop(columns=["times_s"]).to_csv(csv_path, index=False)
    paths = {"markdown": md_path, "csv": csv_path}
    if not profile.empty:
        paths["profile csv"] = run_dir / profiles.PROFILE_CSV
        profile.to_csv(paths["profile csv"], index=False)
    from .html import write_html  # html builds on this module

    paths["html"] = write_html(run_dir, df)
    return paths


def _trace_link(trace_dir: object) -> str | None:
    """A Markdown link to a trace folder, relative to the report (both live in the run folder)."""
    return f"[trace]({trace_dir})" if isinstance(trace_dir, str) and trace_dir else None


# Report column names for the profile tables; ``_s`` columns get their unit from humanize.
_PROFILE_NAMES = {"name": "operator", "calls_per_step": "calls/step", "self_cpu_s": "self CPU_s",
                  "self_device_s": "self device_s", "cpu_pct": "CPU %",
                  "op_calls_per_step": "op calls/step",
                  "kernel_launches_per_step": "kernel launches/step", "trace_dir": "trace"}


def profiles_markdown(profile: pd.DataFrame, top: int = 5) -> str:
    """The "Profiles" section: counts per step per case, then each case's top operators."""
    if profile.empty:
        return ""
    summary = profiles.cases(profile)
    summary = summary.assign(trace_dir=summary["trace_dir"].map(
        lambda d: f"[{d}]({d})" if isinstance(d, str) else None))
    summary = summary.dropna(axis="columns", how="all").rename(columns=_PROFILE_NAMES)
    steps = ", ".join(str(int(n)) for n in sorted(profile["steps"].dropna().unique()))
    lines = ["", "## Profiles", "",
             f"Per step, averaged over the {steps} profiled steps of each case, counting the timed "
             "part only (the untimed setup of `backward` is in the trace, marked, but not counted). "
             "Times are self times. Open a trace with `nox -s tensorboard` or in Perfetto.", "",
             humanize(summary).to_markdown(index=False), ""]
    for case_id in summary["case_id"]:
        lines += [f"### {case_id}", ""]
        for by, what in (("self_cpu_s", "CPU"), ("self_device_s", "device")):
            ops = profiles.top_ops(profile, case_id, by=by, n=top)
            if not ops.empty:
                lines += [f"Top operators by self {what} time:", "",
                          _markdown_table(ops.rename(columns=_PROFILE_NAMES)), ""]
    return "\n".join(lines)


# --- history (``python -m reports --history``) -------------------------------------------

SIGNIFICANCE = ("A change is marked where the 95% confidence intervals of the medians of a case's "
                "consecutive runs do not overlap and the median moved by at least {:.0%}.")


def history_markdown(title: str, changes: pd.DataFrame, latest: pd.DataFrame, runs: pd.DataFrame,
                     min_change: float) -> str:
    """The history as Markdown: significant changes, each case's latest median, the runs."""
    counts = ", ".join(count(n, noun) for n, noun in
                       ((len(runs), "run"), (len(latest), "case"), (len(changes), "significant change")))
    lines = [f"# {title}", "", f"{counts}. " + SIGNIFICANCE.format(min_change), ""]
    if not changes.empty:
        shown = changes.assign(change=changes["change"].map(signed_percent))
        lines += ["## Significant changes", "", humanize(shown).to_markdown(index=False), ""]
    unit, medians, cis = time_with_ci(latest["median_s"], latest["ci_low_s"], latest["ci_high_s"])
    view = pd.DataFrame({"case_id": latest["case_id"], "runs": latest["runs"],
                         f"median ({unit})": medians, f"95% CI ({unit})": cis,
                         "vs previous run": latest["change"].map(signed_percent),
                         "significant": latest["flag"]})
    lines += ["## Latest run of each case", "", view.to_markdown(index=False), "",
              "## Runs", "", humanize(runs).to_markdown(index=False), ""]
    return "\n".join(lines)
