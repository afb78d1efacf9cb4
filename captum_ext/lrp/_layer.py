"""Linear algebra of one linear-type layer with swapped parameters (private to the rules).

Every LRP rule for ``nn.Linear``/``nn.ConvNd`` needs two primitives on the layer's linear map
with *modified* weights ``W'``: the forward ``z' = W'x + b'`` and the transposed product
``W'ᵀs`` (a vector–Jacobian product, computed directly with ``torch.nn.grad.conv*_input`` or a
matmul, so no autograd graph is built).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LINEAR_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

_CONV_INPUT = {
    nn.Conv1d: torch.nn.grad.conv1d_input,
    nn.Conv2d: torch.nn.grad.conv2d_input,
    nn.Conv3d: torch.nn.grad.conv3d_input,
}


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + ε·sign(z)`` with ``sign(0) = +1`` (zennit's convention)."""
    return z + torch.where(z >= 0, epsilon, -epsilon).to(z.dtype)


def safe_divide(r: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``r / denominator`` with 0 where the denominator is exactly 0 (only possible with ε = 0)."""
    zero = denominator == 0
    return torch.where(zero, torch.zeros_like(r), r / torch.where(zero, 1.0, denominator))


@dataclass
class Layer:
    """A linear-type module and the parameters it had when its forward ran."""

    module: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None

    @classmethod
    def of(cls, module: nn.Module) -> Layer:
        bias = module.bias.detach() if module.bias is not None else None
        return cls(module, module.weight.detach(), bias)

    def forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``weight·x + bias`` with this layer's geometry (stride, padding, groups, …)."""
        if isinstance(self.module, nn.Linear):
            return F.linear(x, weight, bias)
        return self.module._conv_forward(x, weight, bias)

    def transpose(
        self, input_shape: torch.Size, weight: torch.Tensor, s: torch.Tensor
    ) -> torch.Tensor:
        """``weightᵀ s``: the vector–Jacobian product of the bias-free linear map."""
        module = self.module
        if isinstance(module, nn.Linear):
            return s.matmul(weight)
        direct = _CONV_INPUT.get(type(module))
        if (
            direct is not None
            and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        ):
            return direct(
                input_shape,
                weight,
                s,
                module.stride,
                module.padding,
                module.dilation,
                module.groups,
            )
        # Reflect/circular padding or padding="same": let autograd transpose the (linear) map.
        with torch.enable_grad():
            probe = torch.zeros(input_shape, dtype=s.dtype, device=s.device, requires_grad=True)
            (out,) = torch.autograd.grad(self.forward(probe, weight), probe, s)
        return out

    @property
    def bias_or_zero(self) -> torch.Tensor | float:
        return 0.0 if self.bias is None else self.bias

    def bias_shape(self, bias: torch.Tensor | None) -> torch.Tensor | float:
        """``bias`` broadcastable against an output of this layer (0 if there is none)."""
        if bias is None:
            return 0.0
        if isinstance(self.module, nn.Linear):
            return bias
        return bias.reshape(-1, *([1] * (self.weight.dim() - 2)))
