"""The profiling pass: a case's step under ``torch.profiler``, after (never during) its timing.

One pass per case: ``wait`` + ``warmup`` + ``active`` executions of the step under
``torch.profiler.profile`` with a ``schedule``, the active ones written by
``tensorboard_trace_handler`` as a gzipped Chrome trace into
``<run>/traces/<case folder>/``. TensorBoard's profiler plugin and Perfetto open it.

The events of the active steps are flattened into plain rows (name, kind, self times) and
grouped per operator (``aggregate``) into the case's line of ``profile.jsonl``, which
``reports.traces.profile`` reads into the per-case tables. The untimed per-round setup
(``backward`` builds its graph) is kept in the trace under ``SETUP_LABEL`` so the
reader sees it, but left out of the rows, so the summary covers what the timing covers.

The forward pass (the model's call and the loss) is labelled ``FORWARD_LABEL`` from the
outside, by module hooks attached for the capture only, so the step's code is unchanged and
the timed rounds never run under them; backward, the optimizer and data loading need no
label of ours: torch names them in every trace (``PHASE_PREFIXES``), which is what the
reports' step breakdown (``reports.traces.breakdown``) reads.
"""

from __future__ import annotations

import re
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import pandas as pd

from bench.schema.figures import Figure, Kind, View
from bench.schema.files import TRACE_SUFFIXES

if TYPE_CHECKING:
    from torch.profiler import ProfilerActivity

    from bench.workloads.step import Step

# The budget for one case's trace on disk; the default schedule stays far below it.
TRACE_BUDGET_BYTES = 50 * 1024 * 1024
SETUP_LABEL = "blitzbench::setup (untimed)"
TIMED_LABEL = "blitzbench::timed"
FORWARD_LABEL = "blitzbench::forward"
# The parts of a step by the names of their spans in a trace: ours for forward, torch's own
# for the others (autograd's engine, torch.optim's step and zero_grad, the DataLoader's
# iterator), so a trace of any torch program splits the same way.
PHASE_PREFIXES = {
    "forward": (FORWARD_LABEL,),
    "backward": ("autograd::engine::evaluate_function",),
    "optimizer": ("Optimizer.step#", "Optimizer.zero_grad#"),
    "data loading": ("enumerate(DataLoader)#",),
}
_STEP_LABEL = re.compile(r"^ProfilerStep#?\d*\*?$")
# A dispatcher operator: ``aten::addmm``, ``prim::...``, ``torchvision::nms`` (one namespace).
_OPERATOR = re.compile(r"^[A-Za-z_]\w*::[A-Za-z_]\w*(\.\w+)?$")
# CPU-side launch calls of the CUDA runtime and driver APIs: one per kernel (or graph) launch.
LAUNCH_CALL = re.compile(r"^cu(da)?\w*Launch")
_USER_SCOPE = 7  # torch's RecordScope::USER_SCOPE: record_function annotations

_H, _D = frozenset({View.HISTORY}), frozenset({View.DETAIL, View.HISTORY})
FIGURES = (
    Figure("trace_dir", Kind.TEXT, "trace", "profile", "the case's profiler trace folder", views=_H),
    Figure("trace_bytes", Kind.BYTES, "trace size", "profile", views=_H),
    Figure("profile_steps", Kind.COUNT, "profiled steps", "profile", "active steps in the trace",
           views=frozenset()),
    Figure("op_calls_per_step", Kind.COUNT, "operator calls/step", "profile", deterministic=True, views=_D),
    Figure("kernel_launches_per_step", Kind.COUNT, "kernel launches/step", "profile", deterministic=True,
           views=_D),
)


@dataclass(frozen=True)
class ProfileConfig:
    """The profiler schedule (steps skipped, warmed up, recorded) and the stack option."""

    wait: int = 1
    warmup: int = 1
    active: int = 3
    with_stack: bool = False

    def __post_init__(self) -> None:
        if min(self.wait, self.warmup) < 0 or self.active < 1:
            raise ValueError(f"invalid profiler schedule wait={self.wait}, warmup={self.warmup}, "
                             f"active={self.active}; expected wait, warmup >= 0 and active >= 1")

    @property
    def steps(self) -> int:
        return self.wait + self.warmup + self.active


