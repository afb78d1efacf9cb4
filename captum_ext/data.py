"""Value bounds and normalisation of model inputs: public helpers for every method and metric.

Several methods and metrics need the range the inputs can take: AdaptGrad's σ (Zhou et al.,
2025), LRP's z^B rule and ``EpsilonGammaBox``/``DeepTaylor`` (Montavon et al., 2017), the
``InherentNoise`` metric. For images normalised as ``(x − mean) / std`` from [0, 1] pixels that
range is per channel, ``((0 − mean)/std, (1 − mean)/std)``; :func:`channel_bounds` computes it
for any normalisation and :func:`imagenet_bounds` for torchvision's ImageNet one.

Examples
--------
>>> low, high = imagenet_bounds()
>>> tuple(round(v, 4) for v in low.tolist())
(-2.1179, -2.0357, -1.8044)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "channel_bounds",
    "denormalize",
    "imagenet_bounds",
    "normalize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean of torchvision's ImageNet normalisation (RGB, pixels in [0, 1])."""

IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of torchvision's ImageNet normalisation."""

Stat = float | Sequence[float] | torch.Tensor


def _per_channel(value: Stat, name: str, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=dtype)
    if tensor.dim() > 1:
        raise ValueError(
            f"{name} must be a scalar or one value per channel, got {tuple(tensor.shape)}."
        )
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite.")
    return tensor


def channel_bounds(
    mean: Stat,
    std: Stat,
    pixel_range: tuple[float, float] = (0.0, 1.0),
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(low, high)`` of inputs normalised as ``(x − mean) / std``.

    Parameters
    ----------
    mean, std : float or sequence of float or torch.Tensor
        The normalisation (one value per channel, or one for all).
    pixel_range : (float, float)
        Range of the raw pixels, [0, 1] for torchvision's ``ToTensor``.
    dtype : torch.dtype
        dtype of the returned tensors.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``low`` and ``high`` of shape ``(C,)`` (or scalars), usable as ``bounds`` of
        ``AdaptGrad``, ``EpsilonGammaBox``, ``DeepTaylor``, ``ZBoxRule`` and ``InherentNoise``.

    Raises
    ------
    ValueError
        If a standard deviation is not positive, the shapes disagree or the pixel range is empty.
    """
    m = _per_channel(mean, "mean", dtype)
    s = _per_channel(std, "std", dtype)
    if (s <= 0).any():
        raise ValueError("std must be > 0 in every channel.")
    if m.dim() and s.dim() and m.shape != s.shape:
        raise ValueError(f"mean has {m.numel()} channels but std has {s.numel()}.")
    low, high = (float(v) for v in pixel_range)
    if not low < high:
        raise ValueError(f"pixel_range must satisfy low < high, got {pixel_range}.")
    return (low - m) / s, (high - m) / s


def imagenet_bounds(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel bounds of [0, 1] images after torchvision's ImageNet normalisation."""
    return channel_bounds(IMAGENET_MEAN, IMAGENET_STD, dtype=dtype)


def _view(stat: Stat, x: torch.Tensor, name: str) -> torch.Tensor:
    tensor = _per_channel(stat, name, x.dtype).to(x.device)
    if tensor.dim() == 0:
        return tensor
    if x.dim() < 3 or x.shape[-3] != tensor.numel():
        raise ValueError(
            f"{name} has {tensor.numel()} channels but the images have shape {tuple(x.shape)} "
            "(expected (N, C, H, W) or (C, H, W))."
        )
    return tensor.view(-1, 1, 1)


def normalize(
    x: torch.Tensor, mean: Stat = IMAGENET_MEAN, std: Stat = IMAGENET_STD
) -> torch.Tensor:
    """``(x − mean) / std`` per channel of ``(N, C, H, W)`` or ``(C, H, W)`` images."""
    return (x - _view(mean, x, "mean")) / _view(std, x, "std")


def denormalize(
    x: torch.Tensor, mean: Stat = IMAGENET_MEAN, std: Stat = IMAGENET_STD
) -> torch.Tensor:
    """Undo :func:`normalize`: ``x · std + mean`` per channel (e.g. to display inputs)."""
    return x * _view(std, x, "std") + _view(mean, x, "mean")
