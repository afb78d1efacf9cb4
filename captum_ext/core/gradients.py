"""Gradient helpers shared by the modified-gradient methods (RectGrad, PatternNet, …)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_tensor_into_tuples,
    _is_tuple,
    _run_forward,
    _select_targets,
)
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr._core.guided_backprop_deconvnet import ModifiedReluGradientAttribution
from torch import nn

from captum_ext.core.validation import check_finite, check_result_finite, check_targets

__all__ = [
    "UNHOOKED_GATES",
    "modified_gradients",
    "refuse_unhooked_gates",
    "relu_hooks",
    "require_relu_modules",
]


def modified_gradients(
    model: nn.Module,
    install: Callable[[], AbstractContextManager[Any]],
    inputs: TensorOrTupleOfTensorsGeneric,
    target: TargetType,
    additional_forward_args: Any,
    method: str,
) -> tuple[bool, tuple[torch.Tensor, ...]]:
    """Validated gradient of the target output w.r.t. ``inputs`` under ``install()``'s hooks.

    ``install`` returns a context manager that installs the method's hooks and removes them on
    exit (also on errors). Returns ``(inputs_were_a_tuple, gradients)``.
    """
    is_tuple = _is_tuple(inputs)
    inputs_tuple = _format_tensor_into_tuples(inputs)
    check_finite(inputs_tuple)
    extra = _format_additional_forward_args(additional_forward_args)
    # Private leaves: the caller's tensors (possibly shared with other threads) keep their flags,
    # and requiring gradients on them is this method's business, not the user's (no warning).
    inputs_tuple = tuple(x.detach().requires_grad_() for x in inputs_tuple)
    with torch.enable_grad(), install():
        output = _run_forward(model, inputs_tuple, None, extra)
        check_targets(target, output, inputs_tuple[0].shape[0], allow_none=False, method=method)
        selected = _select_targets(output, target)
        grads = torch.autograd.grad(torch.unbind(selected), inputs_tuple, allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs_tuple, grads))
    check_result_finite(grads, method)
    return is_tuple, grads


def require_relu_modules(
    model: nn.Module, method: str, types: tuple[type, ...] = (nn.ReLU,)
) -> None:
    """Raise ``TypeError`` if ``model`` has no module of ``types`` (functional ReLUs only)."""
    if not any(isinstance(m, types) for m in model.modules()):
        names = " / ".join(f"torch.nn.{t.__name__}" for t in types)
        raise TypeError(
            f"{method} found no {names} module in {type(model).__name__}; its ReLUs are "
            "probably functional (F.relu / torch.relu), which cannot be hooked. Replace them by "
            "nn.ReLU modules (one per use or a shared one) and call again."
        )


# Gating activations that Captum's Guided Backprop / Deconvolution hooks (nn.ReLU only) would
# pass through with their plain gradient.
UNHOOKED_GATES = (
    nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Softplus, nn.Hardswish,
)  # fmt: skip


def refuse_unhooked_gates(model: nn.Module, method: str) -> None:
    """Raise ``TypeError`` if ``model`` has gating activations that ReLU hooks do not modify.

    Captum's ``GuidedBackprop`` and ``Deconvolution`` change the backward pass of ``nn.ReLU``
    modules only; at a ReLU6, GELU, SiLU, … they would silently return the gradient there.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, UNHOOKED_GATES)]
    if found:
        name, module = found[0]
        raise TypeError(
            f"{method} modifies the backward pass of nn.ReLU modules only; "
            f"{type(model).__name__} has {len(found)} other gating activation(s), e.g. "
            f"{name!r} ({type(module).__name__}), where it would silently pass the plain "
            "gradient. Use a method with rules for them (e.g. RectGrad treats ReLU6 as a gate, "
            "LRP rule sets pass activations) or replace them by nn.ReLU."
        )


@contextmanager
def relu_hooks(method: ModifiedReluGradientAttribution) -> Iterator[nn.Module]:
    """Install ``method``'s ReLU hooks (Captum's mechanism) for the body; yield its model.

    The same hooks ``method.attribute`` installs, left in place so the caller can run its own
    backward passes; removed on exit, also on errors.
    """
    method.backward_hooks = []
    try:
        method.model.apply(method._register_hooks)
        yield method.model
    finally:
        method._remove_hooks()
