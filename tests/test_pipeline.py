"""The seed's DataLoader and epoch loop, timed per step: data wait against compute."""

from __future__ import annotations

import statistics

import pytest
import torch

import models
from bench.workloads import datasets as D
from bench.passes.pipeline import summarize_epochs
from bench.workloads import pipeline as P
from reports import load
from tests.helpers import run_bench


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
    figures = summarize_epochs(records)
    assert (figures["epoch_images"], figures["epoch_batches"]) == (640, 10)
    waits = sum(w for r in records for w in r.wait_s)
    assert figures["data_wait_share"] == pytest.approx(waits / sum(r.total_s for r in records))
    steps = [w + c for r in records for w, c in zip(r.wait_s, r.compute_s)]
    assert figures["batch_s"] == pytest.approx(statistics.median(steps))
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


@pytest.mark.slow
def test_data_and_epoch_phases_run_the_seed_loop_end_to_end(tmp_path):
    run = run_bench(tmp_path / "r", "--preset", "pipeline", "--models", "fashion_mlp,lenet",
                    "--phases", "data,epoch", "--transforms", "v1", "--num-workers", "0",
                    "--data-size", "640", "--epochs", "2", env={"BLITZBENCH_DATA_CACHE": str(tmp_path / "cache")})
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    df = load(run.run_dir).set_index("case_id")
    assert sorted(df.index) == ["data[fashion_mlp-cpu-eager-b64]", "data[lenet-cpu-eager-b64]",
                                "epoch[fashion_mlp-adam-cpu-eager-b64]", "epoch[lenet-adam-cpu-eager-b64]"]
    assert (df["status"] == "ok").all() and (df["epoch_batches"] == 10).all() and (df["rounds"] == 2).all()
    assert df["samples_per_s"].gt(0).all() and df["data_wait_share"].between(0, 1).all()
    assert (df.loc["data[lenet-cpu-eager-b64]", "data_wait_share"] == pytest.approx(1.0, abs=1e-3))
    losses = df.loc["epoch[fashion_mlp-adam-cpu-eager-b64]", "epoch_losses"]
    assert len(losses) == 2 and losses[1] < losses[0]  # the untimed first epoch learned too
    assert df["data_source"].str.startswith("synthetic FashionMNIST (640 training images").all()
    report = (run.run_dir / "report.md").read_text()
    section = report[report.index("## The data pipeline"):report.index("## ", report.index("## The data pipeline") + 3)]
    assert "Data: synthetic FashionMNIST (640 training images" in section
    assert "fashion_mlp: the seed's loop runs at" in section and "waiting for data" in section
    assert section.count("Training loss: ") == 2 * 2  # two models, two timed epochs each
    assert f"epoch[fashion_mlp-adam-cpu-eager-b64]: Training loss: {losses[0]} · Training loss: {losses[1]}" \
        in run.proc.stdout
    html = (run.run_dir / "report.html").read_text()
    assert 'id="pipeline"' in html and "Images/s per loader setting" in html and "data wait against compute" in html


@pytest.mark.slow
def test_a_bad_data_root_stops_the_run_before_measuring(tmp_path):
    run = run_bench(tmp_path / "r", "--preset", "pipeline", "--models", "fashion_mlp", "--phases", "epoch",
                    "--data-root", str(tmp_path / "nowhere"))
    assert run.proc.returncode == 2
    assert f"--data-root {tmp_path / 'nowhere'}: no such folder" in run.proc.stdout + run.proc.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
