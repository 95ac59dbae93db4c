import subprocess
import sys

import pytest
import torch
from torch import nn

import models

SEED_LENET_REPR = """Net(
  (conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))
  (conv2): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))
  (fc1): Linear(in_features=400, out_features=120, bias=True)
  (fc2): Linear(in_features=120, out_features=84, bias=True)
  (fc3): Linear(in_features=84, out_features=10, bias=True)
)"""


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "count", "tensors"),
    [("lenet", 61_706, 10), ("lenet3x3", 81_194, 10), ("fashion_mlp", 235_146, 6),
     ("fashion_mlp_dropout", 235_146, 6), ("fashion_mlp_functional", 235_146, 6)],
)
def test_seed_parameter_counts(name, count, tensors):
    model = models.get_model(name)
    assert n_params(model) == count
    assert len(list(model.parameters())) == tensors


def test_lenet_matches_the_blitz():
    model = models.get_model("lenet")
    params = list(model.parameters())
    assert params[0].size() == torch.Size([6, 1, 5, 5])  # conv1's .weight, as printed in the seed
    assert str(model) == SEED_LENET_REPR
    out = model(torch.randn(1, 1, 32, 32))
    assert out.shape == (1, 10)


def test_lenet3x3_shapes():
    model = models.get_model("lenet3x3")
    assert model.conv1.kernel_size == (3, 3)
    assert model.fc1.in_features == 576
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_fashion_mlp_layers_and_output():
    model = models.get_model("fashion_mlp")
    assert [(m.in_features, m.out_features) for m in (model.hidden1, model.hidden2, model.output)] == [
        (784, 256), (256, 128), (128, 10)]
    assert "Dropout" not in str(model)
    out = model(torch.randn(4, 784))
    # LogSoftmax over classes: each row's probabilities sum to one.
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(4))


def test_dropout_variant_is_random_in_train_and_deterministic_in_eval():
    model = models.get_model("fashion_mlp_dropout")
    assert model.drop.p == 0.25
    x = torch.randn(8, 784)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_functional_variant_equals_module_variant_on_same_weights():
    module = models.get_model("fashion_mlp")
    functional = models.get_model("fashion_mlp_functional")
    functional.load_state_dict(module.state_dict())
    x = torch.randn(16, 784)
    torch.testing.assert_close(functional(x), module(x))


def test_specs_carry_input_shape_loss_and_classes():
    lenet, fashion = models.get_spec("lenet"), models.get_spec("fashion_mlp")
    assert (lenet.input_shape, lenet.loss, lenet.num_classes) == ((1, 32, 32), "mse", 10)
    assert (fashion.input_shape, fashion.loss, fashion.num_classes) == ((1, 28, 28), "nll", 10)
    assert isinstance(lenet.make_criterion(), nn.MSELoss)
    assert isinstance(fashion.make_criterion(), nn.NLLLoss)
    batch = fashion.make_batch(5)
    assert batch.first.shape == (5, 784)  # as the model takes it: the seed's image.view(image.shape[0], -1)
    assert fashion.prepare(torch.zeros(5, 1, 28, 28)).shape == (5, 784)  # the same for a loader's images
    assert batch.target.dtype == torch.int64 and batch.target.shape == (5,)
    batch = lenet.make_batch(3)
    assert batch.first.shape == (3, 1, 32, 32) and batch.target.shape == (3, 10)


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*lenet, lenet3x3, fashion_mlp"):
        models.get_model("resnet")


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="'lenet' is already registered"):
        models.register_model(input_shape=(1, 32, 32), loss="mse", num_classes=10, name="lenet")(
            lambda: nn.Linear(1, 1))


def test_register_and_list_with_pattern():
    @models.register_model(input_shape=(4,), loss="nll", num_classes=3)
    def tiny_test_model() -> nn.Module:
        """A tiny test model."""
        return nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1))

    try:
        assert models.list_models("tiny_*") == ["tiny_test_model"]
        assert models.get_spec("tiny_test_model").description == "A tiny test model."
        assert models.list_models("fashion_*") == [
            "fashion_mlp", "fashion_mlp_dropout", "fashion_mlp_functional"]
    finally:
        models.unregister_model("tiny_test_model")
    assert "tiny_test_model" not in models.list_models()


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="unknown loss 'hinge'; valid losses: mse, nll"):
        models.register_model(input_shape=(1,), loss="hinge", num_classes=2)


def test_a_seed_selection_never_imports_torchvision():
    # Importing torchvision.models costs about 2 s a run: the default preset's seed models are
    # listed without it (a fresh interpreter, since this one may have imported it already).
    code = ("import sys; from bench.matrix import select; blocks = select.preset_blocks('default'); "
            "print(sorted({m for b in blocks for m in b['models']}), 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("]")[1].strip() == "False", out
    assert "'fashion_mlp'" in out and "'lenet'" in out, out
