"""Distributed step benchmarks: ``--distributed ddp|fsdp --nproc N [--nnodes M --node-rank K
--rdzv-endpoint HOST:PORT]``.

Each distributed case is launched with torchrun (``python -m torch.distributed.run``):
``--standalone`` on one node, torch's c10d rendezvous at ``--rdzv-endpoint`` across nodes.
Every rank (``bench.runners.dist_worker``) times ``train_step``; rank 0 writes the raw per-rank
times, and the launcher on node 0 turns them into the case's row (``row``), with the figures
declared here. The row's rounds are the **slowest rank's** (the rank with the largest
median), so its median, CI and the gate's tests describe the rank that paces the others.

World size = nodes × processes per node; the batch size is per rank (weak scaling), and the
same case on one rank (world size 1, selected with it and run first) is the baseline of the
scaling efficiency. Every node runs the same command; the 1-rank baselines run on node 0
only, and node 0 records the rows (the other nodes' launchers record nothing).

The figures of the row are declared and computed in ``bench.passes.distributed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pytest

from bench.matrix.options import DistSettings
from bench.passes.counts import safe_name
from bench.passes.distributed import rank_figures
from bench.runners.base import MEASURED_ELSEWHERE
from bench.schema.case import Case
from bench.schema.results import RunWriter
from bench.schema.status import ReportedFailure, Status

if TYPE_CHECKING:
    from bench.workloads.step import Step

DIST_DIR = "distributed"  # in the run folder: each case's spec, torchrun log and per-rank files
COLLECTIVE_TIMEOUT_S = 600.0  # a rank waiting on a dead peer; torchrun normally stops it first
ROOT = Path(__file__).resolve().parents[2]
# What torchrun prints when the ranks never met (no worker started).
_RENDEZVOUS_ERRORS = ("RendezvousTimeoutError", "RendezvousConnectionError", "RendezvousClosedError",
                      "RendezvousError", "DistNetworkError", "DistStoreError")


class RendezvousFailure(RuntimeError):
    """The nodes never met: a bad endpoint, or another node that did not come."""


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_rank(ranks_per_node: int) -> int:
    """OMP_NUM_THREADS when set, else this node's cores shared by its ranks. Every case of the
    run, the 1-rank baseline included, gets the same (weak scaling: fixed per-rank work and
    resources). More threads than cores slow every rank down (OpenMP threads wait on each
    other): measured here, 2 threads per rank on a busy 2-core machine made a step 50× slower."""
    text = os.environ.get("OMP_NUM_THREADS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    return max(1, usable_cores() // ranks_per_node)


def world_sizes(settings: DistSettings, given: Sequence[int] | None) -> tuple[int, ...] | None:
    """The world sizes to select: 1 (the baseline) and nodes × nproc; a --world-sizes the
    nodes cannot make is an error."""
    if settings.world is None:  # each world size on this node alone
        return None if given is None else tuple(given)
    if given is None:
        return tuple(dict.fromkeys((1, settings.world)))
    bad = [w for w in given if w not in (1, settings.world)]
    if bad:
        raise ValueError(f"invalid value {bad[0]} for --world-sizes with --nnodes {settings.nnodes} --nproc "
                         f"{settings.nproc}; valid: 1, {settings.world}")
    return tuple(given)


def configure(config: Any, settings: DistSettings, overrides: dict[str, tuple]) -> DistSettings:
    """Set the world sizes in ``overrides`` and the threads per rank (the options were checked
    by ``bench.matrix.options.parse_distribution``); raises ValueError for bad world sizes."""
    sizes = world_sizes(settings, overrides.get("world_sizes"))
    if sizes is not None:
        overrides["world_sizes"] = sizes
    settings = replace(settings, threads=threads_per_rank(settings.nproc or max(sizes or (1,))))
    if any(d != "off" for d in overrides.get("distributed", ())):
        # The phases' benchmark fixture stays unused: the ranks time, and the row is written here.
        config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used")
    return settings


# --- launching -------------------------------------------------------------------------------


def launch_command(settings: DistSettings, case: Case, spec_path: Path) -> list[str]:
    """torchrun for one case: standalone on this node, or c10d across ``settings.nnodes``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--max-restarts", "0"]
    if settings.multi_node(case):
        run_id = "bb-" + hashlib.sha1(case.id.encode()).hexdigest()[:16]  # the same on every node
        cmd += ["--nnodes", str(settings.nnodes), "--nproc-per-node", str(settings.nproc),
                "--node-rank", str(settings.node_rank), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", str(settings.endpoint), "--rdzv-id", run_id,
                # join: waiting for the other nodes; read: reaching node 0's store (60 s by default).
                "--rdzv-conf", f"join_timeout={settings.rdzv_timeout_s:g},read_timeout={settings.rdzv_timeout_s:g}"]
    else:
        cmd += ["--standalone", "--nnodes", "1", "--nproc-per-node", str(case.world_size)]
    return [*cmd, "-m", "bench.runners.dist_worker", str(spec_path)]


