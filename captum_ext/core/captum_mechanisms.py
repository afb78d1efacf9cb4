"""How Captum's own attribution classes run under :func:`~captum_ext.core.modified_backward`.

Saliency and InputXGradient need nothing; Guided Backprop, Deconvolution and every other
``ModifiedReluGradientAttribution`` keep Captum's ReLU hooks installed for the caller's backward;
Captum's ``LRP`` keeps its rules and relevance hooks installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from captum.attr import LRP, Attribution, InputXGradient, Saliency
from captum.attr._core.guided_backprop_deconvnet import ModifiedReluGradientAttribution

from captum_ext.core.gradients import relu_hooks
from captum_ext.core.modified_backward import ForwardFn, register_modified_backward
from captum_ext.core.modules import model_of


@register_modified_backward(Saliency, InputXGradient)
@contextmanager
def _plain_gradient(method: Attribution) -> Iterator[ForwardFn]:
    yield model_of(method)


@register_modified_backward(ModifiedReluGradientAttribution)
@contextmanager
def _captum_relu_hooks(method: ModifiedReluGradientAttribution) -> Iterator[ForwardFn]:
    with relu_hooks(method) as forward:
        yield forward


@register_modified_backward(LRP)
@contextmanager
def _captum_lrp(method: LRP) -> Iterator[ForwardFn]:
    # Captum's LRP needs two passes per forward: one that records activations and lets rules
    # change weights, and one under pre-hooks that builds the relevance graph. Each call of the
    # yielded function does both, so the caller sees a single ordinary forward.
    method.verbose = False
    method._original_state_dict = method.model.state_dict()
    method.layers = []
    method._get_layers(method.model)
    user_rules = {layer: layer.rule for layer in method.layers if hasattr(layer, "rule")}
    method.backward_handles = []
    method.forward_handles = []

    def forward(*inputs: torch.Tensor, additional_forward_args: Any = None) -> torch.Tensor:
        method._remove_backward_hooks()
        method._remove_forward_hooks()
        method.backward_handles, method.forward_handles = [], []
        for layer in method.layers:
            layer.activations = {}
        method._compute_output_and_change_weights(inputs, None, additional_forward_args)
        method._register_forward_hooks()
        extra = additional_forward_args
        extra = () if extra is None else extra if isinstance(extra, tuple) else (extra,)
        return method._forward_fn_wrapper(*inputs, *extra)

    try:
        method._check_and_attach_rules()
        yield forward
    finally:
        method._restore_model()
        for layer in method.layers:
            layer.__dict__.pop("activations", None)  # Captum leaves these behind
        # Captum deletes every rule (captum #1059); put back the ones the user had set.
        for layer, rule in user_rules.items():
            if rule is not None and not hasattr(layer, "rule"):
                layer.rule = rule
