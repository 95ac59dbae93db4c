"""Reading results and reporting on them: ``load`` (results files -> one DataFrame), ``stats``,
``format`` (numbers -> strings), and by feature the run report (``run``), the history
(``history``), the gate (``gate``) and profiler traces (``traces``)."""

from .load import ResultsError, load
from .run.tables import compile_speedup, device_speedup, phase_table

__all__ = ["ResultsError", "load", "phase_table", "compile_speedup", "device_speedup"]
