"""A Chrome trace in pandas: its spans, the timed steps, the phase of each moment of a step.

Pure functions of a parsed trace (``files.read_trace``): no torch, so the light reader
environment runs them. Times stay in the trace's microseconds here; the readers built on
this module (``breakdown``, ``diff``) hand out seconds.

A trace of the profiling pass marks each timed call with ``TIMED_LABEL`` (the untimed setup
of ``backward`` lies outside it); a trace without those marks (another program's) counts
each ``ProfilerStep`` as a step, or the whole trace as one.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from bench.passes.profiling import FORWARD_LABEL, LAUNCH_CALL, PHASE_PREFIXES, SETUP_LABEL, TIMED_LABEL

SPAN_COLUMNS = ["name", "cat", "pid", "tid", "start_us", "dur_us", "end_us", "correlation"]
# What a GPU does (each on its device and stream) and the host calls that start it.
DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
RUNTIME_CATS = frozenset({"cuda_runtime", "cuda_driver"})
# Kineto mirrors each annotation (ours, ProfilerStep) onto the GPU's lanes over the kernels
# it covers: a copy of what the host spans say, which would count each step twice.
MIRRORED_CATS = frozenset({"gpu_user_annotation"})
STEP_PREFIX = "ProfilerStep#"
# Spans that contain a step rather than do work in it.
CONTAINERS = (TIMED_LABEL, SETUP_LABEL)
OTHER = "other"
# When spans of two phases overlap (threads), the later phase in this order owns the time.
PHASES = tuple(PHASE_PREFIXES)


def spans(trace: Mapping[str, Any]) -> pd.DataFrame:
    """Every complete event (``"ph": "X"``) with a start and a duration, one row each (not the
    GPU lanes' copies of the annotations)."""
    rows = []
    for e in trace["traceEvents"]:
        if not isinstance(e, dict) or e.get("ph") != "X" or e.get("cat") in MIRRORED_CATS:
            continue
        try:
            start, dur = float(e["ts"]), float(e.get("dur", 0.0))
        except (KeyError, TypeError, ValueError):
            continue  # a span without a usable time cannot be placed
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        rows.append((str(e.get("name", "")), str(e.get("cat", "")), e.get("pid"), e.get("tid"),
                     start, dur, start + dur, args.get("correlation")))
    return pd.DataFrame(rows, columns=SPAN_COLUMNS)


def thread_names(trace: Mapping[str, Any]) -> dict[tuple[Any, Any], str]:
    """``(pid, tid) -> name`` from the trace's ``thread_name`` metadata."""
    return {(e.get("pid"), e.get("tid")): str(e["args"]["name"]) for e in trace["traceEvents"]
            if isinstance(e, dict) and e.get("ph") == "M" and e.get("name") == "thread_name"
            and isinstance(e.get("args"), dict) and "name" in e["args"]}


def on_device(df: pd.DataFrame) -> pd.Series:
    return df["cat"].isin(DEVICE_CATS)


def is_launch(df: pd.DataFrame) -> pd.Series:
    """The host's kernel (or graph) launch calls."""
    return df["cat"].isin(RUNTIME_CATS) & df["name"].str.match(LAUNCH_CALL.pattern)


def steps(df: pd.DataFrame) -> pd.DataFrame:
    """The timed windows, in order: ``start_us``, ``end_us``."""
    for found in (df[df["name"] == TIMED_LABEL], df[df["name"].str.startswith(STEP_PREFIX)]):
        if not found.empty:
            return found[["start_us", "end_us"]].sort_values("start_us").reset_index(drop=True)
    host = df[~on_device(df) & (df["cat"] != "Trace")]
    if host.empty:
        return pd.DataFrame({"start_us": [], "end_us": []})
    return pd.DataFrame({"start_us": [host["start_us"].min()], "end_us": [host["end_us"].max()]})


def step_of(df: pd.DataFrame, windows: pd.DataFrame) -> pd.Series:
    """The step each span belongs to (-1: none). A host span by its start; a device span by
    the launch call it correlates with (its kernel may run after the call's step has ended),
    else by its start."""
    starts, ends = windows["start_us"].to_numpy(), windows["end_us"].to_numpy()
    times = df["start_us"].to_numpy()
    index = np.searchsorted(starts, times, side="right") - 1
    if len(starts):
        index = np.where((index >= 0) & (times <= ends[np.clip(index, 0, None)]), index, -1)
    step = pd.Series(index, index=df.index)
    device = on_device(df)
    launches = df[df["cat"].isin(RUNTIME_CATS) & df["correlation"].notna()]
    if device.any() and not launches.empty:
        launch_step = dict(zip(launches["correlation"], step[launches.index]))
        mapped = df.loc[device, "correlation"].map(launch_step)
        step[device] = mapped.fillna(step[device]).astype(int)
    return step


def phase_of(names: pd.Series) -> pd.Series:
    """The phase a span's name marks (``PHASE_PREFIXES``), or None."""
    phase = pd.Series(None, index=names.index, dtype=object)
    for name, prefixes in PHASE_PREFIXES.items():
        phase[names.str.startswith(prefixes) & phase.isna()] = name
    return phase


def busy(intervals: pd.DataFrame, start: float, end: float) -> float:
    """Microseconds of ``[start, end]`` covered by at least one interval (overlaps once)."""
    owner = owners([(intervals, 0)], start, end)
    return float(owner.lengths[owner.codes == 0].sum())


class Owners:
    """``[start, end]`` cut where any interval starts or ends; each piece's owner code (-1: none)."""

    def __init__(self, bounds: np.ndarray, codes: np.ndarray) -> None:
        self.bounds, self.codes = bounds, codes
        self.lengths = np.diff(bounds)

    def at(self, times: np.ndarray) -> np.ndarray:
        """The owner code at each time (-1 outside or unowned)."""
        times = np.asarray(times, dtype=float)
        if not len(self.codes):  # a step of no length: nothing owned
            return np.full(len(times), -1)
        index = np.searchsorted(self.bounds, times, side="right") - 1
        valid = (index >= 0) & (index < len(self.codes))
        return np.where(valid, self.codes[np.clip(index, 0, len(self.codes) - 1)], -1)


def owners(layers: list[tuple[pd.DataFrame, int]], start: float, end: float) -> Owners:
    """Who owns each moment of ``[start, end]``: each layer's intervals (``start_us``/``end_us``)
    claim the time they cover for its code, a later layer over an earlier one."""
    clipped = [(iv["start_us"].clip(start, end).to_numpy(), iv["end_us"].clip(start, end).to_numpy(), code)
               for iv, code in layers]
    bounds = np.unique(np.concatenate([[start, end], *(np.concatenate([s, e]) for s, e, _ in clipped)]))
    codes = np.full(max(len(bounds) - 1, 0), -1)
    for s, e, code in clipped:
        depth = np.zeros(len(bounds), dtype=int)
        np.add.at(depth, np.searchsorted(bounds, s), 1)
        np.add.at(depth, np.searchsorted(bounds, e), -1)
        codes[np.cumsum(depth)[:-1] > 0] = code
    return Owners(bounds, codes)


def phase_owners(host: pd.DataFrame, start: float, end: float) -> Owners:
    """Each moment of a step by phase: codes index ``PHASES``; -1 is other."""
    phase = phase_of(host["name"])
    return owners([(host[phase == name], code) for code, name in enumerate(PHASES)], start, end)


def top_level(df: pd.DataFrame) -> pd.DataFrame:
    """The spans no other span of their thread (or stream) contains."""
    if df.empty:
        return df
    ordered = df.sort_values(["pid", "tid", "start_us", "dur_us"], ascending=[True, True, True, False], kind="stable")
    lane = ordered["pid"].astype(str) + "/" + ordered["tid"].astype(str)
    reach = ordered.groupby(lane, sort=False)["end_us"].transform(lambda e: e.cummax().shift(fill_value=-np.inf))
    return ordered[ordered["start_us"] >= reach]


def work(df: pd.DataFrame) -> pd.DataFrame:
    """The spans that do work: not the trace's own span, the step markers or our containers."""
    marker = df["name"].str.startswith(STEP_PREFIX) | df["name"].isin(CONTAINERS) | (df["cat"] == "Trace")
    return df[~marker]


def self_times(df: pd.DataFrame) -> pd.Series:
    """Each host span's duration less its direct children's (per thread), as the profiler's
    self time; a device span's self time is its duration."""
    self_us = df["dur_us"].astype(float).copy()
    host = df[~on_device(df)].sort_values(["pid", "tid", "start_us", "dur_us"],
                                          ascending=[True, True, True, False], kind="stable")
    stack: list[tuple[Any, float]] = []  # (row label, end) of the open spans of one thread
    lane = None
    for label, pid, tid, start, end, dur in zip(host.index, host["pid"], host["tid"], host["start_us"],
                                                host["end_us"], host["dur_us"]):
        if (pid, tid) != lane:
            lane, stack = (pid, tid), []
        while stack and stack[-1][1] <= start:
            stack.pop()
        if stack:
            self_us[stack[-1][0]] -= dur
        stack.append((label, end))
    return self_us.clip(lower=0.0)


class Trace:
    """A parsed trace's spans with their step (``step``, -1: outside every step)."""

    def __init__(self, trace: Mapping[str, Any]) -> None:
        self.raw = trace
        found = spans(trace)
        self.windows = steps(found)
        self.spans = found.assign(step=step_of(found, self.windows))
        device = on_device(self.spans)
        self.host = work(self.spans[~device])
        self.device = self.spans[device]

    @property
    def has_device(self) -> bool:
        return not self.device.empty or bool(is_launch(self.host).any())

    def host_window(self, step: int) -> tuple[float, float]:
        row = self.windows.iloc[step]
        return float(row["start_us"]), float(row["end_us"])

    def device_window(self, step: int) -> tuple[float, float]:
        """The host step, stretched to the end of the last kernel it launched."""
        start, end = self.host_window(step)
        kernels = self.device[self.device["step"] == step]
        return start, max(end, float(kernels["end_us"].max())) if not kernels.empty else end

    @staticmethod
    def in_step(frame: pd.DataFrame, step: int) -> pd.DataFrame:
        return frame[frame["step"] == step]


__all__ = ["CONTAINERS", "DEVICE_CATS", "FORWARD_LABEL", "OTHER", "Owners", "PHASES", "RUNTIME_CATS", "Trace", "busy",
           "is_launch", "on_device", "owners", "phase_of", "phase_owners", "self_times", "spans", "step_of",
           "steps", "thread_names", "top_level", "work"]
