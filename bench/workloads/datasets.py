"""The seed's real data: MNIST-style datasets loaded through torchvision's own classes.

``torchvision.datasets.FashionMNIST(root, download=True)`` returns before downloading when
the four raw IDX files exist under ``root/FashionMNIST/raw/`` (it checks that they exist, not
their checksums). So the suite either reads a dataset the user already has (``--data-root``),
checked here before anything is measured, or writes a synthetic one in the same IDX format
into a cache folder and loads that through the very same class: nothing is ever downloaded.

The synthetic images are learnable: each class has its own seeded pattern (a few strokes
and blobs), and every image is its class pattern, shifted and with noise, so a few epochs of
the seed's loop lower the loss as they do on the real data.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.schema.results import write_atomic

DATASETS = ("FashionMNIST", "MNIST")
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX: 0x00000803 (ubyte, 3 dims), 0x00000801 (ubyte, 1 dim)
SPLITS = {"train": "train", "test": "t10k"}
NUM_CLASSES = 10
SIDE = 28
DEFAULT_SIZE = 6400  # training images of a synthetic dataset: 100 batches of the seed's 64
CACHE_ENV = "BLITZBENCH_DATA_CACHE"
GENERATOR = 2  # in the cache folder's name: a changed generator never reads an old cache


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file and what is wrong."""


def raw_files(root: Path, dataset: str) -> dict[str, Path]:
    """The four raw files torchvision reads, by role: train/test images/labels."""
    raw = Path(root) / dataset / "raw"
    return {f"{split}_{kind}": raw / f"{prefix}-{kind}-{'idx3' if kind == 'images' else 'idx1'}-ubyte"
            for split, prefix in SPLITS.items() for kind in ("images", "labels")}


def _header(path: Path, magic: int, dims: int) -> tuple[int, ...]:
    """The sizes in an IDX header, once the magic number and the file's length agree with them."""
    size = path.stat().st_size
    if size < 4 + 4 * dims:
        raise DataError(f"{path}: truncated IDX file ({size} bytes, shorter than its header)")
    with path.open("rb") as fh:
        found = struct.unpack(">I", fh.read(4))[0]
        if found != magic:
            raise DataError(f"{path}: wrong IDX magic number {found} (expected {magic}): not an "
                            f"{'image' if magic == IMAGE_MAGIC else 'label'} file")
        shape = struct.unpack(f">{dims}I", fh.read(4 * dims))
    expected = 4 + 4 * dims + int(np.prod(shape))
    if size != expected:
        raise DataError(f"{path}: truncated or padded IDX file: {size} bytes, the header "
                        f"{'x'.join(map(str, shape))} needs {expected}")
    return shape


def check_root(root: Path | str, dataset: str = "FashionMNIST") -> dict[str, int]:
    """Check a dataset folder before anything is measured; returns the split sizes.

    Raises DataError naming the folder or file and what is wrong: a missing folder, a missing
    file (with the ones present), a wrong magic number, a truncated file, images and labels
    of different counts or an image size other than 28x28.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid choices: {', '.join(DATASETS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data-root {root}: no such folder")
    files = raw_files(root, dataset)
    missing = [p for p in files.values() if not p.is_file()]
    if missing:
        present = len(files) - len(missing)
        raise DataError(f"--data-root {root}: {present} of the 4 {dataset} raw files present; missing "
                        + ", ".join(str(p) for p in missing))
    sizes = {}
    for split in SPLITS:
        count, rows, cols = _header(files[f"{split}_images"], IMAGE_MAGIC, 3)
        (labels,) = _header(files[f"{split}_labels"], LABEL_MAGIC, 1)
        if (rows, cols) != (SIDE, SIDE):
            raise DataError(f"{files[f'{split}_images']}: images are {rows}x{cols}, expected {SIDE}x{SIDE}")
        if labels != count:
            raise DataError(f"{files[f'{split}_labels']}: {labels} labels for {count} images")
        sizes[split] = count
    return sizes


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (the MNIST format), written atomically."""
    data = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGE_MAGIC if data.ndim == 3 else LABEL_MAGIC
    header = struct.pack(">I", magic) + struct.pack(f">{data.ndim}I", *data.shape)
    write_atomic(path, header + data.tobytes())  # a reader never sees half a file


