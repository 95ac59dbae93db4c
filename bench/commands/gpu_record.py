"""The records of ``python -m bench gpu-check`` and their summaries: each check's figures with the
bound each must keep, the check's status, and the JSON and Markdown files written from them
(atomically). Pure: the comparisons and the formats are tested without a GPU.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

PASS, FAIL, ERROR, SKIP = "pass", "fail", "error", "skip"
JSON_NAME, MARKDOWN_NAME = "gpu-check.json", "gpu-check.md"
# A closed end admits this much beyond it: 105 / 100 - 1 is 0.050000000000000044 in floating
# point, and a difference of exactly 5% is within ±5%.
ROUNDING = 1e-12


@dataclass(frozen=True)
class Bound:
    """What a figure must be: a range (ends included when ``closed``), one value, or a list that
    holds an item. ``whole_interval``: the figure's 95% interval must lie in the range too."""

    text: str
    low: float | None = None
    high: float | None = None
    closed: bool = True
    equals: tuple[Any, ...] = ()  # (the value,) when one value is required
    contains: str | None = None
    whole_interval: bool = False

    def holds(self, value: Any, interval: tuple[float, float] | None = None) -> bool:
        if value is None:
            return False
        if self.contains is not None:
            return isinstance(value, (list, tuple, str)) and self.contains in value
        if self.equals:
            return value == self.equals[0]
        ends = [value, *(interval if self.whole_interval and interval else ())]
        return all(self._in_range(v) for v in ends)

    def _in_range(self, value: Any) -> bool:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        if math.isnan(v):
            return False
        above = self.low is None or (v >= self.low - ROUNDING if self.closed else v > self.low)
        below = self.high is None or (v <= self.high + ROUNDING if self.closed else v < self.high)
        return above and below


def within(tolerance: float) -> Bound:
    """A relative difference of at most ``tolerance`` either way (the ends count)."""
    return Bound(f"within ±{tolerance:.0%}", low=-tolerance, high=tolerance, closed=True)


def strictly_between(low: float, high: float) -> Bound:
    """A share above ``low`` and below ``high`` (neither end counts)."""
    return Bound(f"above {low:.0%} and below {high:.0%}", low=low, high=high, closed=False)


def at_least(low: float, text: str) -> Bound:
    return Bound(text, low=low, closed=True)


def above(low: float, text: str, whole_interval: bool = False) -> Bound:
    return Bound(text, low=low, closed=False, whole_interval=whole_interval)


def equal(value: Any) -> Bound:
    return Bound(f"= {value}", equals=(value,))


def listing(item: str) -> Bound:
    return Bound(f"lists {item!r}", contains=item)


