"""Token data for the ``data`` and ``epoch`` phases of token workloads, in nanoGPT's layout.

``--data-root PATH`` holds ``train.bin``: the training text's token ids as uint16, one after
the other (what nanoGPT's ``prepare.py`` scripts write). It is read through ``np.memmap`` and
served by a DataLoader as windows of ``seq_len + 1`` tokens at random (seeded) offsets: the
first ``seq_len`` are a sample's inputs, the target follows from them (the next tokens).
Without ``--data-root`` a synthetic file is written once into the data cache: a seeded Markov
chain over the vocabulary (each token mostly determines the next), so a few epochs of training
lower the loss. A missing, empty or odd-length file, one too short for a window, or ids beyond
the model's vocabulary are refused before anything is measured, naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.workloads.datasets import DataError, cache_dir

TOKEN_FILE = "train.bin"
TOKEN_DTYPE = np.uint16  # nanoGPT's: vocabularies up to 65,536 tokens
GENERATOR = 1  # in the cache file's name: a changed generator never reads an old file
FOLLOW = 0.9  # how often the synthetic chain takes its token's fixed successor


def token_file(root: Path | str) -> Path:
    return Path(root) / TOKEN_FILE


def check_token_file(path: Path, vocab_size: int, seq_len: int) -> int:
    """The number of tokens in ``path``, once it is usable by a model of ``vocab_size`` at
    ``seq_len``; a DataError names the file and what is wrong."""
    if not path.is_file():
        raise DataError(f"{path}: no such token file; --data-root for a token workload is a folder holding "
                        f"{TOKEN_FILE} (uint16 token ids, as nanoGPT's prepare.py writes)")
    size = path.stat().st_size
    itemsize = np.dtype(TOKEN_DTYPE).itemsize
    if size == 0:
        raise DataError(f"{path}: empty token file")
    if size % itemsize:
        raise DataError(f"{path}: {size} bytes is not a whole number of uint16 token ids (odd length)")
    count = size // itemsize
    if count < seq_len + 1:
        raise DataError(f"{path}: {count} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}")
    largest = int(np.memmap(path, dtype=TOKEN_DTYPE, mode="r").max())
    if largest >= vocab_size:
        raise DataError(f"{path}: token id {largest} is outside the model's vocabulary of {vocab_size}")
    return count


@dataclass(frozen=True)
class SyntheticTokens:
    vocab_size: int
    tokens: int
    rng_seed: int = 0

    @property
    def file_name(self) -> str:
        return f"tokens{GENERATOR}-v{self.vocab_size}-n{self.tokens}-s{self.rng_seed}.bin"


def synthetic_token_file(spec: SyntheticTokens, cache: Path | None = None) -> Path:
    """A token file for ``spec``, written on first use: a Markov chain in which each token is
    followed by its own fixed successor ``FOLLOW`` of the time, by a random token otherwise."""
    path = (cache or cache_dir()) / spec.file_name
    if path.is_file():
        return path
    rng = np.random.default_rng(spec.rng_seed)
    successor = rng.permutation(spec.vocab_size)
    ids = np.empty(spec.tokens, dtype=np.int64)
    ids[0] = rng.integers(spec.vocab_size)
    jumps = rng.random(spec.tokens) >= FOLLOW
    randoms = rng.integers(0, spec.vocab_size, spec.tokens)
    for i in range(1, spec.tokens):
        ids[i] = randoms[i] if jumps[i] else successor[ids[i - 1]]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")  # another run never reads a half-written file
    ids.astype(TOKEN_DTYPE).tofile(partial)
    partial.replace(path)
    return path


class TokenWindows:
    """``count`` windows of ``seq_len + 1`` tokens at seeded random offsets of a token file,
    each a 1-tuple of an int64 tensor (the DataLoader stacks them into a (B, seq_len + 1) batch)."""

    def __init__(self, path: Path, seq_len: int, count: int, rng_seed: int = 0) -> None:
        self.path, self.seq_len = path, seq_len
        self.data = np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
        rng = np.random.default_rng(rng_seed)
        self.offsets = rng.integers(0, len(self.data) - seq_len, size=count)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int):
        import torch

        start = int(self.offsets[index])
        window = np.asarray(self.data[start:start + self.seq_len + 1], dtype=np.int64)
        return (torch.from_numpy(window),)
