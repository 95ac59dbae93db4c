"""Tables from the tidy results DataFrame. Pure functions: DataFrame in, DataFrame out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.schema.case import CASE_FIELDS, DATA_PHASES, DEVICES, MODES, PHASES
from bench.schema.status import Status

from ..schema import View, figures, get, names
from ..stats import ratio_interval

PHASE_ORDER = list(PHASES)
TRACE = "trace_dir"  # the case's profiler trace folder, when --profile made one
# A compiled case's cold and warm compile times, and whether the cold one hit a cache (shown beside them).
COMPILE_TIME, COMPILE_WARM, COMPILE_CACHE = "compile_time_s", "compile_warm_s", "compile_cache"
# The changes a report prices, each where both sides were measured: (case field, before,
# after, what the report calls the change).
CHANGES = [("mode", "eager", "compile", "eager → compile"), ("dtype", "float32", "bfloat16", "float32 → bfloat16"),
           ("amp", "off", "bfloat16", "float32 → bfloat16 autocast"),
           ("amp", "off", "float16", "float32 → float16 autocast"),
           ("memory_format", "contiguous", "channels_last", "contiguous → channels_last"),
           ("device", "cpu", "cuda", "CPU → CUDA")]
# Where a step's memory goes, stacked per case in this order (bench's memory pass), and its sum.
BREAKDOWN = ("mem_param_bytes", "mem_grad_bytes", "mem_optimizer_bytes", "mem_activation_bytes")
BREAKDOWN_TOTAL = "mem_step_total_bytes"


def ok(df: pd.DataFrame) -> pd.DataFrame:
    """Measured cases only (skipped and failed cases carry no timing)."""
    return df[df["status"] == Status.OK.value]


def timed(df: pd.DataFrame) -> pd.DataFrame:
    """Measured cases with a timing (a count run's rows have none)."""
    rows = ok(df)
    return rows[rows["median_s"].notna()] if "median_s" in rows else rows.iloc[0:0]


def untimed(df: pd.DataFrame) -> pd.DataFrame:
    """Measured cases without a timing (instruction counts), with the figures they hold:
    every declared number shown anywhere (table or history) that one of them recorded."""
    rows = ok(df)
    rows = rows[rows["median_s"].isna()] if "median_s" in rows else rows
    shown = [f.name for f in figures() if f.views and f.kind.numeric and present(rows, f.name)]
    return matrix_order(rows)[["case_id", *shown]].reset_index(drop=True)


def table_figures() -> list[str]:
    """The figures of the per-phase tables: those declared for the table view, the timing
    pass's first (the statistics derived from its rounds may be declared before it), the
    compile cache beside the compile times."""
    ordered = sorted(names(View.TABLE), key=lambda n: get(n).source != "timing")
    beside = [n for n in (COMPILE_TIME, COMPILE_WARM) if n in ordered]
    if COMPILE_CACHE in ordered and beside:
        ordered.remove(COMPILE_CACHE)
        ordered.insert(ordered.index(beside[-1]) + 1, COMPILE_CACHE)
    return ordered


def phase_table(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    """The measured cases of one phase, in matrix order: the case fields, the table figures
    and the trace folder."""
    rows = matrix_order(ok(df)[ok(df)["phase"] == phase])
    wanted = ["case_id", *CASE_FIELDS, *table_figures(), TRACE]
    return rows[[c for c in dict.fromkeys(wanted) if c in rows]].reset_index(drop=True)


def _speedup(df: pd.DataFrame, axis: str, before: str, after: str) -> pd.DataFrame:
    """Pivot median time on ``axis`` and add ``speedup = before / after`` where both exist."""
    keys = [c for c in CASE_FIELDS if c != axis]
    rows = ok(df)
    rows = rows[rows[axis].isin([before, after])]
    empty = pd.DataFrame(columns=[*keys, f"{before}_s", f"{after}_s", "speedup"])
    if rows.empty:
        return empty
    # Fields that are None (the optimizer of forward, torch's default prefetch): pivot_table
    # would drop those rows, so they pivot as "-" and come back as None.
    absent = [k for k in keys if rows[k].isna().any()]
    rows = rows.assign(**{k: rows[k].astype(object).where(rows[k].notna(), "-") for k in absent})
    wide = rows.pivot_table(index=keys, columns=axis, values="median_s", aggfunc="median")
    if before not in wide or after not in wide:
        return empty
    wide = wide[[before, after]].dropna()
    wide.columns = [f"{before}_s", f"{after}_s"]
    wide["speedup"] = wide[f"{before}_s"] / wide[f"{after}_s"]
    out = wide.reset_index()
    for k in absent:
        out[k] = out[k].replace("-", None)
    return out


def speedup_pairs(df: pd.DataFrame, axis: str, before: str, after: str) -> pd.DataFrame:
    """Each pair of timed cases that differ only in ``axis`` (``before`` vs ``after``): both
    medians, ``speedup = before / after`` and its 95% interval (``speedup_low``/``speedup_high``,
    ``reports.stats.ratio_interval`` on the raw rounds, as the gate computes it), the after
    side's ``case_id``."""
    keys = [c for c in CASE_FIELDS if c != axis]
    columns = [*keys, "case_id", "before_s", "after_s", "speedup", "speedup_low", "speedup_high"]
    rows = timed(df)
    sides = []
    for value in (before, after):
        side = rows[rows[axis] == value].assign(_optimizer=lambda r: r["optimizer"].fillna("-"))
        sides.append(side.drop_duplicates(subset=[*keys, "_optimizer"], keep="last"))
    merge_keys = [k if k != "optimizer" else "_optimizer" for k in keys]
    pairs = sides[0].merge(sides[1], on=merge_keys, suffixes=("_b", "_a"))
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    intervals = [ratio_interval(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
                 if len(a) and len(b) else (np.nan, np.nan)
                 for b, a in zip(pairs["times_s_b"], pairs["times_s_a"])]
    out = pd.DataFrame({k: pairs[k] if k in pairs else pairs[f"{k}_a"] for k in keys})
    out["case_id"] = pairs["case_id_a"].to_numpy()
    out["before_s"], out["after_s"] = pairs["median_s_b"].to_numpy(), pairs["median_s_a"].to_numpy()
    out["speedup"] = out["before_s"] / out["after_s"]
    out["speedup_low"] = [lo for lo, _ in intervals]
    out["speedup_high"] = [hi for _, hi in intervals]
    return matrix_order(out.assign(**{axis: after}))[columns]


UNPRICED_COLUMNS = ["case_id", "side", "status", "reason"]


def _pair_key(row: pd.Series, keys: list[str]) -> tuple[str, ...]:
    return tuple("-" if pd.isna(row[k]) else str(row[k]) for k in keys)  # None fields pair with None


def unpriced_pairs(df: pd.DataFrame, axis: str, before: str, after: str) -> pd.DataFrame:
    """Each pair of a change that was asked for (a case with ``axis`` = ``after`` is in the run)
    but cannot be priced, because a side is not timed: one row per such side, naming the
    ``after`` case, the side's ``axis`` value, its status (None: not in the run) and the reason
    (the headline of its error). A case measured only ``before`` is no pair: nobody asked for it."""
    keys = [c for c in CASE_FIELDS if c != axis]
    rows = df[df[axis].isin([before, after])].drop_duplicates("case_id", keep="last")
    sides = {value: {_pair_key(r, keys): r for _, r in rows[rows[axis] == value].iterrows()}
             for value in (before, after)}
    priced = set(timed(rows)["case_id"])
    found = []
    for key, row in sides[after].items():
        for value in (before, after):
            side = sides[value].get(key)
            if side is not None and side["case_id"] in priced:
                continue
            status = None if side is None else str(side["status"])
            reason = "" if side is None else summary_line(_error(side) or "measured, not timed", limit=160)
            found.append(dict(case_id=row["case_id"], side=value, status=status, reason=reason))
    return pd.DataFrame(found, columns=UNPRICED_COLUMNS)


def _error(row: pd.Series) -> str:
    """A row's error, else why it is invalid (a list of recompile reasons, or one)."""
    for column in ("error", "invalid_reason"):
        value = row.get(column)
        text = "; ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        if isinstance(text, str) and text:
            return text
    return ""


def breakdown_parts(df: pd.DataFrame) -> list[str]:
    """The memory breakdown figures declared and recorded (none for runs before they existed)."""
    return [n for n in BREAKDOWN if get(n) is not None and present(df, n)]


def memory_breakdown(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    """Per timed case of a phase, in matrix order: the breakdown figures it recorded and their
    sum (``BREAKDOWN_TOTAL``). Empty when fewer than two parts were recorded: the parameters
    alone do not say where memory goes."""
    rows = timed(df)
    rows = rows[rows["phase"] == phase]
    parts = breakdown_parts(rows)
    if len(parts) < 2:
        return pd.DataFrame(columns=["case_id", *parts, BREAKDOWN_TOTAL])
    rows = matrix_order(rows.dropna(subset=parts, how="all"))
    table = rows[["case_id", *parts]].reset_index(drop=True)
    return table.assign(**{BREAKDOWN_TOTAL: table[parts].sum(axis="columns")})


def compile_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """eager -> compile: ``speedup`` > 1 means torch.compile is faster."""
    return _speedup(df, "mode", "eager", "compile")


def device_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """cpu -> cuda: ``speedup`` > 1 means the GPU is faster."""
    return _speedup(df, "device", "cpu", "cuda")


def compile_table(df: pd.DataFrame) -> pd.DataFrame:
    """Compiled, measured cases: cold and warm compile times (runs from before the warm one
    have the first alone) and every figure the compile pass declares for a detail view
    (graphs, graph breaks and their reasons, recompiles)."""
    measured = df["status"].map(lambda s: s in {st.value for st in Status if st.measured})
    compiled = df[(df["mode"] == "compile") & measured]
    detail = [n for n in names(View.DETAIL, source="compile") if n in compiled]
    if compiled.empty or not detail:
        return pd.DataFrame()
    extra = [n for n in (COMPILE_WARM, COMPILE_CACHE) if present(compiled, n)]
    return compiled[["case_id", COMPILE_TIME, *extra, *detail]].reset_index(drop=True)


def not_measured(df: pd.DataFrame) -> pd.DataFrame:
    """Skipped, failed and invalid cases with the reason (last line of the error)."""
    rows = df[df["status"] != Status.OK.value]
    reason = rows["error"].where(rows["error"].notna(), rows.get("invalid_reason"))
    return pd.DataFrame({"case_id": rows["case_id"], "status": rows["status"],
                         "reason": reason.fillna("").map(summary_line)}).reset_index(drop=True)


def summary_line(text: object, limit: int = 200) -> str:
    """The headline of a message: its first line, and the next when the first ends in ':'."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    head = lines[0] + (" " + lines[1] if lines[0].endswith(":") and len(lines) > 1 else "")
    return head[:limit]


def matrix_order(df: pd.DataFrame, first: list[str] | None = None) -> pd.DataFrame:
    """Rows in the order the suite runs them (phase, model, optimizer, device, mode, …),
    after the ``first`` columns (e.g. ``["run"]``)."""
    ranks = {"phase": PHASE_ORDER, "device": list(DEVICES), "mode": list(MODES)}
    keys = {f"_{k}": df[k].map({v: i for i, v in enumerate(order)}) for k, order in ranks.items()}
    rest = [f"_{f}" if f in ranks else f for f in CASE_FIELDS]
    order = [*(first or []), "_phase", *(k for k in rest if k != "_phase")]
    return (df.assign(**keys).sort_values(order, na_position="first", kind="stable")
            .drop(columns=list(keys)).reset_index(drop=True))


def present(df: pd.DataFrame, column: str) -> bool:
    """Whether a column exists and holds at least one value (figures from newer runs)."""
    return column in df.columns and df[column].notna().any()


def pipeline(df: pd.DataFrame) -> pd.DataFrame:
    """The measured data-phase cases (the DataLoader alone, the seed's epoch) in matrix order,
    with ``setting``: their loader settings in words."""
    rows = timed(df)
    rows = matrix_order(rows[rows["phase"].isin(DATA_PHASES)])
    return rows.assign(setting=[loader_setting(r) for _, r in rows.iterrows()])


def loader_setting(row: pd.Series) -> str:
    """``2 workers, pin_memory, v2`` — the DataLoader's settings of a case; the seed's: ``0 workers, v1``."""
    workers = int(row.get("num_workers") or 0)
    parts = [f"{workers} worker{'' if workers == 1 else 's'}"]
    parts += ["pin_memory"] if row.get("pin_memory") in (True, "True", 1, "1") else []
    parts += ["persistent"] if row.get("persistent_workers") in (True, "True", 1, "1") else []
    prefetch = row.get("prefetch_factor")
    parts += [f"prefetch {int(prefetch)}"] if prefetch is not None and not pd.isna(prefetch) else []
    parts.append(str(row.get("transforms") or "v1"))
    return ", ".join(parts)
