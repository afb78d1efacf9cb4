"""Facts about the user's model that several methods and metrics need, defined once."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "AVG_POOL_TYPES",
    "BATCHNORM_TYPES",
    "DROPOUT_TYPES",
    "LINEAR_TYPES",
    "MAX_POOL_TYPES",
    "PADDING_TYPES",
    "model_device_dtype",
    "model_of",
    "owning_module",
    "unwrap_model",
]

LINEAR_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The weighted linear layers the propagation rules and the analytic bounds are defined for."""

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
"""Dropout layers: random masks in train mode, the identity in eval mode."""

AVG_POOL_TYPES = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
"""Average pooling (fixed and adaptive): linear maps without parameters."""

MAX_POOL_TYPES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
"""Max pooling (fixed and adaptive): routes each output to one input."""

PADDING_TYPES = tuple(
    getattr(nn, f"{kind}Pad{dim}d")
    for kind in ("Zero", "Constant", "Reflection", "Replication", "Circular")
    for dim in (1, 2, 3)
    if hasattr(nn, f"{kind}Pad{dim}d")
)
"""Padding layers: copies of the input (and constants), whose gradient routes each output
back to the position it copies."""


def owning_module(forward_func: Any) -> nn.Module | None:
    """The ``nn.Module`` behind a forward function (the module or a method bound to one)."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def model_of(method: Any, hint: str = "") -> nn.Module:
    """The ``nn.Module`` a Captum attribution explains.

    ``forward_func`` may be the module or a bound method of one (``model.forward``,
    ``model.logits``); anything else has no module whose layers could be hooked or copied.
    ``hint`` is appended to the error (how the caller's own API avoids the problem).
    """
    forward = getattr(method, "model", None) or getattr(method, "forward_func", None)
    module = owning_module(forward)
    if module is not None:
        return module
    raise TypeError(
        f"{type(method).__name__} wraps {type(forward).__name__}, not an nn.Module or a method of "
        "one; this needs the module itself to reach its layers. Construct the attribution with "
        f"the model (e.g. Saliency(model)).{' ' + hint if hint else ''}"
    )


def unwrap_model(model: Any) -> nn.Module:
    """The torch module behind a Quantus ``ModelInterface`` (or the module itself)."""
    return model.get_model() if hasattr(model, "get_model") else model


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU/float32 without any)."""
    for param in model.parameters():
        return param.device, param.dtype
    return torch.device("cpu"), torch.float32
