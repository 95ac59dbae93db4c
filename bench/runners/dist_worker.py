"""One rank of a distributed case: ``torchrun ... -m bench.runners.dist_worker SPEC``.

``bench.runners.distributed`` writes ``SPEC`` (the case, the timing budget, the files to write) and
launches one of these per rank. Each rank builds the case's step through ``bench.workloads.build`` (so
model, optimizer, dtype, AMP, memory format and compile mode apply), with its own batch,
wraps the model (DDP, or FSDP), and times ``train_step`` in the harness's fixed-round way:
first call, warm-up, then the same number of rounds on every rank (the slowest rank's
warm-up sets it) after a barrier. Every rank then gets every rank's times
(``all_gather_object``); rank 0 writes the raw result as JSON, and the launcher turns it
into the row. A rank that fails writes its error to a file of its own before it exits.

"Rank" here is ``node_rank × nproc_per_node + local_rank``: rank 0 is always on node 0,
whose launcher records the row (torch's c10d rendezvous numbers nodes in arrival order).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import socket
import statistics
import sys
import time
import traceback
from datetime import timedelta
from itertools import chain
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from bench.passes import PASSES, compile_counters, run_passes
from bench.passes.base import Timing
from bench.runners import inprocess
from bench.runners.distributed import usable_cores
from bench.schema.case import Case
from bench.schema.status import CaseFailure, NonFiniteLoss, Status, UnsupportedCase, classify, clip_error
import models
from bench.workloads.backend import compile_cache_for
from bench.workloads.build import build_step, make_scheduler
from bench.workloads.optimizers import make_optimizer
from bench.workloads.phases import PHASE_BUILDERS
from bench.workloads.step import Built, Step, synchronize

ALLREDUCE_WARMUP, ALLREDUCE_REPEATS = 2, 10
# Passes that only read what timing recorded: the others run the step again, and a step
# run on rank 0 alone would wait forever for the other ranks' all-reduce.
ROW_PASSES = ("context", "compile")


def fully_shard_fn() -> Callable[[nn.Module], Any] | None:
    """FSDP2's ``fully_shard`` (public from torch 2.6, ``_composable`` in 2.4-2.5), or None."""
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        try:
            from torch.distributed._composable.fsdp import fully_shard
        except ImportError:
            return None
    return fully_shard


def wrap(model: nn.Module, case: Case, local_rank: int) -> nn.Module:
    """The model as the case distributes it: DDP, or FSDP2 (``fully_shard``, which unlike
    FullyShardedDataParallel also shards on CPU with gloo)."""
    if case.distributed == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[local_rank] if case.device == "cuda" else None)
    fully_shard = fully_shard_fn()
    if fully_shard is None:
        raise UnsupportedCase(f"FSDP needs FSDP2's fully_shard (torch >= 2.4); this is torch {torch.__version__}")
    try:
        fully_shard(model)
    except Exception as exc:  # FSDP2 on a device/backend this torch does not shard on
        if case.device == "cuda":
            raise
        raise UnsupportedCase(f"FSDP (fully_shard) does not run on {case.device} with torch "
                              f"{torch.__version__}: {exc}") from exc
    return model


def build_distributed_step(case: Case, rank: int, local_rank: int, compile_backend: str) -> Step:
    """The case's step with its model distributed. Each rank draws its own batch (seeded by
    its rank: averaged gradients then differ from any one rank's) and starts from rank 0's
    weights; the optimizer is made over the wrapped model's parameters (FSDP replaces them)."""
    base = build_step(case, rng_seed=rank, compile_backend=compile_backend)
    w = base.workload
    assert w is not None
    with torch.no_grad():
        for tensor in chain(w.model.parameters(), w.model.buffers()):
            dist.broadcast(tensor.data, 0)
    wrapped = wrap(w.model, case, local_rank)
    run_model = torch.compile(wrapped, backend=compile_backend) if case.mode == "compile" else wrapped
    spec = models.get_spec(case.model)
    params = spec.param_groups(wrapped) if spec.param_groups else list(wrapped.parameters())
    optimizer = make_optimizer(case.optimizer, params)
    scheduler = make_scheduler(case.lr_schedule, optimizer)  # before taking its step: it wraps it
    opt_step: Callable[[], Any] = optimizer.step
    if case.mode == "compile":
        opt_step = torch.compile(optimizer.step, backend=compile_backend)
    scaler = torch.amp.GradScaler(case.device) if case.amp == "float16" else None
    workload = dataclasses.replace(w, model=wrapped, run_model=run_model, optimizer=optimizer, opt_step=opt_step,
                                   scaler=scaler, scheduler=scheduler)
    built = Built(*PHASE_BUILDERS[case.phase](workload))
    return dataclasses.replace(base, fn=built.fn, setup=built.setup, model=wrapped, optimizer=optimizer,
                               workload=workload)


