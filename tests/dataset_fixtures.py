"""Importable fixtures for the dataset evaluation tests (``module:callable`` specs, torchrun)."""

from __future__ import annotations

import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn
from torch.utils.data import Dataset

N_SAMPLES = 24


def tiny_model(in_channels: int = 1, n_classes: int = 5) -> nn.Module:
    """A seeded two-layer CNN on 8×8 inputs (initialised from a private generator)."""
    with torch.random.fork_rng(devices=[]):  # the layers' default init must not touch it
        model = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, n_classes),
        )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


def rgb_model() -> nn.Module:
    """The tiny CNN for 3-channel 8×8 images with two classes."""
    return tiny_model(in_channels=3, n_classes=2)


class TinyData(Dataset):
    """Seeded 8×8 images; samples 0 and 1 are the same image (keyed draws must still differ).

    ``crash_at`` raises KeyboardInterrupt at that index (a simulated kill)."""

    def __init__(self, crash_at: int | None = None) -> None:
        generator = torch.Generator().manual_seed(1)
        self.x = torch.rand(N_SAMPLES, 1, 8, 8, generator=generator)
        self.x[1] = self.x[0]
        self.y = torch.randint(0, 5, (N_SAMPLES,), generator=generator)
        self.y[1] = self.y[0]
        self.crash_at = crash_at

    def __len__(self) -> int:
        return N_SAMPLES

    def __getitem__(self, index: int):
        if index == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        return self.x[index], self.y[index]


def tiny_data() -> TinyData:
    return TinyData()


def captum_noise_tunnel(model: nn.Module) -> NoiseTunnel:
    """Captum's own NoiseTunnel (draws from the global RNG)."""
    return NoiseTunnel(Saliency(model))


class _Fragile(Saliency):
    def attribute(self, inputs, target=None, **kwargs):
        if bool((inputs.flatten(1).min(1).values > 0.99).any()):
            raise ValueError("white image")
        return super().attribute(inputs, target=target, abs=False)


def fragile_method(model: nn.Module) -> Saliency:
    """Saliency that refuses any batch holding an all-white image."""
    return _Fragile(model)
