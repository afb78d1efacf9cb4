"""Smooth parameterisation of ReLU (Mehrpanah, Gamba, Smith and Azizpour, ICCV 2025).

ReLU convolved with a Gaussian of standard deviation ``1/β``:

``ReLU_β(z) = ∫ max(0, z − t) N(t; 0, β⁻²) dt = z Φ(βz) + φ(βz) / β``

(Φ, φ the standard normal CDF and density; derivation in ``docs/smooth_relu.md``). The function
is C^∞, lies above ReLU by at most ``φ(0)/β`` (at ``z = 0``) and tends to ReLU as ``β → ∞``.
Its derivative ``Φ(βz)`` is the Gaussian-smoothed step, so a network with ``ReLU_β`` has a
gradient whose power spectrum decays faster: the knob Mehrpanah et al. turn to trade accuracy
for smoother (lower Expected Frequency) gradient explanations.

``kernel="logistic"`` gives ``softplus(βz)/β`` instead, which is ReLU convolved with a logistic
density of scale ``1/β``; the authors' public training code uses ``torch.nn.Softplus(β)``.

The transform is reversible: :func:`smooth_relu` swaps every ``nn.ReLU`` module of a model for
a :class:`SmoothReLU` inside a ``with`` block and puts the very same ReLU objects back on exit
(also on exceptions); :func:`smoothed_copy` returns a transformed deep copy instead.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["SmoothReLU", "gaussian_smoothed_relu", "smooth_relu", "smoothed_copy"]

_KERNELS = ("gaussian", "logistic")
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise ValueError(f"beta must be a positive number (math.inf for ReLU), got {beta!r}.")
    return float(beta)


def _cdf(u: Tensor) -> Tensor:
    return 0.5 * torch.special.erfc(-u / math.sqrt(2.0))


class _GaussianSmoothedReLU(torch.autograd.Function):
    """Forward ``zΦ(βz) + φ(βz)/β``; backward ``Φ(βz)`` (the exact derivative), one op.

    The backward is written with differentiable torch ops on the saved input, so second
    derivatives (Hessians, double backward) stay available.
    """

    @staticmethod
    def forward(ctx, z: Tensor, beta: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.beta = beta
        u = beta * z
        return z * _cdf(u) + torch.exp(-0.5 * u * u) * (_INV_SQRT_2PI / beta)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return grad * _cdf(ctx.beta * z), None


def gaussian_smoothed_relu(z: Tensor, beta: float) -> Tensor:
    """``z Φ(βz) + φ(βz)/β``: ReLU convolved with ``N(0, β⁻²)``; plain ReLU for ``β = inf``."""
    beta = _check_beta(beta)
    if math.isinf(beta):
        return torch.relu(z)
    return _GaussianSmoothedReLU.apply(z, beta)


class SmoothReLU(nn.Module):
    """ReLU smoothed with a Gaussian (default) or logistic kernel of scale ``1/β``.

    Parameters
    ----------
    beta : float
        Inverse kernel width; ``math.inf`` is ReLU exactly.
    kernel : {"gaussian", "logistic"}
        ``"gaussian"``: ``z Φ(βz) + φ(βz)/β`` (Mehrpanah et al.'s definition);
        ``"logistic"``: ``softplus(βz)/β`` (the authors' code).
    """

    def __init__(self, beta: float, kernel: str = "gaussian") -> None:
        super().__init__()
        if kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}.")
        self.beta = _check_beta(beta)
        self.kernel = kernel

    def forward(self, z: Tensor) -> Tensor:
        if math.isinf(self.beta):
            return torch.relu(z)
        if self.kernel == "logistic":
            return nn.functional.softplus(z, beta=self.beta, threshold=20.0)
        return gaussian_smoothed_relu(z, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, kernel={self.kernel!r}"


def _relu_slots(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    slots = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.ReLU
    ]
    if not slots and not isinstance(model, nn.ReLU):
        raise ValueError(
            "the model has no nn.ReLU modules to smooth; a ReLU applied functionally "
            "(torch.relu / F.relu in forward) cannot be replaced — use nn.ReLU modules."
        )
    return slots


@contextmanager
def smooth_relu(model: nn.Module, beta: float, kernel: str = "gaussian") -> Iterator[nn.Module]:
    """Within the block, every ``nn.ReLU`` module of ``model`` is a :class:`SmoothReLU`.

    The original ReLU objects (with their ``inplace`` flags) are restored on exit, also when the
    block raises. Parameters and buffers are never touched, so training inside the block updates
    the model's own weights, which is how the β trade-off networks are trained.

    Raises
    ------
    ValueError
        If the model contains no ``nn.ReLU`` module (functional ReLUs cannot be swapped).
    """
    SmoothReLU(beta, kernel)  # validates before anything is swapped
    if isinstance(model, nn.ReLU):
        raise ValueError("pass the network that contains the ReLU, not the ReLU itself.")
    slots = _relu_slots(model)
    try:
        for parent, name, _ in slots:
            setattr(parent, name, SmoothReLU(beta, kernel))
        yield model
    finally:
        for parent, name, original in slots:
            setattr(parent, name, original)


def smoothed_copy(model: nn.Module, beta: float, kernel: str = "gaussian") -> nn.Module:
    """A deep copy of ``model`` whose ``nn.ReLU`` modules are :class:`SmoothReLU` (β, kernel)."""
    clone = copy.deepcopy(model)
    for parent, name, _ in _relu_slots(clone):
        setattr(parent, name, SmoothReLU(beta, kernel))
    return clone