def trace_folder_name(case_id: str) -> str:
    """``train_step[lenet-sgd-cpu-eager-b64]`` -> ``train_step.lenet-sgd-cpu-eager-b64``.

    Square brackets are glob patterns (``glob``, ``fnmatch``, TensorBoard's run filter), so
    a folder named like the case id would not be found by the tools that look for traces.
    """
    return case_id.replace("[", ".").replace("]", "")


def case_id_of_folder(name: str) -> str:
    """``train_step.lenet-sgd-cpu-eager-b64`` -> ``train_step[lenet-sgd-cpu-eager-b64]`` (phases
    have no dot), the inverse of ``trace_folder_name`` for a run without its ``profile.jsonl``."""
    phase, dot, rest = name.partition(".")
    return f"{phase}[{rest}]" if dot else name


@dataclass
class Capture:
    """What one profiling pass left: the trace file and the flattened events of its active steps."""

    trace_file: Path
    steps: int
    events: list[dict[str, Any]]

    @property
    def trace_bytes(self) -> int:
        return self.trace_file.stat().st_size


def activities(device: str) -> list[ProfilerActivity]:
    """CPU always; the device's activity only where this torch build and machine have it."""
    import torch
    from torch.profiler import ProfilerActivity, supported_activities

    acts = [ProfilerActivity.CPU]
    if device == "cuda" and torch.cuda.is_available() and ProfilerActivity.CUDA in supported_activities():
        acts.append(ProfilerActivity.CUDA)
    return acts


def capture(step: Step, trace_dir: Path, config: ProfileConfig = ProfileConfig()) -> Capture:
    """Profile ``config.steps`` executions of ``step``; write the trace into ``trace_dir``."""
    from torch.profiler import profile, record_function, schedule, tensorboard_trace_handler

    from bench.workloads.step import synchronize

    def labelled(fn, *args, **kwargs) -> None:
        with record_function(TIMED_LABEL):
            fn(*args, **kwargs)

    device = step.case.device
    with forward_labelled(step), profile(
        activities=activities(device),
        schedule=schedule(wait=config.wait, warmup=config.warmup, active=config.active, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(trace_dir), use_gzip=True),
        record_shapes=True,
        profile_memory=True,
        with_stack=config.with_stack,
    ) as prof:
        for _ in range(config.steps):
            step.run(labelled, setup_scope=record_function(SETUP_LABEL))
            synchronize(device)  # the step's kernels end inside its profiler step
            prof.step()
    return Capture(trace_file=_trace_file(trace_dir), steps=config.active,
                   events=flatten(prof.events()))


def forward_modules(step: Step) -> list[Any]:
    """What the step calls for its forward pass: the model as run (compiled or not) and the loss."""
    import torch

    workload = step.workload
    found = [workload.run_model, workload.criterion] if workload is not None else [step.model]
    return [m for m in found if isinstance(m, torch.nn.Module)]


@contextmanager
def forward_labelled(step: Step) -> Iterator[None]:
    """Each call of the forward modules inside a ``FORWARD_LABEL`` span, for the capture only.

    Hooks on the compiled wrapper (not the module it compiles) run outside the compiled
    code, so they neither break its graph nor add a guard; ``always_call`` closes the span
    when a forward raises.
    """
    from torch.profiler import record_function

    open_spans: list[Any] = []

    def enter(module: Any, args: Any) -> None:
        span = record_function(FORWARD_LABEL)
        span.__enter__()
        open_spans.append(span)

    def leave(module: Any, args: Any, output: Any) -> None:
        if open_spans:
            open_spans.pop().__exit__(None, None, None)

    with ExitStack() as handles:
        for module in forward_modules(step):
            handles.callback(module.register_forward_pre_hook(enter).remove)
            handles.callback(module.register_forward_hook(leave, always_call=True).remove)
        yield


def _trace_file(trace_dir: Path) -> Path:
    found = sorted(p for p in trace_dir.glob("*") if p.name.endswith(TRACE_SUFFIXES))
    if not found:
        raise RuntimeError(f"the profiler wrote no trace into {trace_dir}")
    return found[-1]


def flatten(events: Iterable[Any]) -> list[dict[str, Any]]:
    """The host-side events of the timed part as rows: name, kind, self CPU/device time (s).

    Device-side events (kernels) are not rows of their own: their time is in the
    ``self_device_s`` of the operator that launched them, and each launch is a ``launch`` row.
    """
    rows = []
    for event in events:
        if _is_device_event(event) or _is_structural(event) or _under_setup(event):
            continue
        rows.append({
            "name": event.name,
            "kind": classify(event),
            "self_cpu_s": event.self_cpu_time_total * 1e-6,
            "self_device_s": _self_device_us(event) * 1e-6,
        })
    return rows