def model_imports(case: Case, modules: Sequence[str]) -> list[str]:
    """What a rank imports before building: the --model-module modules and, for a model a
    plug-in registered (``-p``), the module defining its builder."""
    import models

    builder = models.get_spec(case.model).builder
    found = getattr(builder, "__module__", "") or ""
    extra = [found] if found.split(".")[0] not in ("models", "__main__", "") else []
    return list(dict.fromkeys([*modules, *extra]))


@dataclass(frozen=True)
class Launch:
    """What the launcher needs besides the case: the budget and where to write."""

    settings: DistSettings
    run_dir: Path
    max_time: float
    min_rounds: int
    compile_backend: str = "inductor"
    model_modules: tuple[str, ...] = ()


def run_case(launch: Launch, case: Case) -> dict[str, Any] | None:
    """Run one case's ranks; rank 0's gathered result (None on a node without rank 0).

    Raises RendezvousFailure when the nodes never met, and a CaseFailure (its status, the
    failing rank named) when a rank failed.
    """
    settings = launch.settings
    folder = launch.run_dir / DIST_DIR
    folder.mkdir(exist_ok=True)
    name = safe_name(case.id)
    for stale in folder.glob(f"{name}.*"):
        stale.unlink()  # a rerun into the same folder starts clean
    node_rank = settings.node_rank if settings.multi_node(case) else 0
    nproc = settings.nproc if settings.multi_node(case) else case.world_size
    spec = dict(case=case.as_dict(), max_time=launch.max_time, min_rounds=launch.min_rounds,
                compile_backend=launch.compile_backend, imports=model_imports(case, launch.model_modules),
                node_rank=node_rank, nproc_per_node=nproc, threads=settings.threads, folder=str(folder),
                name=name, collective_timeout_s=max(COLLECTIVE_TIMEOUT_S, settings.rdzv_timeout_s))
    spec_path = folder / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads))  # else torchrun sets 1 per rank
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    log_path = folder / f"{name}.node{node_rank}.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.run(launch_command(settings, case, spec_path), cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    result = folder / f"{name}.result.json"
    if proc.returncode == 0 and result.is_file():
        return json.loads(result.read_text(encoding="utf-8"))
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    started = list(folder.glob(f"{name}.rank*.started"))
    if proc.returncode == 0 and node_rank != 0:
        return None  # rank 0 lives on node 0, which records the row
    if not started and any(e in log_text for e in _RENDEZVOUS_ERRORS):
        where = f"at {settings.endpoint}" if settings.multi_node(case) else "on this node"
        raise RendezvousFailure(
            f"{case.id}: the ranks never met {where} within --rdzv-timeout {settings.rdzv_timeout_s:g} s "
            f"(is every node started with the same command and --rdzv-endpoint, node 0 at that address, "
            f"the port free and reachable?); torchrun's last lines ({log_path}):\n{tail(log_text)}")
    raise RankFailure.from_files(folder, name, log_text, log_path, proc.returncode, node_rank, nproc)


class RankFailure(ReportedFailure):
    """A rank failed: its error (or torchrun's account of its exit) names it."""

    @classmethod
    def from_files(cls, folder: Path, name: str, log_text: str, log_path: Path, code: int, node_rank: int,
                   nproc: int) -> "RankFailure":
        """The failing rank's own error when it wrote one, else torchrun's account of its exit.
        torchrun's first observed failure names the rank that failed first: the others then
        fail too (their peer is gone), and their errors say only that."""
        errors = {e["rank"]: e for e in (json.loads(p.read_text(encoding="utf-8"))
                                         for p in folder.glob(f"{name}.rank*.error.json"))}
        cause = torchrun_root_cause(log_text, node_rank, nproc)
        if cause is not None and cause[0] in errors:
            first = errors[cause[0]]
        elif cause is not None:
            return cls(f"{cause[1]}; torchrun's log: {log_path}")
        elif errors:
            first = errors[min(errors)]
        else:
            return cls(f"torchrun exited with status {code} without a result; its last lines ({log_path}):\n"
                       f"{tail(log_text)}")
        return cls(f"rank {first['rank']}: {first['error']}", Status(first["status"]))


