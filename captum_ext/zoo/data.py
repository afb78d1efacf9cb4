"""Offline data: scikit-learn's handwritten digits and scikit-image's sample photos.

Nothing here downloads anything: both sources ship inside their packages (install the
``examples`` or ``test`` extra).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from captum_ext.core.optional import require

# The bounds helpers are public API in captum_ext.data; re-exported here for the zoo's users.
from captum_ext.data import IMAGENET_MEAN, IMAGENET_STD, imagenet_bounds  # noqa: F401

NATURAL_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat")

_DIGITS_MAX = 16.0  # load_digits stores pixel intensities as integers 0..16


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer ≥ 8 pixels, got {size!r}.")


class DigitsDataset(Dataset):
    """scikit-learn's ``load_digits`` (1 797 real 8×8 handwritten digits) as 32×32 tensors.

    Images are scaled to [0, 1] and bilinearly upsampled; ``bounds`` records the value range
    ``(low, high)`` as per-channel tensors so AdaptGrad and the z^B rule can use it.

    Parameters
    ----------
    split : {"train", "test", "all"}
        Which part of the fixed split (80 / 20, stratified by a fixed seed) to use.
    channels : {1, 3}
        Grey images, or the grey value repeated into three channels.
    size : int
        Output height and width in pixels.
    dtype : torch.dtype
        Floating dtype of the images.
    """

    def __init__(
        self,
        split: str = "train",
        channels: int = 1,
        size: int = 32,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
        _check_size(size)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}.")
        datasets = require("sklearn.datasets", "The digits data set", "examples")
        digits = datasets.load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float64) / _DIGITS_MAX
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        train_idx, test_idx = digits_split(len(labels))
        index = {"train": train_idx, "test": test_idx, "all": torch.arange(len(labels))}[split]
        images = images[index].unsqueeze(1)
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp(0.0, 1.0).expand(-1, channels, -1, -1).contiguous()
        self.images = images.to(dtype)
        self.labels = labels[index]
        self.split = split
        self.channels = channels
        self.bounds = (torch.zeros(channels, dtype=dtype), torch.ones(channels, dtype=dtype))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images ``(N, C, H, W)`` and labels ``(N,)`` at once."""
        return self.images, self.labels


def digits_split(
    n: int, test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed train/test indices for ``n`` samples (a private generator; global RNG untouched)."""
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_test = max(1, round(n * test_fraction))
    return order[n_test:].sort().values, order[:n_test].sort().values


def natural_image_batch(
    names: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket"),
    size: int = 224,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A small batch of scikit-image sample photos, centre-cropped and resized to ``size``.

    Parameters
    ----------
    names : tuple of str
        Any of ``NATURAL_IMAGES``.
    size : int
        Output height and width.
    normalize : bool
        Apply ImageNet mean/std normalisation (the bounds are then :func:`imagenet_bounds`).
    dtype : torch.dtype
        Floating dtype.

    Returns
    -------
    torch.Tensor
        ``(len(names), 3, size, size)``.
    """
    _check_size(size)
    if not names:
        raise ValueError("names must name at least one image.")
    unknown = [name for name in names if name not in NATURAL_IMAGES]
    if unknown:
        raise ValueError(
            f"Unknown sample image(s) {unknown}; choose from {', '.join(NATURAL_IMAGES)}."
        )
    skdata = require("skimage.data", "The photograph data set", "examples")
    batch = []
    for name in names:
        image = np.asarray(getattr(skdata, name)())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        tensor = torch.as_tensor(image[..., :3], dtype=torch.float64).permute(2, 0, 1) / 255.0
        height, width = tensor.shape[1:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        tensor = tensor[:, top : top + side, left : left + side].unsqueeze(0)
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True)
        batch.append(tensor.clamp(0.0, 1.0))
    images = torch.cat(batch)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
        images = (images - mean) / std
    return images.to(dtype)
