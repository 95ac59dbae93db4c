"""Profiler traces: finding and checking trace files (``files``), the per-case operator
summary of a profiling pass (``profile``), the trace as pandas (``events``), the step
breakdown and timeline (``breakdown``), the trace diff of two runs (``diff``: ``python -m
reports trace-diff``) and the TensorBoard viewer (``tensorboard``)."""

from .files import (TRACE_SUFFIXES, TRACES_DIR, TraceError, case_trace, check_traces, find_traces, op_names,
                    read_trace)

__all__ = ["TRACE_SUFFIXES", "TRACES_DIR", "TraceError", "case_trace", "check_traces", "find_traces", "op_names",
           "read_trace"]
