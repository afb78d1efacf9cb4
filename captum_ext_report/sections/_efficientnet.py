"""The paper-experiment sections' real workload: EfficientNet-Lite0 on foolbox's ImageNet photos.

Model and images come from :mod:`captum_ext.zoo.real` (the `real` extra). These sections feed the
network the TF-Lite scaling ``(255·x − 127)/128`` instead of the zoo's ImageNet mean/std: one
scalar range for every channel keeps SmoothGrad's σ = α·(x_max − x_min) and the Smooth CAFO/CASO
noise scalar, as in the papers, and gives 17/20 correct top-1 (16/20 with mean/std).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from captum_ext.zoo import efficientnet_lite0 as _pretrained
from captum_ext.zoo import imagenet_samples

MEAN, SCALE = 127.0, 128.0
BOUNDS = ((0.0 - MEAN) / SCALE, (255.0 - MEAN) / SCALE)


def efficientnet_lite0() -> nn.Module:
    """The pretrained 1 000-class EfficientNet-Lite0 (ReLU6, no squeeze-excite), eval mode,
    exactly as the package builds it (its "same"-padding convolution subclasses included)."""
    model = _pretrained(pretrained=True).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


@functools.lru_cache(maxsize=4)
def _scaled(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    # read once per size: the 20 labelled JPEGs followed by the two scikit-image photos
    images, labels = imagenet_samples(size=size, normalize=False, photos=("chelsea", "coffee"))
    return (images * 255.0 - MEAN) / SCALE, labels


def imagenet_photos(size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox's 20 labelled ImageNet photos at ``size``, TF-Lite scaled, and their labels
    (fresh copies: callers may modify them without touching the cache)."""
    images, labels = _scaled(size)
    return images[:-2].clone(), labels[:-2].clone()


def scikit_image_photos(size: int = 224) -> torch.Tensor:
    """scikit-image's cat (``chelsea``) and ``coffee`` photos at ``size``, TF-Lite scaled."""
    return _scaled(size)[0][-2:].clone()
