"""The seed's input pipeline and epoch loop, timed step by step.

``data`` walks the DataLoader alone; ``epoch`` is the seed's loop over it:

    for images, labels in trainloader:
        optimizer.zero_grad()
        images = images.view(images.shape[0], -1)
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()

Each step's time is split at the moment the batch is in hand: before it, the loop waits for
the loader (``next()`` and the copy to the device); after it, it computes. ``loss.item()``
ends every step with a synchronization, as in the seed, so on CUDA the compute part holds
the GPU work too. The data-wait share is the waiting over the whole epoch's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from bench.workloads import datasets, tokens

if TYPE_CHECKING:
    import torch

@dataclass(frozen=True)
class LoaderSettings:
    """The DataLoader's knobs the pipeline axes vary; the defaults are the seed's."""

    batch_size: int = 64
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None  # torch's default (2) when workers are used

    def loader_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                                      pin_memory=self.pin_memory)
        if self.num_workers > 0:  # torch refuses these two without workers
            kwargs["persistent_workers"] = self.persistent_workers
            if self.prefetch_factor is not None:
                kwargs["prefetch_factor"] = self.prefetch_factor
        return kwargs


def make_loader(dataset: torch.utils.data.Dataset, settings: LoaderSettings,
                rng_seed: int = 0) -> torch.utils.data.DataLoader:
    """The seed's ``DataLoader(dataset, batch_size=64, shuffle=True)``, shuffled reproducibly."""
    import torch

    generator = torch.Generator().manual_seed(rng_seed)
    return torch.utils.data.DataLoader(dataset, generator=generator, **settings.loader_kwargs())


@dataclass
class EpochRecord:
    """One epoch, step by step: seconds waiting for each batch and computing on it."""

    images: int = 0
    wait_s: list[float] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    loss_sum: float = 0.0

    @property
    def batches(self) -> int:
        return len(self.wait_s)

    @property
    def total_s(self) -> float:
        return sum(self.wait_s) + sum(self.compute_s)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.batches if self.batches else float("nan")


def _to(batch: Iterable[torch.Tensor], device: str) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in batch]


def walk(loader: torch.utils.data.DataLoader, device: str,
         step: Callable[..., float] | None = None) -> EpochRecord:
    """One pass over ``loader``; ``step(*batch)`` (images and labels, or token windows) returns the
    step's loss (None: data only)."""
    import torch

    record = EpochRecord()
    iterator = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            items = _to(next(iterator), device)  # (images, labels), or (token windows,)
        except StopIteration:
            break
        if device == "cuda":
            torch.cuda.synchronize()  # the batch is on the device before the step starts
        ready = time.perf_counter()
        if step is not None:
            record.loss_sum += step(*items)
        record.wait_s.append(ready - start)
        record.compute_s.append(time.perf_counter() - ready)
        record.images += items[0].shape[0]
    return record


