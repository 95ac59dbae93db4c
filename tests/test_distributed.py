"""Distributed step benchmarks: real torchrun launches (gloo on CPU) and the row's arithmetic.

Each launch starts Python and torch once per rank plus torchrun's agent (seconds each), so
the real runs are few: one DDP run on one node (with a rank that dies), two nodes on
127.0.0.1, and a rendezvous nobody comes to.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
from pathlib import Path

import pytest

from bench.matrix.options import DistSettings, parse_distribution
from bench.passes import distributed as dist_figures
from bench.runners import distributed
from bench.schema.case import Case
from bench.schema.files import CASES_FILE
from tests.helpers import ROOT, Run, bench_cmd, run_bench

PLUGIN = ["--model-module", "tests.dist_plugin"]
DDP = ["--optimizers", "adam", "--phases", "train_step", "--modes", "eager", "--distributed", "ddp"]


def rows(run_dir: Path) -> dict[str, dict]:
    path = run_dir / CASES_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return {r["extra_info"]["case_id"]: r for r in map(json.loads, lines)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(results_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(bench_cmd(results_dir, *args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """fashion_mlp and dying_mlp (whose rank 1 exits at its 4th step) on 1 and 2 ranks."""
    return run_bench(tmp_path_factory.mktemp("ddp"), *PLUGIN, "--models", "dying_mlp,fashion_mlp", *DDP,
                     "--nproc", "2")


@pytest.mark.slow
def test_ddp_rows_hold_every_rank_and_the_scaling_against_one_rank(ddp_run):
    out = ddp_run.proc.stdout + ddp_run.proc.stderr
    found = rows(ddp_run.run_dir)
    one, two = found["train_step[fashion_mlp-adam-cpu-eager-b64-ddp1]"], found["train_step[fashion_mlp-adam-cpu-eager-b64-ddp2]"]
    assert one["extra_info"]["status"] == "ok" and two["extra_info"]["status"] == "ok", out
    e = two["extra_info"]
    assert (e["distributed"], e["world_size"], e["nnodes"]) == ("ddp", 2, 1)
    assert len(e["rank_median_s"]) == len(e["rank_p90_s"]) == 2
    assert all(p >= m > 0 for m, p in zip(e["rank_median_s"], e["rank_p90_s"]))
    # The row's rounds are the slowest rank's: its median is the row's median.
    assert e["rank_median_s"][e["slowest_rank"]] == max(e["rank_median_s"])
    assert statistics.median(two["stats"]["data"]) == pytest.approx(max(e["rank_median_s"]))
    assert e["samples_per_s"] == pytest.approx(2 * 64 / two["stats"]["median"])
    assert e["scaling_efficiency"] == pytest.approx(e["samples_per_s"] / (2 * one["extra_info"]["samples_per_s"]))
    assert one["extra_info"]["scaling_efficiency"] == 1.0
    assert e["allreduce_s"] > 0
    # Each rank trained on its own batch: equal parameters mean the gradients were averaged.
    assert e["ranks_in_sync"] is True
    # Each rank gets its share of the cores, the 1-rank baseline the same (weak scaling); two
    # ranks oversubscribe a host of two cores or fewer (nothing left for communication).
    cores, threads = e["node_cores"], e["num_threads"]
    assert threads == one["extra_info"]["num_threads"] == distributed.threads_per_rank(2)
    assert e["oversubscribed"] is (2 * threads > cores or cores <= 2)
    assert one["extra_info"]["oversubscribed"] is False


@pytest.mark.slow
def test_a_rank_that_dies_fails_its_case_by_rank_and_the_run_goes_on(ddp_run):
    found = rows(ddp_run.run_dir)
    dead = found["train_step[dying_mlp-adam-cpu-eager-b64-ddp2]"]["extra_info"]
    assert dead["status"] == "error"
    assert dead["error"].startswith("rank 1 (node 0, local rank 1, host ") and "exit code 3" in dead["error"]
    # Measured before it (its 1-rank case) and after it (fashion_mlp): all kept.
    assert found["train_step[dying_mlp-adam-cpu-eager-b64-ddp1]"]["extra_info"]["status"] == "ok"
    assert len(found) == 4 and ddp_run.proc.returncode == 1


@pytest.mark.slow
def test_the_report_shows_the_distributed_figures(ddp_run):
    report = (ddp_run.run_dir / "report.md").read_text(encoding="utf-8")
    for label in ("scaling eff.", "all-reduce", "slowest rank", "rank imbalance"):
        assert label in report
    crowded = sum(r["extra_info"].get("oversubscribed") is True for r in rows(ddp_run.run_dir).values()
                  if r["extra_info"]["status"] == "ok")
    # The summary says how many cases ran oversubscribed (on this 2-core machine: the 2-rank one).
    assert (f"{crowded} distributed case(s) ran oversubscribed" in report) is (crowded > 0)


@pytest.mark.slow
def test_two_nodes_on_localhost_make_one_row(tmp_path):
    port = free_port()
    common = [*PLUGIN, "--models", "tiny_mlp", *DDP, "--nproc", "1", "--nnodes", "2",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-timeout", "120", "--world-sizes", "2"]
    nodes = [start(tmp_path / f"node{k}", *common, "--node-rank", str(k)) for k in (1, 0)]
    outs = [p.communicate(timeout=300)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs
    found = rows(Run(None, tmp_path / "node0").run_dir)
    (row,) = found.values()
    e = row["extra_info"]
    assert e["case_id"] == "train_step[tiny_mlp-adam-cpu-eager-b64-ddp2]" and e["status"] == "ok"
    assert (e["nnodes"], len(e["rank_median_s"]), e["ranks_in_sync"]) == (2, 2, True)
    # By default a rank takes its node's cores (1 rank per node): two "nodes" on one host
    # then hold twice its cores (oversubscribed, unless OMP_NUM_THREADS says otherwise).
    assert e["num_threads"] == distributed.threads_per_rank(1)
    assert e["oversubscribed"] is (2 * e["num_threads"] > e["node_cores"] or e["node_cores"] <= 2)
    report = (Run(None, tmp_path / "node0").run_dir / "report.md").read_text(encoding="utf-8")
    assert ("oversubscribed" in report) is e["oversubscribed"]  # the flag the row's table line shows
    assert not rows(Run(None, tmp_path / "node1").run_dir)  # node 1 lent its rank
    assert "lent its ranks to node 0" in outs[0]


@pytest.mark.slow
def test_a_rendezvous_nobody_comes_to_exits_2_keeping_what_was_measured(tmp_path):
    run = run_bench(tmp_path, *PLUGIN, "--models", "tiny_mlp", *DDP, "--nproc", "1", "--nnodes", "2",
                    "--node-rank", "0", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-timeout", "3")
    out = run.proc.stdout + run.proc.stderr
    assert run.proc.returncode == 2, out
    assert "the ranks never met at 127.0.0.1:" in out and "--rdzv-timeout 3 s" in out
    kept = rows(run.run_dir)  # the 1-rank baseline ran before it, on this node alone
    assert kept["train_step[tiny_mlp-adam-cpu-eager-b64-ddp1]"]["extra_info"]["status"] == "ok"


@pytest.mark.parametrize(("args", "message"), [
    (["--nproc", "0"], "invalid value '0' for --nproc; expected an integer of at least 1"),
    (["--nproc", "x"], "invalid value 'x' for --nproc"),
    (["--nproc", "2", "--nnodes", "0"], "invalid value '0' for --nnodes"),
    (["--nproc", "1", "--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
    (["--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", "nohost"], "invalid value 'nohost' for --rdzv-endpoint"),
], ids=["nproc-0", "nproc-x", "nnodes-0", "no-endpoint", "bad-endpoint"])
def test_bad_distribution_options_are_refused_before_measuring(args, message):
    option = options(*args)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_distribution(option, ("ddp",))


def test_distribution_options_without_a_distributed_case_are_refused():
    with pytest.raises(ValueError, match="--nproc applies to distributed cases; add --distributed ddp"):
        parse_distribution(options("--nproc", "2"), ("off",))
    with pytest.raises(ValueError, match=r"invalid value 2 for --world-sizes with --nnodes 1 --nproc 4; valid: 1, 4"):
        distributed.world_sizes(parse_distribution(options("--nproc", "4"), ("ddp",)), (1, 2))


def options(*args: str):
    """The parsed options of a command line, as conftest's config.option holds them."""
    from types import SimpleNamespace

    values = dict(zip(args[::2], args[1::2]))
    return SimpleNamespace(**{f"bb_{k[2:].replace('-', '_')}": values.get(k) for k in
                              ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-timeout")})


@pytest.mark.slow
def test_nproc_0_exits_2_with_its_message_and_no_run_folder(tmp_path):
    run = run_bench(tmp_path, "--models", "fashion_mlp", *DDP, "--nproc", "0")
    out = run.proc.stdout + run.proc.stderr
    assert run.proc.returncode == 2, out
    assert "invalid value '0' for --nproc" in out
    assert not list(tmp_path.iterdir())


def test_root_cause_names_the_rank_torchrun_saw_fail_first():
    log = """Root Cause (first observed failure):
[0]:
  time      : 2026-11-23_06:25:05
  host      : node-a
  rank      : 3 (local_rank: 1)
  exitcode  : -9 (pid: 27319)
"""
    # On node 1 of 2 ranks per node, local rank 1 is rank 3 (torchrun's numbering may differ).
    assert distributed.torchrun_root_cause(log, node_rank=1, nproc=2) == (
        3, "rank 3 (node 1, local rank 1, host node-a) died partway, with signal 9")
    assert distributed.torchrun_root_cause("no summary", node_rank=0, nproc=2) is None


def test_oversubscription_counts_threads_per_host():
    def rank(host: str, threads: int, cores: int = 4) -> dict:
        return dict(host=host, node=0, threads=threads, cores=cores)

    assert not dist_figures.oversubscribed([rank("a", 2), rank("a", 2), rank("b", 4)])
    assert dist_figures.oversubscribed([rank("a", 2), rank("a", 3), rank("b", 1)])
    # As many ranks as cores (2 ranks of 1 thread on 2 cores): no core left for communication.
    assert dist_figures.oversubscribed([rank("a", 1, cores=2), rank("a", 1, cores=2)])
    assert not dist_figures.oversubscribed([rank("a", 1, cores=3), rank("a", 1, cores=3)])
    assert not dist_figures.oversubscribed([rank("a", 2, cores=2)])  # one rank: its own threads only


def test_threads_per_rank_share_the_cores_unless_omp_num_threads_says(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = distributed.usable_cores()
    assert distributed.threads_per_rank(1) == cores
    assert distributed.threads_per_rank(cores + 1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert distributed.threads_per_rank(2) == 3


def test_multi_node_launch_uses_c10d_at_the_endpoint_with_one_id_per_case(tmp_path):
    settings = DistSettings(nproc=2, nnodes=2, node_rank=1, endpoint="10.0.0.1:29400",
                                    rdzv_timeout_s=30)
    case = Case("train_step", "lenet", "adam", "cpu", "eager", distributed="ddp", world_size=4)
    cmd = distributed.launch_command(settings, case, tmp_path / "spec.json")
    text = " ".join(cmd)
    assert "--nnodes 2 --nproc-per-node 2 --node-rank 1 --rdzv-backend c10d --rdzv-endpoint 10.0.0.1:29400" in text
    assert "join_timeout=30,read_timeout=30" in text and "--standalone" not in text
    other = distributed.launch_command(settings, Case("train_step", "lenet", "sgd", "cpu", "eager",
                                                      distributed="ddp", world_size=4), tmp_path / "s")
    run_id = cmd[cmd.index("--rdzv-id") + 1]
    assert run_id != other[other.index("--rdzv-id") + 1]
    # The baseline on one rank runs on this node alone.
    alone = distributed.launch_command(settings, Case("train_step", "lenet", "adam", "cpu", "eager",
                                                      distributed="ddp", world_size=1), tmp_path / "s")
    assert "--standalone" in alone and alone[alone.index("--nproc-per-node") + 1] == "1"
