"""Every torchvision classification architecture, by its torchvision name (family "torchvision").

Registered lazily (the first time the registry is listed or looked up): each name of
``torchvision.models.list_models(module=torchvision.models)`` built with ``weights=None,
num_classes=10`` (nothing is downloaded), cross-entropy over class labels, inputs 3xSxS.

The default size S is small, for CPU runs (``--image-sizes`` changes it): 64 px, 32 px for
resnet18 (36-150 ms per forward+backward at batch 8 on one thread for the ``vision`` preset's
models), and more where the architecture needs it. Vision transformers are built with
``image_size=`` (their position embedding is sized for it); other models take any size their
layers accept (global pooling), checked before a run on the meta device.
"""

from __future__ import annotations

import functools
import re

from torch import nn

from ._registry import lazy_family, register_model

NUM_CLASSES = 10
CPU_IMAGE_SIZE = 64
# Sizes other than CPU_IMAGE_SIZE: the smallest the architecture takes, or a cheaper one.
DEFAULT_IMAGE_SIZES = {
    "resnet18": 32,
    "inception_v3": 75,  # its stem needs at least 75 px
    "maxvit_t": 224,  # windows and grids of 7 at every stage: a multiple of 224 (32 x 7)
    "vit_h_14": 56,  # a multiple of the 14 px patch
}
# CUDA sizes and batches: the ImageNet size and TorchBench's training batch sizes
# (torchbenchmark/models/<name>: DEFAULT_TRAIN_BSIZE).
CUDA_IMAGE_SIZE = 224
CUDA_BATCH_SIZES = {"resnet18": 16, "resnet50": 32, "mobilenet_v2": 96}
# The CPU part of the vision preset: small, fast architectures at their CPU default sizes.
CPU_PRESET_MODELS = ("squeezenet1_1", "shufflenet_v2_x0_5", "mobilenet_v3_small", "resnet18")
CPU_PRESET_BATCH_SIZE = 8
# Builders that need more than weights and num_classes to return plain logits in train mode.
_EXTRA_KWARGS = {
    "googlenet": dict(aux_logits=False, init_weights=True),
    "inception_v3": dict(aux_logits=False, init_weights=True),
}


def _builder(name: str, size_arg: bool):
    import torchvision

    make = torchvision.models.get_model_builder(name)

    def build(**kwargs) -> nn.Module:
        return make(weights=None, num_classes=NUM_CLASSES, **_EXTRA_KWARGS.get(name, {}), **kwargs)

    build.__name__ = name
    build.__doc__ = f"torchvision.models.{name}(weights=None, num_classes={NUM_CLASSES})"
    return build


def default_image_size(name: str) -> int:
    return DEFAULT_IMAGE_SIZES.get(name, CPU_IMAGE_SIZE)


def register_torchvision() -> None:
    import torchvision

    for name in torchvision.models.list_models(module=torchvision.models):
        size_arg = name.startswith("vit_")  # VisionTransformer(image_size=...); swin takes any size
        register_model(input_shape=(3, default_image_size(name), default_image_size(name)),
                       loss="cross_entropy", num_classes=NUM_CLASSES, tags=("torchvision", _kind(name)),
                       family="torchvision", resizable=True, size_arg=size_arg,
                       name=name)(_builder(name, size_arg))


@functools.lru_cache(maxsize=None)
def _kind(name: str) -> str:
    return "transformer" if re.match(r"(vit|swin|maxvit)_", name) else "cnn"


lazy_family("torchvision", register_torchvision)
