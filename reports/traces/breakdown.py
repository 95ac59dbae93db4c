"""Where a profiled step goes, from its trace: shares of forward, backward, optimizer, data
loading (when the step loads data) and other; on a GPU also kernel time, idle time and
launch overhead. And one step's top-level spans for the timeline picture.

Every moment of a timed step belongs to one part: the phase whose span covers it (the
names in ``bench.profiling.PHASE_PREFIXES``, whichever thread runs it), else other; so
the host shares of a step sum to 1. On a GPU, the device step runs from the step's start
to the end of the last kernel its launches started: kernel is the time some kernel, copy or
memset runs on the device (any stream), idle the rest (the two sum to 1); launch overhead is
the share of the host step spent in launch calls (``cudaLaunchKernel`` and kin), which
overlaps the host parts. Shares are of the steps asked for together (time-weighted); the
report asks for the step of median length, the one its timeline draws, so the table and the
picture show the same step (with three profiled steps one slow step, a stall or a page fault,
would otherwise make the table's shares a different step's than the picture's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import events as ev
from .files import TraceError, case_trace, read_trace

HOST_PARTS = ("forward", "backward", "optimizer", "data loading", "other")
DEVICE_PARTS = ("kernel", "idle", "launch overhead")
PARTS = (*HOST_PARTS, *DEVICE_PARTS)
BREAKDOWN_COLUMNS = ["part", "lane", "seconds_per_step", "share"]
SPAN_COLUMNS = ["lane", "name", "phase", "start_s", "dur_s"]


def breakdown(trace: Mapping[str, Any] | ev.Trace, steps: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per part: ``part``, ``lane`` (host or device), seconds per step and share, of
    the ``steps`` given (their indices; default every profiled step).

    Data loading is a row only when the step loads data; the device parts only when the trace
    has device activity or launch calls. An empty frame when the trace has no step.
    """
    t = trace if isinstance(trace, ev.Trace) else ev.Trace(trace)
    chosen = list(range(len(t.windows)) if steps is None else steps)
    if not chosen:
        return pd.DataFrame(columns=BREAKDOWN_COLUMNS)
    host_us = dict.fromkeys(HOST_PARTS, 0.0)
    device_us = dict.fromkeys(DEVICE_PARTS, 0.0)
    host_total = device_total = 0.0
    for step in chosen:
        start, end = t.host_window(step)
        owner = ev.phase_owners(t.in_step(t.host, step), start, end)
        for code, part in enumerate(ev.PHASES):
            host_us[part] += float(owner.lengths[owner.codes == code].sum())
        host_us["other"] += float(owner.lengths[owner.codes < 0].sum())
        host_total += end - start
        if t.has_device:
            d_start, d_end = t.device_window(step)
            kernel = ev.busy(t.in_step(t.device, step), d_start, d_end)
            device_us["kernel"] += kernel
            device_us["idle"] += (d_end - d_start) - kernel
            device_total += d_end - d_start
            launches = t.in_step(t.host, step)
            device_us["launch overhead"] += ev.busy(launches[ev.is_launch(launches)], start, end)
    loads_data = bool(ev.phase_of(t.host.loc[t.host["step"].isin(chosen), "name"]).eq("data loading").any())
    rows = [(part, "host", us, host_total) for part, us in host_us.items() if part != "data loading" or loads_data]
    if t.has_device:
        rows += [("kernel", "device", device_us["kernel"], device_total),
                 ("idle", "device", device_us["idle"], device_total),
                 ("launch overhead", "device", device_us["launch overhead"], host_total)]
    return pd.DataFrame([(part, lane, us * 1e-6 / len(chosen), us / total if total > 0 else np.nan)
                         for part, lane, us, total in rows], columns=BREAKDOWN_COLUMNS)