def relative_difference(value: float | None, reference: float | None) -> float | None:
    """``value / reference - 1``; None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return float(value) / float(reference) - 1.0


@dataclass
class Reading:
    """One figure of a check: its value and unit, the bound it must keep (None: reported only),
    the 95% interval where it has one, and why it is missing (``error``) or was not measured
    (``skipped``)."""

    case: str
    name: str
    value: Any = None
    unit: str = ""
    bound: Bound | None = None
    interval: tuple[float, float] | None = None
    error: str | None = None
    skipped: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool | None:
        if self.bound is None or self.error or self.skipped:
            return None
        return self.bound.holds(self.value, self.interval)

    def text(self) -> str:
        """The value as the summaries show it, or why there is none."""
        if self.error:
            return f"error: {self.error}"
        if self.skipped:
            return f"skipped: {self.skipped}"
        return show(self.value, self.unit, self.interval)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bound"] = self.bound.text if self.bound else None
        data["shown"] = self.text()
        data["ok"] = self.ok
        return data


def status_of(readings: Sequence[Reading]) -> str:
    """error if a figure could not be had, else fail if one breaks its bound (a bounded figure
    that is missing breaks it), else pass; skip when nothing was measured."""
    live = [r for r in readings if not r.skipped]
    if not live:
        return SKIP
    if any(r.error for r in live):
        return ERROR
    if any(r.ok is False for r in live):
        return FAIL
    return PASS


@dataclass
class Record:
    """What one check found: {check, status, figures with their bounds, note}."""

    check: str
    status: str
    readings: list[Reading] = field(default_factory=list)
    note: str = ""
    elapsed_s: float = 0.0
    commands: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(check=self.check, status=self.status, note=self.note, elapsed_s=round(self.elapsed_s, 1),
                    figures=[r.as_json() for r in self.readings], commands=self.commands)


# --- how figures read ---------------------------------------------------------------------

def _seconds(v: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(v) >= scale or unit == "µs":
            return f"{v / scale:.4g} {unit}"
    return f"{v} s"


FORMATS: dict[str, Callable[[float], str]] = {
    "s": _seconds,
    "bytes": lambda v: f"{v:,.0f} B ({v / 2**20:,.1f} MiB)",
    "rel": lambda v: f"{v:+.2%}",
    "share": lambda v: f"{v:.1%}",
    "x": lambda v: f"{v:.2f}×",
    "flop/s": lambda v: f"{v / 1e12:,.1f} TFLOP/s",
    "tokens/s": lambda v: f"{v:,.0f} tokens/s",
    "count": lambda v: f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}",
}


def show(value: Any, unit: str, interval: tuple[float, float] | None = None) -> str:
    """A figure as the summaries print it; ``-`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or unit not in FORMATS:
        return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    text = FORMATS[unit](value)
    if interval and None not in interval:
        text += f" ({FORMATS[unit](interval[0])} – {FORMATS[unit](interval[1])})"
    return text


def summary_line(records: Sequence[Record], cuda: bool) -> str:
    counts = Counter(r.status for r in records)
    if not cuda:
        return f"no CUDA: {counts[SKIP]} check{'' if counts[SKIP] == 1 else 's'} skipped"
    return ", ".join(f"{counts[s]} {word}" for s, word in ((PASS, "passed"), (FAIL, "failed"), (ERROR, "error"),
                                                         (SKIP, "skipped")) if counts[s]) or "no check run"


def write_atomic(path: Path, text: str) -> None:
    """A temporary file beside ``path``, then os.replace: a reader never sees half a summary."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the summary from others who read results
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary_json(records: Sequence[Record], meta: dict[str, Any], pending: Sequence[str]) -> str:
    data = dict(meta, summary=summary_line(records, meta["cuda"]), pending=list(pending),
                checks=[r.as_json() for r in records])
    return json.dumps(data, indent=1, default=str)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(records: Sequence[Record], meta: dict[str, Any], pending: Sequence[str]) -> str:
    lines = [f"# GPU check, {meta['started_at']}", "", f"**{summary_line(records, meta['cuda'])}**"
             + (f" (not yet run: {', '.join(pending)})" if pending else ""), "",
             "| | |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in meta["environment"].items()]
    lines += ["", "| check | status | case | figure | value | bound | |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for rec in records:
        why = _cell(rec.note.split("\n")[0]) if rec.status == SKIP and not rec.readings else ""
        lines.append(f"| {rec.check} | {rec.status} | | {why} | | | |")
        for r in rec.readings:
            ok = {True: "ok", False: "**FAIL**", None: ""}[r.ok]
            name = f"{r.name} ({r.note})" if r.note else r.name
            lines.append(f"| | | {_cell(r.case)} | {_cell(name)} | {_cell(r.text())} | "
                         f"{_cell(r.bound.text if r.bound else '')} | {ok} |")
    lines += ["", "## Notes", ""]
    lines += [f"- **{r.check}** ({r.status}, {r.elapsed_s:.0f} s): " + _cell(r.note.split("\n")[0]) for r in records]
    commands = [(r.check, c) for r in records for c in r.commands]
    if commands:
        lines += ["", "## Commands", ""] + [f"- {check}: `{c}`" for check, c in commands]
    return "\n".join(lines) + "\n"


def write_summaries(out: Path, records: Sequence[Record], meta: dict[str, Any],
                    pending: Sequence[str] = ()) -> tuple[Path, Path]:
    json_path, md_path = out / JSON_NAME, out / MARKDOWN_NAME
    write_atomic(json_path, summary_json(records, meta, pending))
    write_atomic(md_path, summary_markdown(records, meta, pending))
    return json_path, md_path