def class_patterns(rng: np.random.Generator) -> np.ndarray:
    """One 28x28 pattern per class in [0, 1]: a few random strokes and blobs."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / (SIDE - 1)
    patterns = np.zeros((NUM_CLASSES, SIDE, SIDE))
    for label in range(NUM_CLASSES):
        for _ in range(3):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            sy, sx = rng.uniform(0.04, 0.25, 2)
            patterns[label] += np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    return patterns / patterns.max(axis=(1, 2), keepdims=True)


def synthesize(count: int, rng: np.random.Generator, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images of seeded classes: the class pattern, shifted up to 3 px, scaled in brightness, plus noise."""
    labels = rng.integers(0, NUM_CLASSES, count)
    images = np.empty((count, SIDE, SIDE))
    shifts = rng.integers(-3, 4, (count, 2))
    for i, (label, (dy, dx)) in enumerate(zip(labels, shifts)):
        images[i] = np.roll(patterns[label], (dy, dx), axis=(0, 1))
    images = rng.uniform(0.5, 1.0, (count, 1, 1)) * images + rng.normal(0.0, 0.3, images.shape)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.uint8)


@dataclass(frozen=True)
class SyntheticSpec:
    dataset: str = "FashionMNIST"
    train_size: int = DEFAULT_SIZE
    test_size: int = 1000
    rng_seed: int = 0

    @property
    def folder_name(self) -> str:
        return f"synthetic{GENERATOR}-{self.dataset}-{self.train_size}-{self.test_size}-s{self.rng_seed}"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "blitzbench" / "data")


def synthetic_root(spec: SyntheticSpec, cache: Path | None = None) -> Path:
    """A folder holding ``spec``'s dataset in torchvision's layout, written on first use."""
    root = (cache or cache_dir()) / spec.folder_name
    files = raw_files(root, spec.dataset)
    if all(p.is_file() for p in files.values()):
        return root
    files["train_images"].parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.rng_seed)
    patterns = class_patterns(rng)
    for split, size in (("train", spec.train_size), ("test", spec.test_size)):
        images, labels = synthesize(size, rng, patterns)
        write_idx(files[f"{split}_images"], images)
        write_idx(files[f"{split}_labels"], labels)
    return root


PAD_AT_MOST = 4  # up to this many pixels bigger, pad (LeNet's 32x32: the blitz's input); beyond, resize


def transform(version: str, size: int = SIDE, channels: int = 1):
    """The seed's transform (v1: ToTensor + Normalize(0.5, 0.5)) or its transforms.v2 twin, fitted
    to a model's input: padded to ``size`` when a few pixels bigger than 28 (LeNet's 32x32, as
    the blitz feeds it), resized otherwise (a vision model's 64 or 224 px), and the grey channel
    repeated for a model that takes ``channels`` = 3."""
    if version == "v1":
        from torchvision import transforms as T

        steps = [T.ToTensor(), T.Normalize((0.5,) * channels, (0.5,) * channels)]
    elif version == "v2":
        import torch
        from torchvision.transforms import v2 as T

        steps = [T.ToImage(), T.ToDtype(torch.float32, scale=True),
                 T.Normalize((0.5,) * channels, (0.5,) * channels)]
    else:
        raise DataError(f"unknown transforms {version!r}; valid choices: v1, v2")
    fit = []
    if SIDE < size <= SIDE + PAD_AT_MOST:
        extra = size - SIDE
        fit.append(T.Pad((extra // 2, extra // 2, extra - extra // 2, extra - extra // 2)))
    elif size != SIDE:
        fit.append(T.Resize((size, size), antialias=True))
    if channels != 1:
        fit.append(T.Grayscale(num_output_channels=channels))
    return T.Compose([*fit, *steps])  # on the PIL image, before it becomes a tensor


def load(root: Path | str, dataset: str = "FashionMNIST", train: bool = True, transforms: str = "v1",
         size: int = SIDE, channels: int = 1):
    """The dataset through torchvision's own class, exactly as the seed opens it."""
    from torchvision import datasets

    cls = getattr(datasets, dataset)
    # download=True as in the seed: torchvision returns before downloading since the files exist.
    return cls(str(root), download=True, train=train, transform=transform(transforms, size, channels))
