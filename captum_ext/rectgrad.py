"""RectGrad: gradient rectified at every ReLU by an importance threshold (Kim et al., 2019).

Kim, Seo, Jeon, Koo, Choe and Jeon, "Why are Saliency Maps Noisy? Cause of and Solution to
Noisy Saliency Maps", arXiv:1902.04893 (2019); analysed as a modified backward pass in Sixt,
Granz and Landgraf, "When Explanations Lie: Why Many Modified BP Attributions Fail", ICML 2020.

At every ``nn.ReLU`` (and ``nn.ReLU6``, see below) the backward pass computes the importance
``a ⊙ g`` of each unit (ReLU output ``a`` times incoming gradient ``g``) and keeps ``g`` only
where the importance is strictly above a threshold τ: by default τ is the per-sample
``percentile``-th percentile of the importance over all non-batch axes ('nearest'
interpolation, as the authors' TensorFlow code), or a constant ``threshold``. The ReLU's own
derivative (``a > 0``) is applied as usual, so a threshold of ``-inf`` reproduces the plain
gradient exactly.

``nn.ReLU6`` (MobileNet, EfficientNet-Lite) is a ReLU whose output is also clipped at 6, so it
is a gate of the same kind and is rectified the same way: importance ``a ⊙ g`` with its output
``a``, and its own derivative (1 on ``0 < x < 6``, else 0) applied by autograd. Other
activations (GELU, SiLU, Hardswish, …) are not gates and keep their plain gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from captum._utils.common import (
    _format_output,
    _format_tensor_into_tuples,
)
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr._core.guided_backprop_deconvnet import ModifiedReluGradientAttribution
from captum.log import log_usage
from torch import nn

from captum_ext.core.gradients import modified_gradients, relu_hooks, require_relu_modules
from captum_ext.core.isolation import isolated_call
from captum_ext.core.modified_backward import ForwardFn, register_modified_backward
from captum_ext.core.reprs import ReprFromInit

__all__ = ["RectGrad"]

# The ReLU-type gates RectGrad rectifies (module docstring).
_GATES = (nn.ReLU, nn.ReLU6)


class _Rectify(torch.autograd.Function):
    """Identity in the forward pass; zeroes the gradient of unimportant units in the backward."""

    @staticmethod
    def forward(ctx: Any, activation: torch.Tensor, method: RectGrad) -> torch.Tensor:
        ctx.method = method
        ctx.save_for_backward(activation)
        # A copy, so later in-place ops of the model cannot touch the saved activation.
        return activation.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (activation,) = ctx.saved_tensors
        return ctx.method._rectify(activation, grad), None


class RectGrad(ReprFromInit, ModifiedReluGradientAttribution):
    """Rectified Gradient (Kim et al., 2019) as a Captum gradient attribution.

    Parameters
    ----------
    model : nn.Module
        Model whose ReLUs are ``nn.ReLU`` or ``nn.ReLU6`` modules (in-place and reused modules
        are fine).
    percentile : float, default 98.0
        q in [0, 100]: per sample and per ReLU, keep the gradient of the units whose importance
        (activation × gradient) is strictly above the q-th percentile ('nearest' interpolation)
        over all non-batch axes. The paper's recommended value is 98.
    multiply_by_inputs : bool, default True
        Return input × rectified gradient (the paper's attribution) or the rectified gradient.
    threshold : float, optional
        Constant threshold τ instead of the percentile (the paper's other variant, τ = 0 there).
        When given, ``percentile`` is ignored. ``float("-inf")`` disables rectification.

    Examples
    --------
    >>> from captum_ext import RectGrad
    >>> attribution = RectGrad(model).attribute(images, target=labels)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        percentile: float = 98.0,
        multiply_by_inputs: bool = True,
        threshold: float | None = None,
    ) -> None:
        super().__init__(model)
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise TypeError(f"threshold must be a number, got {type(threshold).__name__}.")
            if math.isnan(threshold):
                raise ValueError("threshold must not be NaN.")
        elif (
            isinstance(percentile, bool)
            or not isinstance(percentile, (int, float))
            or not 0.0 <= percentile <= 100.0
        ):
            raise ValueError(f"percentile must be a number in [0, 100], got {percentile!r}.")
        self.percentile = float(percentile)
        self.threshold = None if threshold is None else float(threshold)
        self._multiply_by_inputs = bool(multiply_by_inputs)

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def _threshold(self, importance: torch.Tensor) -> torch.Tensor:
        """Per-sample τ, shaped to broadcast against ``importance``."""
        if self.threshold is not None:
            return importance.new_tensor(self.threshold)
        flat = importance.reshape(importance.shape[0], -1)
        # 'nearest' rank as numpy/TensorFlow: round half to even of q/100·(n−1). That value is
        # the smallest of the n − rank largest (or the largest of the rank + 1 smallest): topk
        # of the smaller side (2 % for q = 98) beats kthvalue; both are batched and, unlike
        # torch.quantile, have no input-size limit.
        n = flat.shape[1]
        rank = round(self.percentile / 100.0 * (n - 1))
        if n - rank <= rank + 1:
            tau = flat.topk(n - rank, dim=1, sorted=False).values.amin(dim=1)
        else:
            tau = flat.topk(rank + 1, dim=1, largest=False, sorted=False).values.amax(dim=1)
        return tau.reshape(-1, *([1] * (importance.dim() - 1)))

    def _rectify(self, activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        importance = activation * grad
        return torch.where(importance > self._threshold(importance), grad, torch.zeros_like(grad))

    def _register_hooks(self, module: nn.Module) -> None:
        # A forward hook wraps each ReLU output in _Rectify: every call gets its own autograd
        # node with its own activation, so reused and in-place ReLUs are handled correctly.
        if isinstance(module, _GATES):
            self.backward_hooks.append(module.register_forward_hook(self._forward_hook))

    def _forward_hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return output
        return _Rectify.apply(output, self)

    @contextmanager
    def _hooks(self) -> Iterator[None]:
        with _rectgrad_backward(self):
            yield

    @log_usage()
    @isolated_call
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """Input × rectified gradient of the target output (see the class docstring).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Batched inputs (first axis = batch).
        target : int, tuple, Tensor or list, optional
            Output index per Captum's convention.
        additional_forward_args : Any, optional
            Extra arguments passed to the model after the inputs.

        Returns
        -------
        Tensor or tuple of Tensor
            Same structure and shapes as ``inputs``.
        """
        is_tuple, grads = modified_gradients(
            self.model, self._hooks, inputs, target, additional_forward_args, "RectGrad"
        )
        if self._multiply_by_inputs:
            inputs_tuple = _format_tensor_into_tuples(inputs)
            grads = tuple(x.detach() * g for x, g in zip(inputs_tuple, grads))
        return _format_output(is_tuple, grads)


@register_modified_backward(RectGrad)
@contextmanager
def _rectgrad_backward(method: RectGrad) -> Iterator[ForwardFn]:
    # The generic ReLU-hook mechanism of the core, after checking there are ReLUs to hook.
    require_relu_modules(method.model, "RectGrad", _GATES)
    with relu_hooks(method) as forward:
        yield forward