def seed_step(model: Callable[[torch.Tensor], torch.Tensor], criterion: Callable, optimizer: torch.optim.Optimizer,
              prepare: Callable[[torch.Tensor], torch.Tensor],
              target: Callable[[torch.Tensor], torch.Tensor] = lambda labels: labels,
              ) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The seed's loop body; ``prepare`` is its ``images.view(images.shape[0], -1)`` (or nothing),
    ``target`` turns the labels into what the model's loss compares with (one-hot for MSE)."""
    def step(images: torch.Tensor, labels: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = criterion(model(prepare(images)), target(labels))
        loss.backward()
        optimizer.step()
        return loss.item()  # running_loss += loss.item(): a synchronization per step, as the seed

    return step


def loss_line(mean_loss: float) -> str:
    """What the seed prints after each epoch."""
    return f"Training loss: {mean_loss}"


# --- the run's data: chosen once per run (bench/plugin.py), read by the data phases -------

DEFAULT_EPOCHS = 3  # timed epochs per case, after one untimed (workers start, caches fill)


@dataclass(frozen=True)
class DataConfig:
    """Where the data phases read from: a user's dataset folder, or a synthetic one."""

    root: Path | None = None  # --data-root: <root>/<Dataset>/raw/*-ubyte (images), <root>/train.bin (tokens)
    dataset: str = "FashionMNIST"
    size: int = datasets.DEFAULT_SIZE  # training samples: synthetic images, token windows (--data-size)
    epochs: int = DEFAULT_EPOCHS
    rng_seed: int = 0

    def resolve(self) -> tuple[Path, str]:
        """The dataset folder (checked, or synthesized) and a line saying which data it is."""
        if self.root is not None:
            sizes = datasets.check_root(self.root, self.dataset)
            return Path(self.root), f"{self.dataset} from {self.root} ({sizes['train']:,} training images)"
        spec = datasets.SyntheticSpec(dataset=self.dataset, train_size=self.size, rng_seed=self.rng_seed)
        root = datasets.synthetic_root(spec)
        return root, (f"synthetic {self.dataset} ({self.size:,} training images, seed {self.rng_seed}; "
                      f"IDX files in {root})")

    def resolve_tokens(self, vocab_size: int, seq_len: int) -> tuple[Path, str]:
        """The token file (checked, or synthesized) for a model's vocabulary and sequence length,
        and a line saying which data it is."""
        if self.root is not None:
            path = tokens.token_file(self.root)
            count = tokens.check_token_file(path, vocab_size, seq_len)
            return path, f"tokens from {path} ({count:,} tokens; {self.size:,} windows of {seq_len + 1})"
        if vocab_size > np.iinfo(tokens.TOKEN_DTYPE).max + 1:
            raise datasets.DataError(f"a synthetic token file holds uint16 ids: vocabulary {vocab_size:,} is "
                                     "above 65,536; give --data-root with a train.bin of your own")
        spec = tokens.SyntheticTokens(vocab_size, max(self.size * seq_len, 4 * (seq_len + 1)), self.rng_seed)
        path = tokens.synthetic_token_file(spec)
        return path, (f"synthetic tokens (vocabulary {vocab_size:,}, {spec.tokens:,} tokens, seed {self.rng_seed}; "
                      f"{self.size:,} windows of {seq_len + 1}; {path})")


_CONFIG = [DataConfig()]
_RESOLVED: dict[DataConfig, tuple[Path, str]] = {}  # checked or synthesized once per run, not per case


_TOKENS: dict[tuple[DataConfig, int, int], tuple[Path, str]] = {}


def configure(config: DataConfig, images: bool = True) -> tuple[Path, str] | None:
    """Set the run's data, its images checked now (before anything is measured) when ``images``;
    returns what resolve() does."""
    _CONFIG[0] = config
    if not images:
        return None
    _RESOLVED[config] = config.resolve()
    return _RESOLVED[config]


def resolved_tokens(vocab_size: int, seq_len: int) -> tuple[Path, str]:
    """The run's token file for this vocabulary and length (checked or written once)."""
    key = (current(), vocab_size, seq_len)
    if key not in _TOKENS:
        _TOKENS[key] = key[0].resolve_tokens(vocab_size, seq_len)
    return _TOKENS[key]


def token_set(vocab_size: int, seq_len: int) -> tuple[tokens.TokenWindows, str]:
    """The run's token windows for a model: ``--data-size`` of them, at seeded random offsets."""
    config = current()
    path, source = resolved_tokens(vocab_size, seq_len)
    return tokens.TokenWindows(path, seq_len, config.size, config.rng_seed), source


def current() -> DataConfig:
    return _CONFIG[0]


def resolved() -> tuple[Path, str]:
    """The run's dataset folder and the line naming it, resolved once."""
    config = current()
    if config not in _RESOLVED:
        _RESOLVED[config] = config.resolve()
    return _RESOLVED[config]


def training_set(input_shape: tuple[int, ...], transforms: str):
    """The run's training set through torchvision's class, its images fitted to a model's
    ``input_shape`` (channels, height, width)."""
    config = current()
    root, source = resolved()
    channels, side = (input_shape[0], input_shape[-1]) if len(input_shape) == 3 else (1, datasets.SIDE)
    return datasets.load(root, config.dataset, train=True, transforms=transforms, size=side,
                         channels=channels), source