def classify(event: Any) -> str:
    """``op`` (dispatcher operator), ``launch`` (kernel launch call), ``annotation`` or ``other``."""
    if getattr(event, "is_user_annotation", False) or event.scope == _USER_SCOPE:
        return "annotation"
    if LAUNCH_CALL.match(event.name):
        return "launch"
    if _OPERATOR.match(event.name):
        return "op"
    return "other"


def _is_device_event(event: Any) -> bool:
    from torch.autograd import DeviceType

    return getattr(event, "device_type", None) not in (None, DeviceType.CPU)


def _is_structural(event: Any) -> bool:
    """The profiler's step markers and our own labels: containers, not work."""
    return bool(_STEP_LABEL.match(event.name)) or event.name in (SETUP_LABEL, TIMED_LABEL, FORWARD_LABEL)


def _under_setup(event: Any) -> bool:
    node = event
    while node is not None:
        if node.name == SETUP_LABEL:
            return True
        node = node.cpu_parent
    return False


def _self_device_us(event: Any) -> float:
    # torch >= 2.4 names it self_device_time_total; the older name stays as a fallback.
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


def check_budget(capture_: Capture, case_id: str, budget: int = TRACE_BUDGET_BYTES) -> None:
    """Warn (the case still counts) when a trace is larger than the budget."""
    if capture_.trace_bytes > budget:
        warnings.warn(
            f"the trace of {case_id} is {capture_.trace_bytes / 2**20:.1f} MiB, over the "
            f"{budget / 2**20:.0f} MiB budget; fewer active steps (--profile-schedule) or no "
            "--profile-with-stack keep it smaller", stacklevel=2)


# The summary of one profiled case, one line of ``profile.jsonl`` (read by ``reports.traces.profile``).
EVENT_COLUMNS = ["name", "kind", "self_cpu_s", "self_device_s"]
OP_COLUMNS = ["name", "kind", "calls_per_step", "self_cpu_s", "self_device_s", "cpu_pct"]


def aggregate(events: Iterable[Mapping[str, Any]], steps: int) -> pd.DataFrame:
    """One row per (name, kind): calls and self times per step, largest self CPU time first.

    ``cpu_pct`` is the share of the step's self CPU time, so a reader sees how much of
    the step the listed operators explain.
    """
    df = pd.DataFrame(list(events), columns=EVENT_COLUMNS)
    if df.empty:
        return pd.DataFrame(columns=OP_COLUMNS)
    grouped = df.groupby(["name", "kind"], as_index=False).agg(
        calls=("name", "size"), self_cpu_s=("self_cpu_s", "sum"),
        self_device_s=("self_device_s", "sum"))
    total_cpu = grouped["self_cpu_s"].sum()
    out = pd.DataFrame({
        "name": grouped["name"],
        "kind": grouped["kind"],
        "calls_per_step": grouped["calls"] / steps,
        "self_cpu_s": grouped["self_cpu_s"] / steps,
        "self_device_s": grouped["self_device_s"] / steps,
        "cpu_pct": 100 * grouped["self_cpu_s"] / total_cpu if total_cpu > 0 else 0.0,
    })
    return out.sort_values(["self_cpu_s", "name"], ascending=[False, True]).reset_index(drop=True)


def step_counts(ops: pd.DataFrame, device: str) -> dict[str, float | None]:
    """Operator calls and kernel launches per step (no launches to count on the CPU)."""
    per_kind = ops.groupby("kind")["calls_per_step"].sum() if not ops.empty else pd.Series(dtype=float)
    launches = float(per_kind.get("launch", 0.0)) if device == "cuda" else None
    return {"op_calls_per_step": float(per_kind.get("op", 0.0)), "kernel_launches_per_step": launches}


def record(case_id: str, device: str, trace_dir: str, steps: int, ops: pd.DataFrame) -> dict[str, Any]:
    """The JSON line that stores one case's summary in ``profile.jsonl``."""
    return {"case_id": case_id, "device": device, "trace_dir": trace_dir, "steps": steps,
            **step_counts(ops, device), "ops": ops[OP_COLUMNS].to_dict("records")}
