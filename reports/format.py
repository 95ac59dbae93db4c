"""The one module that turns numbers into strings: units, significant digits, percentages.

A column's unit is chosen from its values (its median), so a column reads in one unit and
values compare at a glance. What a column is comes from its declaration (``bench.schema.figures``):
its kind fixes how it is shown, its label heads it. Nothing this module imports imports it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from .schema import Kind, get

TIME_UNITS = [("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)]
BYTE_UNITS = [("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10), ("B", 1.0)]
RATE_UNITS = [("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6), ("FLOP/s", 1.0)]
COUNT_UNITS = [("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3), ("FLOP", 1.0)]
KIND_UNITS = {Kind.SECONDS: TIME_UNITS, Kind.BYTES: BYTE_UNITS, Kind.FLOP_RATE: RATE_UNITS,
              Kind.FLOPS: COUNT_UNITS}
MISSING = "–"


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def is_missing(value: object) -> bool:
    if isinstance(value, (list, tuple, dict)):
        return False
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def pick_unit(units: list[tuple[str, float]], values: Iterable[Any]) -> tuple[str, float]:
    """One unit for a whole column, picked from its median."""
    present = sorted(abs(float(v)) for v in values if is_number(_plain(v)) and v != 0)
    if not present:
        return units[0] if units is TIME_UNITS else units[-1]
    typical = present[len(present) // 2]
    for unit, scale in units:
        if typical >= scale:
            return unit, scale
    return units[-1]


def time_unit(seconds: Iterable[float]) -> tuple[str, float]:
    return pick_unit(TIME_UNITS, seconds)


def number(value: object, digits: int = 3) -> str:
    """3 significant digits without scientific notation: 0.193, 19.3, 193, 1,934."""
    value = _plain(value)
    if is_missing(value):
        return MISSING
    if isinstance(value, float):
        if abs(value) >= 10 ** (digits - 1):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def scaled(values: Iterable[Any], units: list[tuple[str, float]]) -> tuple[str, list[str]]:
    """A column of numbers as strings in one unit: ``(unit, strings)``."""
    values = [_plain(v) for v in values]
    unit, scale = pick_unit(units, values)
    return unit, [number(float(v) / scale) if is_number(v) else MISSING for v in values]


def number_range(low: float, high: float) -> str:
    """``1.85–5.7``: two numbers of one unit, the lower first."""
    return f"{number(low)}–{number(high)}"


def with_unit(value: float, units: list[tuple[str, float]]) -> str:
    unit, (text,) = scaled([value], units)
    return f"{text} {unit}"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def percent(value: object, digits: int = 1) -> str:
    """A ratio as a percentage: 0.25 -> ``25.0%``."""
    value = _plain(value)
    return f"{100 * value:.{digits}f}%" if is_number(value) else MISSING


def relative(value: float) -> str:
    """A relative change with its sign: 0.123 -> ``+12.3%``."""
    return f"{100 * value:+.1f}%"


def decimal(value: float, digits: int = 2) -> str:
    """A fixed number of decimals: a load average, 9.00."""
    return f"{value:.{digits}f}"


def short_percent(value: float) -> str:
    """A tolerance or threshold as few digits as it needs: 0.01 -> ``1%``."""
    return f"{100 * value:g}%"


def signed_percent(value: object) -> str:
    value = _plain(value)
    if not is_number(value):
        return MISSING
    return "0.0%" if abs(value) < 0.0005 else f"{value:+.1%}"  # never "-0.0%"


def speedup(value: float) -> str:
    return f"{value:.2f}×"


NOT_SIGNIFICANT = "not significant"


def speedup_interval(value: object, low: object, high: object) -> str:
    """A speedup with its 95% interval, marked when the interval spans 1:
    ``1.04× (0.97–1.12) — not significant``; without an interval, the speedup alone."""
    value, low, high = _plain(value), _plain(low), _plain(high)
    if not is_number(value):
        return MISSING
    if not (is_number(low) and is_number(high)):
        return speedup(value)
    text = f"{speedup(value)} ({low:.2f}–{high:.2f})"
    return text if low > 1 or high < 1 else f"{text} — {NOT_SIGNIFICANT}"


def speedup_label(value: float) -> str:
    """A speedup short enough for a heatmap cell: ``1.51×``, ``12×``."""
    return f"{value:.0f}×" if value >= 9.95 else f"{value:.2f}×"


def p_value(value: float) -> str:
    return f"{value:.1e}"


def time_with_ci(median_s: Iterable[float], low_s: Iterable[float],
                 high_s: Iterable[float]) -> tuple[str, list[str], list[str]]:
    """Medians and their ``low – high`` intervals as strings in the medians' unit."""
    median_s = list(median_s)
    unit, scale = time_unit(median_s)
    _, medians = scaled(median_s, [(unit, scale)])
    _, lows = scaled(low_s, [(unit, scale)])
    _, highs = scaled(high_s, [(unit, scale)])
    return unit, medians, [f"{lo} – {hi}" for lo, hi in zip(lows, highs)]


