"""Shared fixtures: the project's models in float32 and float64, offline data, a trained CNN."""

from __future__ import annotations

import os

import pytest
import torch

from captum_ext.zoo import (
    DigitsDataset,
    SmallCNN,
    SmallMLP,
    SmallVGG,
    torchvision_model,
    train_digits_cnn,
)

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _seeded(factory, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    """Run a test in both float32 and float64."""
    return request.param


@pytest.fixture
def mlp(dtype):
    """SmallMLP(64 → 64 → 32 → 10) with bias, eval mode, in ``dtype``."""
    return _seeded(lambda: SmallMLP(64, (64, 32), 10)).to(dtype).eval()


@pytest.fixture
def cnn(dtype):
    """The small CNN (random init, 1 channel, 32×32), eval mode, in ``dtype``."""
    return _seeded(lambda: SmallCNN(1, 10)).to(dtype).eval()


@pytest.fixture
def vgg_bn(dtype):
    """SmallVGG with BatchNorm (random init with non-trivial running statistics), in ``dtype``."""

    def build():
        model = SmallVGG(3, 10, width=8)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        return model

    return _seeded(build).to(dtype).eval()


@pytest.fixture
def resnet18(dtype):
    """torchvision resnet18, random init, 10 classes, eval mode, in ``dtype`` (32×32 inputs)."""
    return torchvision_model("resnet18", n_classes=10, seed=0).to(dtype)


@pytest.fixture(scope="session")
def digits_test() -> DigitsDataset:
    return DigitsDataset("test")


@pytest.fixture(scope="session")
def trained_cnn():
    """The small CNN trained on digits (cached across runs in the default cache folder)."""
    return train_digits_cnn(progress=False)


@pytest.fixture
def rng() -> torch.Generator:
    """A private, seeded generator (tests never reseed the global RNG)."""
    return torch.Generator().manual_seed(1234)
