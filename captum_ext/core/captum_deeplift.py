"""Captum's ``DeepLift`` (rescale rule) on the ``modified_backward`` core.

Shrikumar, Greenside and Kundaje, "Learning Important Features Through Propagating Activation
Differences", ICML 2017; in Sixt, Granz and Landgraf, "When Explanations Lie", ICML 2020, the one
modified-BP method whose relevance does not converge to a rank-1 chain (eq. 12–13).

``with modified_backward(DeepLift(model)) as forward:`` yields
``forward(*args, baselines=None)``, called like the model itself (inputs, then any additional
forward arguments). It first runs the model on the baselines (no gradient; zeros for the
first positional argument by default, ``baselines`` gives a tensor or a tuple for the leading
arguments) to record the reference activations, then runs it on ``args`` with Captum's
rescale multipliers (Captum's own rule functions, incl. its max-pool rule) replacing the
gradient of every supported non-linearity. The gradient w.r.t. the inputs of ``forward(x)``
against ``grad_outputs=r`` is the DeepLift multiplier chain applied to ``r``; with ``r`` the
one-hot target, ``(x − baseline) ×`` it equals ``DeepLift.attribute``.

Every intermediate tensor has the batch of ``args`` (the reference pass is separate), so
forward hooks of the caller see ordinary activations, and the multipliers stay valid for
any number of backward passes through one forward (``retain_graph=True``), as CSC needs.
Each non-linear module must be called once per forward (Captum's restriction too) and a
backward belongs to the latest forward of the context.

The separating linear rule of eq. 13, RevealCancel and the paper's "DeepLIFT ablation" are in
:mod:`captum_ext.deeplift_linear`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from captum._utils.common import (
    _register_backward_hook,
)
from captum.attr import DeepLift
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn

from captum_ext.core.modified_backward import ForwardFn, register_modified_backward
from captum_ext.core.validation import baseline_args

__all__: list[str] = []


class _Recorder:
    """Activations of every hooked non-linearity in the reference and the current pass."""

    def __init__(self, method: DeepLift) -> None:
        self.method = method
        self.reference = True
        self.state: dict[nn.Module, dict[str, Any]] = {}
        self.calls = 0  # forward passes so far, to detect a module used twice in one pass

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        # clone: an in-place non-linearity overwrites its input
        key = "ref_in" if self.reference else "in"
        entry = self.state.setdefault(module, {})
        if not self.reference and "in" in entry and entry.get("pass") == self.calls:
            raise RuntimeError(
                f"{type(module).__name__} module is called more than once per forward; DeepLift "
                "needs one module per use of a non-linearity."
            )
        entry[key] = args[0].detach().clone()
        if not self.reference:
            entry["pass"] = self.calls

    def hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        self.state[module]["ref_out" if self.reference else "out"] = output.detach().clone()

    def backward(self, module: nn.Module, grad_input: Any, grad_output: Any) -> Any:
        # Captum's rule functions expect [inputs; references] stacked on the batch axis and
        # read the stacked input from ``module.input`` (max-pool); the reference half gets no
        # gradient, exactly as when Captum runs both halves in one pass.
        entry = self.state[module]
        stacked_in = torch.cat([entry["in"], entry["ref_in"]])
        stacked_out = torch.cat([entry["out"], entry["ref_out"]])
        rule = SUPPORTED_NON_LINEAR[type(module)]
        module.input = stacked_in
        try:
            result = rule(
                module,
                stacked_in,
                stacked_out,
                torch.cat([grad_input, torch.zeros_like(grad_input)]),
                torch.cat([grad_output, torch.zeros_like(grad_output)]),
                eps=self.method.eps,
            )
        finally:
            del module.input
        return result[: grad_input.shape[0]]


@register_modified_backward(DeepLift)
@contextmanager
def _deeplift_backward(method: DeepLift) -> Iterator[ForwardFn]:
    model = method.model
    recorder = _Recorder(method)
    handles: list[Any] = []

    def forward(*args: Any, baselines: Any = None) -> torch.Tensor:
        if not args:
            raise ValueError("forward needs the model inputs.")
        reference = baseline_args(args, baselines)
        recorder.reference = True
        with torch.no_grad():
            model(*reference)
        recorder.reference = False
        recorder.calls += 1
        # Captum's backward-hook helper hooks the tensors of this call only; its module hooks
        # can go right after the pass (the tensor hooks stay with the graph).
        call_handles: list[Any] = []
        try:
            for module in hooked:
                call_handles.extend(_register_backward_hook(module, recorder.backward, method))
            return model(*args)
        finally:
            for handle in call_handles:
                handle.remove()

    hooked = [module for module in model.modules() if method._can_register_hook(module)]
    try:
        for module in hooked:
            handles.append(module.register_forward_pre_hook(recorder.pre_hook))
            handles.append(module.register_forward_hook(recorder.hook))
        yield forward
    finally:
        for handle in handles:
            handle.remove()
        for module in recorder.state:
            module.__dict__.pop("input", None)
