"""Reading a run's environment and saying where two environments differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

ENVIRONMENT_FILE = "environment.json"
# Fields expected to differ between comparable runs: when and from what revision they ran,
# and readings that move with load (current clocks), not settings.
VOLATILE = frozenset({"started_at", "git_commit", "git_dirty", "argv", "gpu_sm_clock_mhz",
                      "gpu_mem_clock_mhz", "cpu_peak_flops"})


class EnvironmentMismatchWarning(UserWarning):
    """Results from different environments were put side by side."""


def read_environment(path: str | Path) -> dict[str, Any]:
    """The environment of a run folder or results file ({} when none was recorded)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    env_file = folder / ENVIRONMENT_FILE
    if env_file.is_file():
        try:
            data = json.loads(env_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}
    if path.is_file() and path.suffix == ".json":  # a pytest-benchmark JSON carries it too
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        env = data.get("blitzbench_environment") if isinstance(data, dict) else None
        return env if isinstance(env, dict) else {}
    return {}


def differing_fields(environments: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{field: {run: value}} for the non-volatile fields whose values differ across runs."""
    recorded = {run: env for run, env in environments.items() if env}
    keys = sorted(set().union(*recorded.values()) - VOLATILE) if recorded else []
    differing = {}
    for key in keys:
        values = {run: env.get(key) for run, env in recorded.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            differing[key] = values
    return differing


def describe_differences(differing: Mapping[str, Mapping[str, Any]]) -> str:
    parts = [f"{key} ({', '.join(f'{run}: {value}' for run, value in values.items())})"
             for key, values in differing.items()]
    return "results come from different environments; differing fields: " + "; ".join(parts)
