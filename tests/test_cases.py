from pathlib import Path

import pytest

from bench.matrix import select as matrix
from bench.schema.case import AXES, AXIS_FIELDS, CASE_FIELDS, Case
from bench.matrix.select import SelectionError
from bench.workloads.optimizers import implementations, list_optimizers, seed_optimizers


def test_ids_read_like_pytest_ids():
    case = Case(phase="train_step", model="fashion_mlp", optimizer="adam", device="cpu", mode="eager")
    assert case.id == "train_step[fashion_mlp-adam-cpu-eager-b64]"
    fwd = Case(phase="forward", model="lenet", optimizer=None, device="cuda", mode="compile",
               dtype="bfloat16", batch_size=128)
    assert fwd.id == "forward[lenet-cuda-compile-bfloat16-b128]"
    assert Case.from_dict(case.as_dict()) == case


def test_default_preset_shape():
    cases = matrix.select("default")
    # 5 seed models x (forward + backward + 8 optimizers x 2 optimizer phases) eager on CPU,
    # plus compile for lenet and fashion_mlp train_step with sgd and adam.
    assert len(cases) == 5 * (2 + 8 * 2) + 4
    assert len(set(cases)) == len(cases)
    compiled = {c.id for c in cases if c.mode == "compile"}
    assert compiled == {f"train_step[{m}-{o}-cpu-compile-b64]"
                        for m in ("lenet", "fashion_mlp") for o in ("sgd", "adam")}
    assert {c.device for c in cases} == {"cpu"}


def test_forward_and_backward_are_not_repeated_per_optimizer():
    cases = matrix.select("full", models=("lenet",), devices=("cpu",), modes=("eager",))
    assert sum(c.phase == "forward" for c in cases) == 1
    assert sum(c.phase == "backward" for c in cases) == 1
    assert sum(c.phase == "train_step" for c in cases) == len(seed_optimizers())
    assert all(c.optimizer is None for c in cases if c.phase in ("forward", "backward"))


def test_overrides_replace_the_axis_in_every_block():
    cases = matrix.select("default", models=("lenet",), devices=("cuda",))
    assert {c.model for c in cases} == {"lenet"}
    assert {c.device for c in cases} == {"cuda"}
    assert any(c.mode == "compile" for c in cases)


def test_smoke_preset_is_small():
    cases = matrix.select("smoke")
    assert len(cases) == 8
    assert {c.mode for c in cases} == {"eager"}


def test_parse_axis_rejects_unknown_values_with_choices():
    with pytest.raises(SelectionError, match=r"unknown value 'gpu' for --devices; valid choices: cpu, cuda"):
        matrix.parse_axis("devices", "cpu,gpu")
    with pytest.raises(SelectionError, match=r"'momentum' for --optimizers; valid choices: manual_sgd, sgd"):
        matrix.parse_axis("optimizers", "momentum")
    with pytest.raises(SelectionError, match=r"invalid value 'x' for --batch-sizes; expected integers of at least 1, e.g. 32,64"):
        matrix.parse_axis("batch_sizes", "32,x")
    with pytest.raises(SelectionError, match=r"unknown preset 'huge'; valid choices: smoke, default, full"):
        matrix.select("huge")


def test_parse_axis_keeps_order_and_drops_duplicates():
    assert matrix.parse_axis("models", "lenet, fashion_mlp,lenet") == ("lenet", "fashion_mlp")
    assert matrix.parse_axis("batch_sizes", "64,32,64") == (64, 32)


def test_loader_axes_vary_only_the_data_phases_and_stay_out_of_default_ids():
    from bench.matrix.select import parse_axis

    select = matrix.select
    selected = select("smoke", models=("fashion_mlp",), phases=("forward", "data", "epoch"),
                      num_workers=(0, 2), pin_memory=(False, True), persistent_workers=(True,), transforms=("v1", "v2"))
    ids = [c.id for c in selected]
    assert "forward[fashion_mlp-cpu-eager-b64]" in ids and sum(i.startswith("forward[") for i in ids) == 1
    # Without workers persistence does not exist: w0 cases carry no "persist".
    assert "data[fashion_mlp-cpu-eager-b64-pin-v2]" in ids
    assert "epoch[fashion_mlp-adam-cpu-eager-b64-w2-pin-persist]" in ids
    assert not any("persist" in i and "-w2" not in i for i in ids)
    assert len([i for i in ids if i.startswith("epoch[")]) == 2 * 2 * 2  # workers x pin x transforms
    assert parse_axis("pin_memory", "off,on") == (False, True)
    with pytest.raises(SelectionError, match=r"invalid value 'maybe' for --pin-memory; valid choices: off, on"):
        parse_axis("pin_memory", "maybe")
    with pytest.raises(SelectionError, match=r"invalid value '-1' for --num-workers; expected integers of at least 0"):
        parse_axis("num_workers", "-1")
    with pytest.raises(SelectionError, match=r"unknown value 'v3' for --transforms; valid choices: v1, v2"):
        parse_axis("transforms", "v3")
    # The data phase has nothing to compile: no compile-mode case of it.
    assert not [c for c in select("smoke", phases=("data",), modes=("eager", "compile")) if c.mode == "compile"]


