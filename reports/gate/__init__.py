"""The performance gate: ``compare`` (the verdict: Mann-Whitney + Holm + threshold, and the
deterministic figures), ``render`` (gate.md and gate.json) and ``cli`` (``python -m reports gate``
and ``calibrate``)."""

from .compare import AGGREGATES, GateConfig, GateInputError, combine_runs, gate, match_case, noise_floor
from .render import markdown, to_json

__all__ = ["AGGREGATES", "GateConfig", "GateInputError", "combine_runs", "gate", "match_case", "noise_floor",
           "markdown", "to_json"]
