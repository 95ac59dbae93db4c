"""Pure pandas functions from raw results to tables; rendering is the only formatting layer."""

from .load import ResultsError, load
from .tables import compile_speedup, device_speedup, phase_table

__all__ = ["ResultsError", "load", "phase_table", "compile_speedup", "device_speedup"]
