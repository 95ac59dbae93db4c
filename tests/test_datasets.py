"""The seed's data through torchvision's own classes: synthetic IDX files, checked roots."""

from __future__ import annotations

import hashlib

import pytest
import torch

import models
from bench.workloads import datasets as D


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return D.synthetic_root(D.SyntheticSpec(train_size=1280, test_size=128), cache=tmp_path_factory.mktemp("c"))


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_synthetic_data_loads_through_torchvision_and_is_seeded(root, tmp_path):
    assert D.check_root(root) == {"train": 1280, "test": 128}
    train = D.load(root)
    assert type(train).__module__.startswith("torchvision.datasets") and len(train) == 1280
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.min() >= -1 and image.max() <= 1 and 0 <= label < 10
    assert D.load(root, size=32)[0][0].shape == (1, 32, 32)  # LeNet's blitz input, padded
    rgb = D.load(root, size=64, channels=3, transforms="v2")[0][0]  # a vision model's input, resized
    assert rgb.shape == (3, 64, 64) and torch.equal(rgb[0], rgb[2])
    mnist = D.load(D.synthetic_root(D.SyntheticSpec(dataset="MNIST", train_size=64, test_size=8), cache=tmp_path),
                   "MNIST")
    assert type(mnist).__name__ == "MNIST" and len(mnist) == 64
    v1, v2 = D.load(root, transforms="v1")[5][0], D.load(root, transforms="v2")[5][0]
    assert torch.allclose(v1, v2, atol=1e-6)  # the two pipelines compute the same tensor
    again = D.synthetic_root(D.SyntheticSpec(train_size=1280, test_size=128), cache=tmp_path)
    files, copies = D.raw_files(root, "FashionMNIST"), D.raw_files(again, "FashionMNIST")
    assert all(digest(files[k]) == digest(copies[k]) for k in files)
    other = D.synthetic_root(D.SyntheticSpec(train_size=1280, test_size=128, rng_seed=1), cache=tmp_path)
    assert digest(D.raw_files(other, "FashionMNIST")["train_images"]) != digest(files["train_images"])


def test_the_seed_loop_learns_the_synthetic_classes(root):
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(D.load(root), batch_size=64, shuffle=True)
    model = models.get_spec("fashion_mlp").build()
    criterion, optimizer = torch.nn.NLLLoss(), torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        running = 0.0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = criterion(model(images.view(images.shape[0], -1)), labels)
            loss.backward()
            optimizer.step()
            running += loss.item()
        losses.append(running / len(loader))
    assert losses[0] > losses[1] > losses[2]
    assert losses[0] < 2.0 < 2.31  # ln(10) = 2.30 is chance: the first epoch already learns


def copy_root(src, dst):
    for key, path in D.raw_files(src, "FashionMNIST").items():
        target = D.raw_files(dst, "FashionMNIST")[key]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return D.raw_files(dst, "FashionMNIST")


def test_a_bad_data_root_names_the_file_and_the_fault(root, tmp_path):
    with pytest.raises(D.DataError, match=r"--data-root .*nowhere: no such folder"):
        D.check_root(tmp_path / "nowhere")
    files = copy_root(root, tmp_path / "three")
    files["test_labels"].unlink()
    with pytest.raises(D.DataError, match=r"3 of the 4 FashionMNIST raw files present; missing .*t10k-labels-idx1-ubyte"):
        D.check_root(tmp_path / "three")
    files = copy_root(root, tmp_path / "cut")
    data = files["train_images"].read_bytes()
    files["train_images"].write_bytes(data[: len(data) // 2])
    with pytest.raises(D.DataError, match=r"train-images-idx3-ubyte: truncated or padded IDX file"):
        D.check_root(tmp_path / "cut")
    files = copy_root(root, tmp_path / "magic")
    files["train_labels"].write_bytes(b"\x00\x00\x08\x03" + files["train_labels"].read_bytes()[4:])
    with pytest.raises(D.DataError, match=r"train-labels-idx1-ubyte: wrong IDX magic number 2051 \(expected 2049\)"):
        D.check_root(tmp_path / "magic")
    with pytest.raises(D.DataError, match="unknown dataset 'CIFAR'; valid choices: FashionMNIST, MNIST"):
        D.check_root(root, "CIFAR")
