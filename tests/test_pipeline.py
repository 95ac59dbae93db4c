"""The seed's DataLoader and epoch loop, timed per step: data wait against compute."""

from __future__ import annotations

import statistics

import pytest
import torch

import models
from bench import datasets as D
from bench import pipeline as P


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = D.synthetic_root(D.SyntheticSpec(train_size=640, test_size=64), cache=tmp_path_factory.mktemp("c"))
    return D.load(root)


def seed_training(rng_seed: int = 0):
    torch.manual_seed(rng_seed)
    model = models.get_spec("fashion_mlp").build()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    return P.seed_step(model, torch.nn.NLLLoss(), optimizer, lambda x: x.view(x.shape[0], -1))


def test_an_epoch_is_every_batch_once_split_into_wait_and_compute(dataset):
    loader = P.make_loader(dataset, P.LoaderSettings(batch_size=64))
    data_only = P.walk(loader, "cpu")
    assert (data_only.images, data_only.batches) == (640, 10)
    assert data_only.loss_sum == 0 and all(c < w for c, w in zip(data_only.compute_s, data_only.wait_s))
    step = seed_training()
    records = [P.walk(loader, "cpu", step) for _ in range(2)]
    figures = P.summarize_epochs(records)
    assert (figures["epoch_images"], figures["epoch_batches"]) == (640, 10)
    waits = sum(w for r in records for w in r.wait_s)
    assert figures["data_wait_share"] == pytest.approx(waits / sum(r.total_s for r in records))
    assert figures["images_per_s"] == pytest.approx(640 / statistics.median(r.total_s for r in records))
    assert records[1].mean_loss < records[0].mean_loss  # the seed's loop learns the synthetic classes
    assert P.loss_line(0.25) == "Training loss: 0.25"


def test_loader_settings_reach_the_data_loader(dataset):
    loader = P.make_loader(dataset, P.LoaderSettings(num_workers=1, persistent_workers=True, prefetch_factor=4,
                                                     pin_memory=False))
    assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (1, True, 4)
    assert P.walk(loader, "cpu").images == 640  # worker processes deliver the whole epoch
    # Without workers torch refuses prefetch_factor and persistent_workers: they are left out.
    plain = P.make_loader(dataset, P.LoaderSettings(persistent_workers=True, prefetch_factor=4))
    assert plain.num_workers == 0 and not plain.persistent_workers
    first = [labels.tolist() for _, labels in P.make_loader(dataset, P.LoaderSettings(), rng_seed=3)]
    again = [labels.tolist() for _, labels in P.make_loader(dataset, P.LoaderSettings(), rng_seed=3)]
    assert first == again  # shuffled, reproducibly