def ci_half_width(median: object, low: object, high: object) -> str:
    """The 95% CI as a relative half-width: bounds at 3 digits would often print equal to the median."""
    median, low, high = _plain(median), _plain(low), _plain(high)
    return f"±{50 * (high - low) / median:.1f}%" if is_number(low) and is_number(high) and median else MISSING


def reasons(value: Any, limit: int = 120) -> str:
    """A list of reasons (graph breaks, recompiles) on one line."""
    if not isinstance(value, (list, tuple)) or not value:
        return "" if is_missing(value) or isinstance(value, (list, tuple)) else str(value)
    return "; ".join(str(r)[:limit] for r in value)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, tuple, str)) else value


def _label(column: str) -> str:
    """A header for a column nobody declared: ``compile_time_s`` -> ``compile time``."""
    return column.removeprefix("mem_").removesuffix("_s").removesuffix("_bytes").replace("_", " ")


def column(name: str, values: pd.Series) -> dict[str, list[str]]:
    """One column as ``{header: strings}``, shown as its declaration's kind says (a column
    nobody declared: by its suffix, ``_s`` seconds and ``_bytes`` bytes, else as it is)."""
    figure = get(name)
    kind = figure.kind if figure is not None else (
        Kind.SECONDS if name.endswith("_s") else Kind.BYTES if name.endswith("_bytes") else None)
    label = figure.label if figure is not None else _label(name)
    if kind in KIND_UNITS:
        unit, strings = scaled(values, KIND_UNITS[kind])
        return {unit if label == kind.unit else f"{label} ({unit})": strings}
    if kind is Kind.RATIO:
        return {label: [percent(v) for v in values]}
    if kind is Kind.FLAG:
        return {label: [label if v is True or v == 1 else "" for v in values]}
    if kind is Kind.TEXT:
        return {label: [reasons(v) for v in values]}
    return {label if figure is not None else name: [number(v) for v in values]}


def humanize(df: pd.DataFrame) -> pd.DataFrame:
    """Raw columns -> display strings, each column in the unit its values call for. The
    median with its CI columns becomes ``median (unit)`` and ``95% CI`` (a relative half-width)."""
    out: dict[str, list[str]] = {}
    with_ci = "median_s" in df and "median_ci_low_s" in df and "median_ci_high_s" in df
    for name in df.columns:
        if with_ci and name in ("median_ci_low_s", "median_ci_high_s"):
            continue  # shown together, in the median's unit
        if name == "speedup":
            out["speedup"] = [speedup(v) for v in df[name]]
        else:
            out.update(column(name, df[name]))
        if with_ci and name == "median_s":
            out["95% CI"] = [ci_half_width(m, lo, hi) for m, lo, hi in
                             zip(df["median_s"], df["median_ci_low_s"], df["median_ci_high_s"])]
    return pd.DataFrame(out, index=df.index)


def environment_value(key: str, value: Any) -> str:
    """One field of a run's environment."""
    if value is None:
        return MISSING
    if key == "gpu_memory_bytes":
        return with_unit(value, BYTE_UNITS)
    if key == "cpu_peak_flops":
        return with_unit(value, RATE_UNITS)
    if key == "git_commit":
        return str(value)[:12]
    return number(value)


def plain_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record with NaN as None and numpy scalars as Python ones (for JSON)."""
    return {k: None if is_missing(v) else _plain(v) for k, v in record.items()}