def test_compile_modes_cuda_settings_and_distribution_vary_only_where_they_exist():
    select = matrix.select
    cases = select("smoke", models=("lenet",), phases=("forward", "train_step"), devices=("cpu", "cuda"),
                   modes=("eager", "compile"), compile_modes=("default", "reduce-overhead"),
                   tf32=(False, True), cudnn_benchmark=(True,))
    ids = {c.id for c in cases}
    # Eager cases have no compile mode; CPU cases keep the CUDA settings' defaults.
    assert "forward[lenet-cpu-eager-b64]" in ids
    assert "forward[lenet-cpu-compile-reduce-overhead-b64]" in ids
    assert "forward[lenet-cuda-compile-reduce-overhead-b64-tf32-cudnn_bench]" in ids
    assert not any("tf32" in i or "cudnn" in i for i in ids if "-cpu-" in i)
    assert not any("reduce-overhead" in i for i in ids if "-eager-" in i)
    assert len(cases) == 2 * (1 + 2) * 1 + 2 * (1 + 2) * 2  # phase x (eager + 2 modes) x cpu/cuda tf32
    dist = select("smoke", models=("lenet",), distributed=("ddp",), world_sizes=(1, 2))
    # Only the training step runs distributed; without "off" nothing else is selected.
    assert [c.id for c in dist] == ["train_step[lenet-adam-cpu-eager-b64-ddp1]",
                                    "train_step[lenet-adam-cpu-eager-b64-ddp2]"]
    both = select("smoke", models=("lenet",), distributed=("off", "ddp"), world_sizes=(2,))
    assert {c.id for c in both if c.phase == "train_step"} == {
        "train_step[lenet-adam-cpu-eager-b64]", "train_step[lenet-adam-cpu-eager-b64-ddp2]"}
    assert matrix.parse_axis("compile_modes", "max-autotune") == ("max-autotune",)
    assert matrix.parse_axis("tf32", "on") == (True,)
    with pytest.raises(SelectionError, match=r"'turbo' for --compile-modes; valid choices: default, reduce-overhead"):
        matrix.parse_axis("compile_modes", "turbo")
    with pytest.raises(SelectionError, match=r"invalid value '0' for --world-sizes; expected integers of at least 1"):
        matrix.parse_axis("world_sizes", "0")


def test_optimizer_implementations_are_entries_kept_out_of_the_presets():
    new = {"adam_foreach", "adam_fused", "adamw_foreach", "adamw_fused", "sgd_foreach", "sgd_fused"}
    assert new <= set(list_optimizers()) and not new & set(seed_optimizers())
    assert implementations("adam") == ["adam", "adam_foreach", "adam_fused"]
    assert implementations("rmsprop") == ["rmsprop"]
    for preset in ("default", "full"):
        assert not {c.optimizer for c in matrix.select(preset)} & new, preset
    # Selected by name like any optimizer, with the implementation in the id.
    cases = matrix.select("smoke", models=("fashion_mlp",), phases=("train_step",), optimizers=("adam_fused",))
    assert [c.id for c in cases] == ["train_step[fashion_mlp-adam_fused-cpu-eager-b64]"]


def test_every_axis_is_a_case_field_and_an_isolated_child_is_pinned_to_all_of_them():
    from bench.runners.isolated import child_args

    assert set(AXIS_FIELDS) == set(AXES)
    assert set(AXIS_FIELDS.values()) == set(CASE_FIELDS)
    case = Case(phase="train_step", model="lenet", optimizer="adam", device="cuda", mode="compile",
                compile_mode="max-autotune", tf32=True, cudnn_benchmark=True, amp="bfloat16",
                image_size=32, memory_format="channels_last")

    class Config:
        class invocation_params:
            args = ("bench", "--compile-modes", "default,max-autotune", "--tf32", "off,on")

    args = child_args(Config, case, Path("/tmp"))
    # The last value of each option wins: the child selects exactly this case.
    last = {flag: args[len(args) - 1 - args[::-1].index(flag) + 1]
            for flag in ("--compile-modes", "--tf32", "--cudnn-benchmark", "--distributed", "--world-sizes")}
    assert last == {"--compile-modes": "max-autotune", "--tf32": "on", "--cudnn-benchmark": "on",
                    "--distributed": "off", "--world-sizes": "1"}
