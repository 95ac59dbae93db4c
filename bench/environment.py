"""The environment a run measured in: software, hardware, settings, source revision."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_info() -> dict[str, Any]:
    commit = _run(["git", "rev-parse", "HEAD"], cwd=ROOT)
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT)
    return dict(git_commit=commit, git_dirty=None if status is None else bool(status))


def gpu_info() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return dict(gpu_name=None, gpu_count=0)
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = dict(gpu_name=props.name, gpu_count=torch.cuda.device_count(),
                                gpu_memory_bytes=int(props.total_memory),
                                gpu_capability=f"{props.major}.{props.minor}")
    query = "driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem"
    row = _run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", "0"])
    if row:
        values = [v.strip() for v in row.splitlines()[0].split(",")]
        keys = ["gpu_driver", "gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_max_sm_clock_mhz",
                "gpu_max_mem_clock_mhz"]
        info.update(zip(keys, values))
    return info


def _flag(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except RuntimeError:  # torch 2.9+ after a mix of its old and new TF32 setters refuses old readers
        return "unreadable (old and new TF32 settings mixed)"


def tf32_settings() -> dict[str, Any]:
    """The process's TensorFloat-32 defaults, which CUDA cases without ``tf32`` override (and
    restore): the old switches, and torch 2.9+'s per-backend ``fp32_precision`` where it exists."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    env: dict[str, Any] = dict(tf32_matmul=_flag(lambda: matmul.allow_tf32), tf32_cudnn=_flag(lambda: cudnn.allow_tf32),
                               float32_matmul_precision=_flag(torch.get_float32_matmul_precision))
    if hasattr(matmul, "fp32_precision"):
        env.update(fp32_precision_cuda_matmul=matmul.fp32_precision,
                   fp32_precision_cudnn_conv=cudnn.conv.fp32_precision)
    return env


def collect() -> dict[str, Any]:
    """A flat dict of strings, numbers and booleans, written to ``environment.json``."""
    cudnn = torch.backends.cudnn
    env: dict[str, Any] = dict(
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        hostname=socket.gethostname(),
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        platform=platform.platform(),
        torch_version=torch.__version__,
        torch_git_version=getattr(torch.version, "git_version", None),
        cuda_version=torch.version.cuda,
        cudnn_version=cudnn.version() if cudnn.is_available() else None,
        cuda_available=torch.cuda.is_available(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count(),
        torch_num_threads=torch.get_num_threads(),
        load_avg_1m=os.getloadavg()[0],
        cpu_governor=_read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        cudnn_benchmark=cudnn.benchmark,
        cudnn_deterministic=cudnn.deterministic,
        argv=" ".join(sys.argv[1:]),
    )
    env.update(tf32_settings())
    env.update(gpu_info())
    env.update(git_info())
    return env
