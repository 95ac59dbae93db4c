"""Instruction counts (``--metric instructions``): real count runs under valgrind's callgrind.

Two count runs, started together so that their valgrind start-ups overlap (each costs about
two CPU-minutes): a small selection, and the same selection with a planted +2% work model.
Everything else here is cheap (a fake valgrind, a PATH without valgrind, the parsers).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from bench.runners.counting import model_modules
from bench.passes.counts import (COMPILE_SKIP_REASON, CUDA_SKIP_REASON, MIN_REPEAT_INSTRUCTIONS,
                                 calls_per_repeat, describe_library_isa, library_isa, parse_annotate, summarize)
from bench.schema.case import Case
from bench.schema.files import CASES_FILE, ENVIRONMENT_FILE
from tests.helpers import ROOT, Run, bench_cmd

FORWARD = "forward[fashion_mlp-cpu-eager-b64]"
TRAIN = "train_step[fashion_mlp-adam-cpu-eager-b64]"
# Two counted cases; the CUDA and compile-mode cases of the same selection are skipped.
SELECTION = ["--metric", "instructions", "--models", "fashion_mlp", "--phases", "forward,train_step",
             "--optimizers", "adam", "--devices", "cpu,cuda", "--modes", "eager,compile"]
PLANT = {"BLITZBENCH_PLANT": "fashion_mlp:slower:0.02"}
needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None,
                                    reason="valgrind is not installed (Debian package valgrind)")


def rows(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / CASES_FILE).read_text(encoding="utf-8").splitlines()
    return {r["extra_info"]["case_id"]: r for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def count_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The base and the planted count runs, in parallel (one valgrind worker each)."""
    procs = {}
    for name, extra, env in (("base", [], {}), ("planted", ["-p", "tests.plant_plugin"], PLANT)):
        results = tmp_path_factory.mktemp(name)
        procs[name] = (results, subprocess.Popen(
            bench_cmd(results, *SELECTION, *extra), cwd=ROOT, env=dict(os.environ, **env),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    runs = {}
    for name, (results, proc) in procs.items():
        out, _ = proc.communicate(timeout=1800)
        runs[name] = Run(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""), results)
        assert proc.returncode == 0, f"{name}:\n{out}"
    return runs


@pytest.mark.slow
@needs_valgrind
def test_count_rows_carry_the_figures_and_no_timing(count_runs):
    run_dir = count_runs["base"].run_dir
    found = rows(run_dir)
    for case_id in (FORWARD, TRAIN):
        row = found[case_id]
        extra = row["extra_info"]
        assert row["stats"] is None and extra["status"] == "ok"
        assert Case.from_dict(extra).id == case_id
        assert extra["instruction_repeats"] == 5
        assert len(extra["instruction_samples"]) == 5
        # K calls per repeat make at least ~10 M instructions.
        assert extra["instruction_calls_per_repeat"] * extra["instructions"] >= 0.9 * MIN_REPEAT_INSTRUCTIONS
        top = extra["instruction_top"]
        assert 0 < len(top) <= 20
        counts = [t["instructions"] for t in top]
        assert counts == sorted(counts, reverse=True) and sum(counts) <= extra["instructions"]
        assert any("libtorch_cpu" in t["function"] for t in top), top[:5]
        assert (run_dir / extra["callgrind_file"]).is_file()
    # fashion_mlp: ~4 M instructions per forward call, train_step (forward, backward, Adam) ~3x that.
    assert 1e6 < found[FORWARD]["extra_info"]["instructions"] < found[TRAIN]["extra_info"]["instructions"]
    env = json.loads((run_dir / ENVIRONMENT_FILE).read_text())
    assert env["run_kind"] == "count"
    assert env["valgrind_version"].startswith("3.")
    assert env["valgrind_isa"]  # what torch dispatches to under valgrind (e.g. AVX2)
    # MKL and oneDNN take their SSE4.2 / AVX kernels (their AVX2 ones run ~100x slower under
    # valgrind) unless the environment chose; the run says which, and the forward's GEMM is
    # MKL's SSE4.2 one ("mc3").
    assert env["count_library_isa"] == describe_library_isa(library_isa(os.environ))
    if "MKL_ENABLE_INSTRUCTIONS" not in os.environ:
        assert any("mkl_blas_mc3_" in t["function"] for t in found[FORWARD]["extra_info"]["instruction_top"])
    assert (run_dir / "report.md").is_file()


@pytest.mark.slow
@needs_valgrind
def test_repeats_agree_within_the_stability_tolerance(count_runs):
    for run in count_runs.values():
        for case_id in (FORWARD, TRAIN):
            extra = rows(run.run_dir)[case_id]["extra_info"]
            assert extra["instructions_spread"] < 0.001, (case_id, extra["instruction_samples"])


@pytest.mark.slow
@needs_valgrind
def test_cuda_and_compile_cases_are_skipped_with_the_reason(count_runs):
    found = rows(count_runs["base"].run_dir)
    cuda = [r["extra_info"] for r in found.values() if r["extra_info"]["device"] == "cuda"]
    compiled = [r["extra_info"] for r in found.values()
                if r["extra_info"]["mode"] == "compile" and r["extra_info"]["device"] == "cpu"]
    assert cuda and all(e["status"] == "skipped" and e["error"] == CUDA_SKIP_REASON for e in cuda)
    assert compiled and all(e["status"] == "skipped" and e["error"] == COMPILE_SKIP_REASON for e in compiled)


@pytest.mark.slow
@needs_valgrind
def test_a_planted_two_percent_shows_far_beyond_the_spread(count_runs):
    base, planted = (rows(count_runs[n].run_dir) for n in ("base", "planted"))
    for case_id in (FORWARD, TRAIN):
        b, p = base[case_id]["extra_info"], planted[case_id]["extra_info"]
        ratio = p["instructions"] / b["instructions"]
        noise = max(b["instructions_spread"], p["instructions_spread"])
        # One more row in 64 (+1.6% of the matmul work), plus the plant's own cat/slice.
        assert ratio > 1.01, (case_id, ratio)
        assert ratio - 1 > 20 * noise, (case_id, ratio, noise)


@pytest.mark.slow
def test_without_valgrind_the_run_names_the_package_and_exits_2(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.run(bench_cmd(tmp_path / "results", *SELECTION), cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PATH=str(empty)), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "valgrind" in out and "apt-get install valgrind" in out
    assert not list((tmp_path / "results").glob("*/" + CASES_FILE))  # nothing measured


@pytest.mark.slow
def test_a_bad_metric_names_the_choices_and_exits_2(tmp_path):
    proc = subprocess.run(bench_cmd(tmp_path, "--metric", "cycles"), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert "'cycles'" in proc.stdout + proc.stderr and "time, instructions" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_cases_with_its_last_lines(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool, body in (("valgrind", 'case "$1" in --version) echo valgrind-3.19.0;; '
                                    '*) echo "==1== fatal: planted worker death" >&2; exit 3;; esac'),
                       ("callgrind_annotate", "exit 0")):
        (fake / tool).write_text(f"#!/bin/sh\n{body}\n")
        (fake / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(bench_cmd(tmp_path / "results", "--metric", "instructions", "--models", "fashion_mlp",
                                    "--phases", "forward", "--devices", "cpu", "--modes", "eager"),
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "results").glob("2*")
    extra = rows(run_dir)[FORWARD]["extra_info"]
    assert extra["status"] == "error"
    assert "exited with status 3" in extra["error"] and "planted worker death" in extra["error"]


def test_parsers_and_repeat_sizing():
    text = """\
--------------------------------------------------------------------------------
Ir                 file:function
--------------------------------------------------------------------------------
8,130,600 (17.33%)  ???:sgemm_kernel [/usr/lib/libopenblas.so.0]
  120,000 ( 0.26%)  /src/c10/core/TensorImpl.cpp:c10::TensorImpl::~TensorImpl() [/x/libc10.so]
4,000,000 ( 8.52%)  ???:at::native::add_kernel(at::TensorIteratorBase&) [/x/libtorch_cpu.so]

--------------------------------------------------------------------------------
-- Auto-annotated source: /src/a.cpp
    12 ( 0.00%)  int x;
"""
    top = parse_annotate(text, calls=2)
    assert [t["function"] for t in top] == [
        "???:sgemm_kernel [/usr/lib/libopenblas.so.0]",
        "???:at::native::add_kernel(at::TensorIteratorBase&) [/x/libtorch_cpu.so]",
        "/src/c10/core/TensorImpl.cpp:c10::TensorImpl::~TensorImpl() [/x/libc10.so]"]
    assert top[0]["instructions"] == 4_065_300
    assert calls_per_repeat(4_300_000) == 3 and calls_per_repeat(12_000_000) == 1
    figures = summarize([300, 303, 306], calls=3)
    assert figures["instructions"] == 101 and figures["instructions_spread"] == pytest.approx(2 / 101)
    assert figures["instruction_repeats"] == 3
    # The library kernels' defaults, and a choice already in the environment wins.
    assert library_isa({}) == {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "AVX"}
    chosen = library_isa({"MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert describe_library_isa(chosen) == "MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX"


def test_a_model_registered_by_a_plug_in_is_imported_by_the_worker():
    import models

    def extra_model() -> torch.nn.Module:
        return torch.nn.Linear(4, 2)

    fashion = Case(phase="forward", model="fashion_mlp", optimizer=None, device="cpu", mode="eager")
    mine = Case(phase="forward", model="counts_extra", optimizer=None, device="cpu", mode="eager")
    models.register_model(input_shape=(4,), loss="mse", num_classes=2, name="counts_extra")(extra_model)
    try:
        assert model_modules([fashion]) == []
        assert model_modules([fashion, mine]) == [__name__]
    finally:
        models.unregister_model("counts_extra")