def torchrun_root_cause(log_text: str, node_rank: int, nproc: int) -> tuple[int, str] | None:
    """torchrun's "Root Cause" summary (this node's first failed worker): its rank, counted as
    the rows count them (node rank × nproc + local rank), and how it ended, in one line."""
    match = re.search(r"Root Cause.*?host\s*:\s*(\S+).*?local_rank:\s*(\d+)\).*?exitcode\s*:\s*(-?\d+)",
                      log_text, re.DOTALL)
    if not match:
        return None
    host, local, code = match.group(1), int(match.group(2)), int(match.group(3))
    rank = node_rank * nproc + local
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    return rank, f"rank {rank} (node {node_rank}, local rank {local}, host {host}) died partway, with {how}"


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- the row ---------------------------------------------------------------------------------


def scaling_efficiency(case: Case, samples_per_s: float, run_dir: Path) -> float | None:
    """samples/s / (N × samples/s of the 1-rank case of this run), when it was measured."""
    if case.world_size == 1:
        return 1.0
    from bench.runners.isolated import last_row

    base = last_row(run_dir, replace(case, world_size=1).id)
    extra = (base or {}).get("extra_info") or {}
    if extra.get("status") != Status.OK.value or not extra.get("samples_per_s"):
        return None
    return samples_per_s / (case.world_size * extra["samples_per_s"])


def stats_of(times: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's statistics of the rounds, with the rounds, as its JSON holds them."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for t in times:
        stats.update(t)
    return dict(stats.as_dict(), iterations=1, data=list(times))


def row(case: Case, result: Mapping[str, Any], run_dir: Path, name: str, nodeid: str) -> dict[str, Any]:
    """The case's row: the slowest rank's rounds as its timing, rank 0's context figures,
    the per-rank figures and the scaling efficiency."""
    ranks = result["ranks"]
    figures = rank_figures(case, ranks)
    slowest = next(r for r in ranks if r["rank"] == figures["slowest_rank"])
    statuses = [r for r in ranks if r["status"] != Status.OK.value]
    extra = dict({**case.as_dict(), **ranks[0]["figures"], **figures}, case_id=case.id,
                 status=statuses[0]["status"] if statuses else Status.OK.value,
                 invalid_reason=f"rank {statuses[0]['rank']}: {statuses[0]['invalid_reason']}" if statuses else None,
                 scaling_efficiency=scaling_efficiency(case, figures["samples_per_s"], run_dir))
    return {"group": None, "name": name, "fullname": nodeid, "params": {"case": case.params_id},
            "param": case.params_id, "extra_info": extra, "stats": stats_of(slowest["times"]),
            "finished_at": time.time()}


@dataclass
class DistributedRunner:
    """A distributed case (``--distributed ddp|fsdp``): its ranks run under torchrun, and node 0
    records the row of what rank 0 gathered. A rendezvous that never happens stops the run
    (exit 2, the rows already written kept); a rank that fails fails its case only."""

    launch: Launch
    node: pytest.Item
    writer: RunWriter
    last_step: Step | None = None  # never set: the step lived in the ranks

    def measure(self, benchmark: Any, case: Case) -> None:
        settings = self.launch.settings
        if not settings.records_rows():
            self.node.stash[MEASURED_ELSEWHERE] = True  # node 0 records every row
            if not settings.multi_node(case):
                pytest.skip(f"the {case.world_size}-rank case runs on node 0 alone")
        try:
            result = run_case(self.launch, case)
        except RendezvousFailure as exc:
            pytest.exit(str(exc), returncode=2)
        except RankFailure as exc:
            if exc.status is Status.SKIPPED:
                pytest.skip(str(exc))
            raise
        if result is None:
            return  # this node lent its ranks; node 0 has the row
        self.node.stash[MEASURED_ELSEWHERE] = True
        self.writer.write(row(case, result, self.writer.run_dir, self.node.name, self.node.nodeid))