def wide(breakdowns: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per case (the mapping's keys): the host step's seconds and each part's share, a column
    per part in ``PARTS`` order (missing where a case has no such part)."""
    rows = []
    for case_id, frame in breakdowns.items():
        host = frame[frame["lane"] == "host"]
        row = {"case_id": case_id, "step_s": float(host["seconds_per_step"].sum()) if not host.empty else np.nan}
        row.update(dict(zip(frame["part"], frame["share"])))
        rows.append(row)
    table = pd.DataFrame(rows, columns=["case_id", "step_s", *PARTS])
    return table.dropna(axis="columns", how="all")


def median_step(t: ev.Trace) -> int:
    """The step of median length (the middle one of three): a typical step for the picture."""
    lengths = (t.windows["end_us"] - t.windows["start_us"]).to_numpy()
    return int(np.argsort(lengths, kind="stable")[(len(lengths) - 1) // 2])


def timeline(trace: Mapping[str, Any] | ev.Trace, step: int | None = None) -> pd.DataFrame:
    """One step's top-level spans, a lane per thread or device stream: ``lane``, ``name``,
    ``phase`` and start and duration in seconds from the step's start. A host span's phase is
    the phase its name marks, else the phase owning the moment it starts (so an operator
    between labelled spans reads as other); a device span's is its launch call's."""
    t = trace if isinstance(trace, ev.Trace) else ev.Trace(trace)
    if t.windows.empty:
        return pd.DataFrame(columns=SPAN_COLUMNS)
    step = median_step(t) if step is None else step
    start, end = t.host_window(step)
    host = t.in_step(t.host, step)
    owner = ev.phase_owners(host, start, end)
    names = ev.thread_names(t.raw)
    main = _main_thread(t, step)
    frames = []
    top = ev.top_level(host)
    if not top.empty:
        by_name = ev.phase_of(top["name"])
        at_start = pd.Series(_phase_names(owner.at(top["start_us"].to_numpy())), index=top.index)
        frames.append(pd.DataFrame({
            "lane": [_host_lane(key, main, names) for key in zip(top["pid"], top["tid"])],
            "name": top["name"], "phase": by_name.fillna(at_start),
            "start_us": top["start_us"], "dur_us": top["dur_us"]}))
    device = t.in_step(t.device, step)
    if not device.empty:
        launches = host[host["correlation"].notna()]
        launched_at = device["correlation"].map(dict(zip(launches["correlation"], launches["start_us"])))
        frames.append(pd.DataFrame({
            "lane": [f"GPU {pid} stream {tid}" for pid, tid in zip(device["pid"], device["tid"])],
            "name": device["name"],
            "phase": _phase_names(owner.at(launched_at.fillna(device["start_us"]).to_numpy())),
            "start_us": device["start_us"], "dur_us": device["dur_us"]}))
    if not frames:
        return pd.DataFrame(columns=SPAN_COLUMNS)
    spans = pd.concat(frames, ignore_index=True)
    return pd.DataFrame({"lane": spans["lane"], "name": spans["name"], "phase": spans["phase"],
                         "start_s": (spans["start_us"] - start) * 1e-6, "dur_s": spans["dur_us"] * 1e-6})


def _phase_names(codes: np.ndarray) -> list[str]:
    return [ev.PHASES[c] if c >= 0 else ev.OTHER for c in codes]


def _main_thread(t: ev.Trace, step: int) -> tuple[Any, Any] | None:
    """The thread that ran the step (the one holding its window's span)."""
    start, end = t.host_window(step)
    marks = t.spans[(t.spans["start_us"] == start) & (t.spans["end_us"] == end) & ~ev.on_device(t.spans)]
    return (marks["pid"].iloc[0], marks["tid"].iloc[0]) if not marks.empty else None


def _host_lane(key: tuple[Any, Any], main: tuple[Any, Any] | None, names: Mapping[tuple[Any, Any], str]) -> str:
    if key == main:
        return "main thread"
    name = names.get(key)
    return f"thread {key[1]}" + (f" ({name})" if name and name != str(key[1]) else "")


@dataclass
class CaseView:
    """What the report shows of one case's trace: one step, the one of median length, as its
    breakdown and its timeline; and how long the fastest and slowest profiled steps took."""

    case_id: str
    trace_file: Path
    breakdown: pd.DataFrame
    spans: pd.DataFrame
    step_s: float  # the length of the step the breakdown and the timeline show
    steps: int
    fastest_s: float
    slowest_s: float


def read_cases(folders: Mapping[str, Path]) -> tuple[list[CaseView], list[str]]:
    """Each case's breakdown and timeline, read from its trace; what could not be read, as
    messages naming the folder or file (the other cases are still shown)."""
    views, errors = [], []
    for case_id, folder in folders.items():
        try:
            path = case_trace(folder)
            t = ev.Trace(read_trace(path))
        except TraceError as exc:
            errors.append(f"{case_id}: {exc}")
            continue
        if t.windows.empty:
            errors.append(f"{case_id}: {path}: no profiled step in this trace")
            continue
        step = median_step(t)
        start, end = t.host_window(step)
        lengths = (t.windows["end_us"] - t.windows["start_us"]) * 1e-6
        views.append(CaseView(case_id, path, breakdown(t, [step]), timeline(t, step), (end - start) * 1e-6,
                              len(t.windows), float(lengths.min()), float(lengths.max())))
    return views, errors
