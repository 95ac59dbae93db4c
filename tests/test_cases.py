import pytest

from bench import cases as matrix
from bench.cases import Case, SelectionError
from bench.optimizers import list_optimizers


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
    assert sum(c.phase == "train_step" for c in cases) == len(list_optimizers())
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
    with pytest.raises(SelectionError, match=r"invalid batch size 'x'"):
        matrix.parse_axis("batch_sizes", "32,x")
    with pytest.raises(SelectionError, match=r"unknown preset 'huge'; valid choices: smoke, default, full"):
        matrix.select("huge")


def test_parse_axis_keeps_order_and_drops_duplicates():
    assert matrix.parse_axis("models", "lenet, fashion_mlp,lenet") == ("lenet", "fashion_mlp")
    assert matrix.parse_axis("batch_sizes", "64,32,64") == (64, 32)
