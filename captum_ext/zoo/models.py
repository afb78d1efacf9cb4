"""Plain ``nn.Module`` networks used throughout the project.

Every model here is an ordinary PyTorch module with no hooks or custom autograd: they are the
"user's models" on which attribution methods must work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from captum_ext.core.canonization import SumModule
from captum_ext.core.validation import check_positive_int

SMALL_CNN_INPUT_SIZE = 32
"""Spatial size (pixels) the small CNN is built for."""


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_channels(in_channels: int) -> None:
    if in_channels not in (1, 3):
        raise ValueError(
            f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels!r}; "
            "convert the images first."
        )


class SmallMLP(nn.Sequential):
    """A dense ReLU network ``in_features → hidden… → n_classes``.

    Parameters
    ----------
    in_features : int
        Number of input features (inputs of any shape are flattened per sample).
    hidden : sequence of int
        Widths of the hidden layers.
    n_classes : int
        Number of outputs.
    bias : bool
        Whether the linear layers have a bias (bias-free nets make LRP-0 equal gradient×input).
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: Sequence[int] = (64, 32),
        n_classes: int = 10,
        bias: bool = True,
    ) -> None:
        _check_positive_int("in_features", in_features)
        _check_positive_int("n_classes", n_classes)
        for width in hidden:
            _check_positive_int("hidden width", width)
        layers: list[nn.Module] = [nn.Flatten()]
        widths = [in_features, *hidden]
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(n_in, n_out, bias=bias), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], n_classes, bias=bias))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """The small CNN of Sixt et al. (2020), "When Explanations Lie", section 5.

    ``conv32 – conv64 – maxpool – conv128 – conv128 – maxpool – dense1024 – dense10`` with 3×3
    same-padding convolutions and ReLU activations, sized for 32×32 inputs.

    Parameters
    ----------
    in_channels : int
        1 for grey images, 3 for RGB.
    n_classes : int
        Number of logits.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10) -> None:
        super().__init__()
        _check_channels(in_channels)
        _check_positive_int("n_classes", n_classes)
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        spatial = SMALL_CNN_INPUT_SIZE // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * spatial * spatial, 1024),
            nn.ReLU(),
            nn.Linear(1024, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallVGG(nn.Module):
    """A VGG-style network with BatchNorm, for canonizer and folding tests.

    ``[conv-BN-ReLU] ×2 – maxpool – [conv-BN-ReLU] ×2 – maxpool – avgpool – dense – ReLU – dense``.

    Parameters
    ----------
    in_channels : int
        1 or 3.
    n_classes : int
        Number of logits.
    width : int
        Channels of the first block (the second block has twice as many).
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        _check_channels(in_channels)
        _check_positive_int("n_classes", n_classes)
        _check_positive_int("width", width)

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 4, 64),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


_TORCHVISION = ("vgg16", "vgg16_bn", "resnet18", "resnet50")


def torchvision_model(name: str, n_classes: int = 1000, seed: int | None = 0) -> nn.Module:
    """A randomly initialised torchvision architecture in eval mode (no weights are downloaded).

    Parameters
    ----------
    name : str
        One of ``"vgg16"``, ``"vgg16_bn"``, ``"resnet18"``, ``"resnet50"``.
    n_classes : int
        Number of logits.
    seed : int or None
        Seed for a private generator-driven initialisation (the global RNG state is restored);
        ``None`` uses the global RNG as torchvision does.
    """
    import torchvision

    if name not in _TORCHVISION:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(_TORCHVISION)}.")
    _check_positive_int("n_classes", n_classes)
    constructor = getattr(torchvision.models, name)
    if seed is None:
        model = constructor(weights=None, num_classes=n_classes)
    else:
        # torchvision initialises from the global RNG; fork it so the caller's stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = constructor(weights=None, num_classes=n_classes)
    return model.eval()


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, skip: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.add = SumModule()
        self.relu2 = nn.ReLU()
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu1(self.conv1(x)))
        if self.skip:
            out = self.add(x, out)
        return self.relu2(out)


class TinyResNet(nn.Module):
    """``conv – [conv-ReLU-conv (+ skip) - ReLU] × blocks – avgpool – dense``.

    Parameters
    ----------
    in_channels : int
        Input channels.
    channels : int
        Width of every block.
    blocks : int
        Number of residual blocks.
    n_classes : int
        Number of logits.
    skip : bool
        Whether the blocks add their input (``set_skip`` switches it for the same weights).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 16,
        blocks: int = 4,
        n_classes: int = 10,
        skip: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("blocks", blocks), ("n_classes", n_classes)):
            check_positive_int(name, value)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.stem_relu = nn.ReLU()
        self.blocks = nn.Sequential(*(_ResidualBlock(channels, skip) for _ in range(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, n_classes)

    def set_skip(self, skip: bool) -> TinyResNet:
        """Switch every block's skip connection on or off (weights unchanged); returns self."""
        for block in self.blocks:
            block.skip = bool(skip)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem_relu(self.stem(x)))
        return self.fc(self.flatten(self.pool(h)))