def agreed(value: float, op: dist.ReduceOp, device: str) -> float:
    """``value`` reduced over every rank (the same answer on all of them)."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=op)
    return float(tensor.item())


def timed_rounds(step: Step, rounds: int) -> list[float]:
    """``rounds`` calls of the step, each timed alone (synchronized on CUDA, as the harness)."""
    times = []
    for _ in range(rounds):
        start = inprocess.synced_perf_counter()
        step.run()
        times.append(inprocess.synced_perf_counter() - start)
    return times


def allreduce_times(numel: int, dtype: torch.dtype, device: str) -> list[float]:
    """An isolated all-reduce of a flat tensor of the gradients' size, timed on this rank."""
    flat = torch.ones(numel, dtype=dtype, device=device)
    times = []
    for i in range(ALLREDUCE_WARMUP + ALLREDUCE_REPEATS):
        dist.barrier()
        synchronize(device)
        start = time.perf_counter()
        dist.all_reduce(flat)
        synchronize(device)
        if i >= ALLREDUCE_WARMUP:
            times.append(time.perf_counter() - start)
    return times


def in_sync(step: Step, device: str) -> bool | None:
    """DDP: whether every rank's parameters equal rank 0's, bit for bit, after the timed steps.
    Their batches differ, so they stay equal only if the gradients were averaged."""
    if step.case.distributed != "ddp":
        return None  # FSDP holds shards: no rank has the whole model to compare
    flat = torch.cat([p.detach().flatten().float() for p in step.model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, 0)
    return agreed(float((flat - reference).abs().max()), dist.ReduceOp.MAX, device) == 0.0


def measure(case: Case, spec: dict[str, Any], rank: int, local_rank: int) -> dict[str, Any]:
    """Time the step on this rank; return what rank 0 needs from it (and, on rank 0, the row's figures)."""
    device, backend = case.device, spec["compile_backend"]
    step = build_distributed_step(case, rank, local_rank, backend)
    grad_numel = sum(p.numel() for p in step.workload.model.parameters())
    first = inprocess.first_calls(step)
    per_call_s = inprocess.warm_up(step)
    if agreed(float(step.is_finite()), dist.ReduceOp.MIN, device) < 1:
        raise NonFiniteLoss("the loss is not finite after warm-up on at least one rank")
    # One round count for all: a rank doing more rounds would wait for its peers' all-reduce.
    slowest_s = agreed(per_call_s, dist.ReduceOp.MAX, device)
    rounds = inprocess.pedantic_rounds(slowest_s, spec["max_time"], spec["min_rounds"])
    after_warm_up = compile_counters.snapshot()
    dist.barrier()
    times = timed_rounds(step, rounds)
    end = compile_counters.snapshot()
    status, reason = inprocess.verdict(step, end.since(after_warm_up))
    mine = dict(rank=rank, host=socket.gethostname(), node=spec["node_rank"], times=times,
                threads=torch.get_num_threads(), cores=usable_cores(), first_call_s=first.first_s,
                status=status.value, invalid_reason=reason,
                allreduce=allreduce_times(grad_numel, getattr(torch, case.dtype), device))
    sync = in_sync(step, device)
    if rank == 0:
        timing = Timing(median_s=statistics.median(times), first_call_s=first.first_s,
                        compile_first=first.compiled, compile_later=end.since(first.after),
                        compile_backend=backend, compile_warm_s=first.warm_s)
        chosen = [p for p in PASSES if p.name in ROW_PASSES]
        mine["figures"] = dict(run_passes(step, timing, chosen), ranks_in_sync=sync)
    return mine


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    tmp.replace(path)  # the launcher never reads half a file


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    case = Case.from_dict(spec["case"])
    local_rank = int(os.environ["LOCAL_RANK"])
    rank = spec["node_rank"] * spec["nproc_per_node"] + local_rank
    torch.set_num_threads(spec["threads"])
    for module in spec["imports"]:  # plug-ins that registered the case's model
        importlib.import_module(module)
    timeout = timedelta(seconds=spec["collective_timeout_s"])
    if case.device == "cuda":  # one GPU per rank, bound before NCCL's first collective
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=timeout, device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo", timeout=timeout)
    files = Path(spec["folder"])
    (files / f"{spec['name']}.rank{rank}.started").touch()
    try:
        with compile_cache_for(case, spec["compile_backend"]):  # each rank compiles cold, on its own empty cache
            mine = measure(case, spec, rank, local_rank)
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        if rank == 0:
            write_json(files / f"{spec['name']}.result.json", dict(ranks=sorted(everyone, key=lambda r: r["rank"])))
    except BaseException as exc:  # pytest.skip's exception is a BaseException
        skipped = type(exc).__name__ == "Skipped"
        status = Status.SKIPPED if skipped else classify(exc) if isinstance(exc, Exception) else Status.ERROR
        message = str(exc) if isinstance(exc, CaseFailure) or skipped else f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        write_json(files / f"{spec['name']}.rank{rank}.error.json",
                   dict(rank=rank, status=status.value, error=clip_error(message)))
        return 1
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
