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

from captum_ext.core.modules import LINEAR_TYPES

__all__ = ["LINEAR_TYPES", "Layer"]

# Transposed convolutions (``torch.nn.grad.conv*_input`` hands convolution_backward an expanded
# dummy input, which the CPU backend materialises: a full copy of the input per call).
_CONV_TRANSPOSE = {
    nn.Conv1d: F.conv_transpose1d,
    nn.Conv2d: F.conv_transpose2d,
    nn.Conv3d: F.conv_transpose3d,
}


# Elementwise kernels that read a bool tensor (torch.where, masked_fill_, bool × float) run
# about 20× slower on CPU than float arithmetic in the same pass; the rules' hot path uses
# copysign and float masks instead (torch.lt(z, 0, out=float) etc.).


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + ε·sign(z)`` with ``sign(0) = +1`` (zennit's convention)."""
    return stabilize_(z + 0.0, epsilon)  # + 0.0 also turns −0.0 into +0.0: sign(±0) = +1


def stabilize_(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """:func:`stabilize` in place, for a temporary ``z`` the caller owns."""
    if torch.is_grad_enabled() and z.requires_grad:
        return z + torch.where(z >= 0, epsilon, -epsilon).to(z.dtype)
    z.add_(0.0)  # −0.0 → +0.0, so that copysign gives +ε at every zero
    return z.add_(torch.copysign(torch.tensor(epsilon, dtype=z.dtype, device=z.device), z))


def float_mask(test, z: torch.Tensor) -> torch.Tensor:
    """``test(z, 0)`` (e.g. ``torch.lt``) as a float tensor of 0/1 in ``z``'s dtype."""
    return test(z, 0, out=torch.empty_like(z))


def divide_(r: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``r / denominator``, written into the temporary ``denominator`` unless autograd records."""
    if torch.is_grad_enabled() and (r.requires_grad or denominator.requires_grad):
        return r / denominator
    return torch.div(r, denominator, out=denominator)


def nonnegative(x: torch.Tensor) -> bool:
    """Whether ``x`` has no negative entry (one reduction, no temporary the size of ``x``)."""
    return x.numel() == 0 or not bool(x.min() < 0)


def safe_divide(r: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``r / denominator`` with 0 where the denominator is exactly 0 (only possible with ε = 0)."""
    zero = float_mask(torch.eq, denominator)
    if not bool(zero.any()):
        return r / denominator
    out = r / (denominator + zero)  # 1 where the denominator is 0: finite everywhere
    return out.mul_(zero.neg_().add_(1.0))


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

    def _stackable(self) -> bool:
        # Inputs/weights can be stacked along the input channels (no groups to keep apart).
        return isinstance(self.module, nn.Linear) or self.module.groups == 1

    @property
    def _channel_dim(self) -> int:
        # Counted from the end, so unbatched inputs work too.
        return -1 if isinstance(self.module, nn.Linear) else 1 - self.weight.dim()

    def forward_sum(
        self,
        xs: list[torch.Tensor],
        weights: list[torch.Tensor],
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Σ_k weights[k]·xs[k] + bias`` in one product (inputs stacked along the channels)."""
        if len(xs) == 1 or not self._stackable():
            out = self.forward(xs[0], weights[0], bias)
            for x, w in zip(xs[1:], weights[1:], strict=True):
                out = out + self.forward(x, w)
            return out
        return self.forward(torch.cat(xs, self._channel_dim), torch.cat(weights, 1), bias)

    def transpose_many(
        self, input_shape: torch.Size, weights: list[torch.Tensor], s: torch.Tensor
    ) -> list[torch.Tensor]:
        """``[wᵀs for w in weights]`` in one transposed product (weights stacked)."""
        if len(weights) == 1 or not self._stackable():
            return [self.transpose(input_shape, w, s) for w in weights]
        dim = self._channel_dim
        shape = list(input_shape)
        shape[dim] *= len(weights)
        out = self.transpose(torch.Size(shape), torch.cat(weights, 1), s)
        return list(out.chunk(len(weights), dim))

    def transpose(
        self, input_shape: torch.Size, weight: torch.Tensor, s: torch.Tensor
    ) -> torch.Tensor:
        """``weightᵀ s``: the vector–Jacobian product of the bias-free linear map."""
        module = self.module
        if isinstance(module, nn.Linear):
            return s.matmul(weight)
        direct = _CONV_TRANSPOSE.get(type(module))
        if (
            direct is not None
            and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        ):
            # output_padding recovers input sizes that the strided forward rounded down.
            output_padding = tuple(
                size - ((out - 1) * stride - 2 * pad + dil * (k - 1) + 1)
                for size, out, stride, pad, dil, k in zip(
                    input_shape[-len(module.stride) :],  # also for unbatched inputs
                    s.shape[-len(module.stride) :],
                    module.stride,
                    module.padding,
                    module.dilation,
                    weight.shape[2:],
                    strict=True,
                )
            )
            return direct(
                s,
                weight,
                None,
                module.stride,
                module.padding,
                output_padding,
                module.groups,
                module.dilation,
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
