"""Reading a run's environment and saying where two environments differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from bench.schema.files import ENVIRONMENT_FILE

# Fields expected to differ between comparable runs: when and from what revision they ran,
# and readings that move with load (current clocks), not settings.
# Fields expected to differ between runs (and between the shards of one run).
VOLATILE = frozenset({"started_at", "git_commit", "git_dirty", "argv", "gpu_sm_clock_mhz",
                      "gpu_mem_clock_mhz", "cpu_peak_flops", "shard", "shards", "shards_missing",
                      "environment_differences"})


# Environment fields shown at the top of a report, in this order, with their labels.
SHOWN_FIELDS = [
    ("torch_version", "torch"), ("cuda_version", "CUDA (torch built with)"),
    ("cudnn_version", "cuDNN (torch built with)"),
    ("python_version", "Python"), ("gpu_name", "GPU"), ("gpu_driver", "GPU driver"),
    ("gpu_max_sm_clock_mhz", "GPU max SM clock (MHz)"), ("gpu_memory_bytes", "GPU memory"),
    ("cpu_model", "CPU"), ("cpu_count", "CPU cores"), ("torch_num_threads", "torch threads"),
    ("cpu_governor", "CPU governor"), ("cpu_peak_flops", "CPU matmul peak"),
    ("load_avg_1m", "load average at start"), ("tf32_matmul", "TF32 matmul"),
    ("tf32_cudnn", "TF32 cuDNN"), ("cudnn_benchmark", "cudnn.benchmark"),
    ("git_commit", "git commit"), ("git_dirty", "uncommitted changes"), ("hostname", "host"),
    ("started_at", "started"),
]
# The environment's one-line summary at the top of a report (labels from SHOWN_FIELDS).
SUMMARY_FIELDS = ("torch_version", "python_version", "gpu_name", "gpu_driver", "cpu_model", "cpu_count",
                  "torch_num_threads", "cuda_version")
BUSY_LOAD_PER_CORE = 0.5


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


def busy_runs(environments: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """``(run, load average, cores)`` for each run that started on a busy machine: competing
    processes stall torch's threads."""
    busy = []
    for run, env in environments.items():
        load, cores = env.get("load_avg_1m"), env.get("cpu_count")
        if isinstance(load, (int, float)) and isinstance(cores, (int, float)) and load > BUSY_LOAD_PER_CORE * cores:
            busy.append((run, float(load), int(cores)))
    return busy
