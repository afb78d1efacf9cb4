"""Shared workloads: small models, offline data and a cached training routine.

Tests, examples, benchmarks and the report all draw their models and data from here, so a
number quoted anywhere in the project refers to the same network and the same images.
"""

from captum_ext.data import IMAGENET_MEAN, IMAGENET_STD, channel_bounds, imagenet_bounds
from captum_ext.zoo.data import (
    DigitsDataset,
    digits_split,
    natural_image_batch,
)
from captum_ext.zoo.models import (
    SMALL_CNN_INPUT_SIZE,
    SmallCNN,
    SmallMLP,
    SmallVGG,
    TinyResNet,
    torchvision_model,
)
from captum_ext.zoo.real import efficientnet_lite0, imagenet_samples, mnist_digits
from captum_ext.zoo.training import default_cache_dir, train_digits_cnn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DigitsDataset",
    "SMALL_CNN_INPUT_SIZE",
    "SmallCNN",
    "SmallMLP",
    "SmallVGG",
    "TinyResNet",
    "channel_bounds",
    "default_cache_dir",
    "digits_split",
    "efficientnet_lite0",
    "imagenet_bounds",
    "imagenet_samples",
    "mnist_digits",
    "natural_image_batch",
    "torchvision_model",
    "train_digits_cnn",
]

_RENAMED = {"Seed001CNN": "SmallCNN", "SEED001_INPUT_SIZE": "SMALL_CNN_INPUT_SIZE"}


def __getattr__(name: str) -> object:
    # Earlier names, kept importable with a DeprecationWarning.
    if name in _RENAMED:
        import warnings

        warnings.warn(
            f"captum_ext.zoo.{name} is now {_RENAMED[name]}; the old name will be removed in 0.3.",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module 'captum_ext.zoo' has no attribute {name!r}")
