"""Models made twice differentiable for CASO's Hessian-vector products, without changing them.

Two common building blocks have no double backward in PyTorch: ``nn.Hardsigmoid`` /
``nn.Hardswish`` (MobileNetV3; "derivative for hardsigmoid_backward is not implemented") and
the fused attention kernels behind ``F.scaled_dot_product_attention`` (ViT; flash/efficient
attention on the CPU). :func:`double_differentiable` works on the *private view* of the model an
attribution call runs on (see :mod:`captum_ext.core.isolation`) and

- gives every ``Hardsigmoid``/``Hardswish`` module a forward written with ``clamp``, the same
  function value for value (``clamp(x + 3, 0, 6) / 6``) whose second derivative exists (zero
  almost everywhere for the piecewise-linear Hardsigmoid, ``2·1[-3 < x < 3]/6`` for Hardswish);
- selects the math attention backend, which is composed of differentiable ops.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["double_differentiable"]


def _hardsigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


def _hardswish(x: torch.Tensor) -> torch.Tensor:
    return x * _hardsigmoid(x)


@contextmanager
def double_differentiable(model: nn.Module) -> Iterator[nn.Module]:
    """Context in which ``model`` (a private view) supports double backward where possible."""
    patched: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.Hardsigmoid | nn.Hardswish) and "forward" not in vars(module):
            module.forward = _hardsigmoid if isinstance(module, nn.Hardsigmoid) else _hardswish
            patched.append(module)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            yield model
    finally:
        for module in patched:
            del module.forward
