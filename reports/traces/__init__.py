"""Profiler traces: finding and checking trace files (``files``), the per-case operator
summary of a profiling pass (``profile``) and the TensorBoard viewer (``tensorboard``)."""

from .files import TRACE_SUFFIXES, TRACES_DIR, TraceError, check_traces, find_traces, op_names, read_trace

__all__ = ["TRACE_SUFFIXES", "TRACES_DIR", "TraceError", "check_traces", "find_traces", "op_names", "read_trace"]
