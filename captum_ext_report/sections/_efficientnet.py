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
    with plain torch.nn layers (see :func:`plain_layers`)."""
    model = plain_layers(_pretrained(pretrained=True))
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def plain_layers(model: nn.Module) -> nn.Module:
    """``model`` with its TensorFlow-style "same"-padding convolutions written as
    ``nn.Sequential(padding, nn.Conv2d)`` and its own identity modules as ``nn.Identity``.

    The package's ``Conv2dStaticSamePadding`` is an ``nn.Conv2d`` whose ``forward`` pads first:
    methods that read a convolution's input from module hooks (PatternNet's statistics,
    DeepLIFT's linear rule) would see the unpadded input. The rewrite computes the same function
    with the same parameter tensors (shared, not copied), so every method sees the real input of
    every convolution. Applied in place; returns ``model``.
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child).__name__ == "Conv2dStaticSamePadding":
                conv = nn.Conv2d(
                    child.in_channels, child.out_channels, child.kernel_size,
                    stride=child.stride, dilation=child.dilation, groups=child.groups,
                    bias=child.bias is not None,
                )  # fmt: skip
                conv.weight = child.weight
                conv.bias = child.bias
                pad = child.static_padding
                if not isinstance(pad, nn.ZeroPad2d):
                    pad = nn.Identity()
                setattr(module, name, nn.Sequential(pad, conv).train(child.training))
            elif type(child).__name__ == "Identity" and not isinstance(child, nn.Identity):
                setattr(module, name, nn.Identity().train(child.training))
    return model


@functools.lru_cache(maxsize=4)
def imagenet_photos(size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox's 20 labelled ImageNet photos at ``size``, TF-Lite scaled, and their labels."""
    images, labels = imagenet_samples(size=size, normalize=False)
    return (images * 255.0 - MEAN) / SCALE, labels


@functools.lru_cache(maxsize=4)
def scikit_image_photos(size: int = 224) -> torch.Tensor:
    """scikit-image's cat (``chelsea``) and ``coffee`` photos at ``size``, TF-Lite scaled."""
    images, _ = imagenet_samples(size=size, normalize=False, photos=("chelsea", "coffee"))
    return (images[-2:] * 255.0 - MEAN) / SCALE
