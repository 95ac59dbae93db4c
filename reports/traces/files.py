"""Finding and checking profiler traces: gzipped (or plain) Chrome-trace JSON files.

The same checks serve the viewer (``python -m reports.tensorboard``), which refuses a
folder without traces or with a corrupt one before starting a server, and the tests.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

from bench.schema.files import TRACE_SUFFIXES, TRACES_DIR



class TraceError(ValueError):
    """A trace folder or file that cannot be viewed; the message names it."""


def find_traces(folder: Path | str) -> list[Path]:
    """Every trace file below ``folder``; an error when there is none or a case folder is empty."""
    folder = Path(folder)
    if not folder.exists():
        raise TraceError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise TraceError(f"{folder}: not a folder")
    traces = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(TRACE_SUFFIXES))
    if not traces:
        raise TraceError(f"{folder}: no profiler traces (*{TRACE_SUFFIXES[1]}) in this folder; "
                         "record some with `nox -s profile`")
    # A case folder left without its trace (a profiling pass that died) would be a run
    # TensorBoard lists but cannot open.
    for case_dir in sorted(folder.rglob(TRACES_DIR + "/*")):
        if case_dir.is_dir() and not any(p.name.endswith(TRACE_SUFFIXES) for p in case_dir.iterdir()):
            raise TraceError(f"{case_dir}: empty trace folder (the profiling of this case did not finish)")
    return traces


def read_trace(path: Path | str) -> dict[str, Any]:
    """The parsed trace; an error naming the file when it is not Chrome-trace JSON."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        data = json.loads(raw)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: corrupt trace, not gzipped Chrome-trace JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise TraceError(f"{path}: not a Chrome trace (no 'traceEvents' list)")
    return data


def case_trace(folder: Path | str) -> Path:
    """The trace of one case's folder: the newest, if a case was profiled more than once."""
    return max(find_traces(folder), key=lambda p: (p.stat().st_mtime, p.name))


def check_traces(folder: Path | str) -> list[Path]:
    """``find_traces`` and ``read_trace`` on each: the traces, all readable."""
    traces = find_traces(folder)
    for trace in traces:
        read_trace(trace)
    return traces


def op_names(trace: dict[str, Any]) -> set[str]:
    """Names of the CPU operator events of a parsed trace (``cat`` ``cpu_op``)."""
    return {e.get("name") for e in trace["traceEvents"] if isinstance(e, dict) and e.get("cat") == "cpu_op"}
