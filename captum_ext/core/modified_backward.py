"""One "modified backward" mechanism for every propagation-based method.

Inside ``with modified_backward(method) as forward:``, calling ``forward(*inputs)`` runs the
method's model so that ``torch.autograd`` back-propagation follows the method's rules. A
caller can therefore inject any signal at any tensor of the forward pass (``grad_outputs`` of
``torch.autograd.grad``) and read what the method propagates to any lower tensor. For LRP the
propagated quantity is the relevance (Captum's convention: relevance travels as the gradient);
for gradient-like methods (Saliency, Guided Backprop, RectGrad, PatternNet) it is the modified
gradient.

Attribution classes register how they modify the backward pass with
:func:`register_modified_backward`; lookup follows the class hierarchy, so a subclass inherits
its parent's mechanism unless it registers its own. On leaving the context every hook, rule and
parameter swap is undone, also when an exception was raised.

Examples
--------
>>> import torch
>>> from captum.attr import GuidedBackprop
>>> from captum_ext.core import modified_backward
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> x = torch.randn(5, 4, requires_grad=True)
>>> with modified_backward(GuidedBackprop(model)) as forward:
...     out = forward(x)
...     (relevance,) = torch.autograd.grad(out, x, grad_outputs=torch.randn_like(out))
>>> relevance.shape
torch.Size([5, 4])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from captum.attr import (
    LRP,
    Attribution,
    InputXGradient,
    Saliency,
)
from captum.attr._core.guided_backprop_deconvnet import ModifiedReluGradientAttribution
from torch import nn

from captum_ext.core.guard import ModelGuard
from captum_ext.core.isolation import isolated

ForwardFn = Callable[..., torch.Tensor]
Mechanism = Callable[[Any], AbstractContextManager[ForwardFn]]

_REGISTRY: dict[type, Mechanism] = {}


def register_modified_backward(*classes: type) -> Callable[[Mechanism], Mechanism]:
    """Register ``mechanism(method) -> context manager yielding a forward function`` for classes.

    The mechanism must undo everything it installed when its context exits, also on errors.
    """

    def decorator(mechanism: Mechanism) -> Mechanism:
        for cls in classes:
            _REGISTRY[cls] = mechanism
        return mechanism

    return decorator


def supported_methods() -> list[str]:
    """Names of the attribution classes that have a registered modified backward."""
    _import_registrations()
    return sorted(cls.__name__ for cls in _REGISTRY)


def _import_registrations() -> None:
    # Methods defined in captum_ext register themselves on import; import them lazily here so
    # the core does not depend on every method module.
    import importlib

    for module in (
        "captum_ext.lrp",
        "captum_ext.rectgrad",
        "captum_ext.pattern",
        "captum_ext.deeplift",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def _lookup(method: object) -> Mechanism:
    _import_registrations()
    for cls in type(method).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    raise TypeError(
        f"{type(method).__name__} has no registered modified backward. Supported: "
        f"{', '.join(supported_methods())}. Register one with "
        "captum_ext.core.register_modified_backward."
    )


def model_of(method: Attribution) -> nn.Module:
    """The ``nn.Module`` a Captum attribution explains (``forward_func`` must be a module)."""
    model = getattr(method, "model", None) or getattr(method, "forward_func", None)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{type(method).__name__} wraps {type(model).__name__}, not an nn.Module; the modified "
            "backward needs the module itself to hook its layers."
        )
    return model


@contextmanager
def modified_backward(method: Attribution) -> Iterator[ForwardFn]:
    """Run ``method``'s model with ``method``'s backward rules for the duration of the context.

    Parameters
    ----------
    method : captum.attr.Attribution
        A registered attribution instance (see :func:`supported_methods`).

    Yields
    ------
    callable
        ``forward(*inputs, **kwargs)``: the model's forward under the method's rules. Call it
        once per forward pass you need; intermediate tensors can be captured with ordinary
        forward hooks registered by the caller.
    """
    mechanism = _lookup(method)
    model_of(method)
    # The mechanism works on a private view of the model (see captum_ext.core.isolation): the
    # user's module is never rewritten, so other threads may use it meanwhile.
    with isolated(method) as twin:
        view = model_of(twin)
        with ModelGuard(view), mechanism(twin) as forward:

            def run(*args: Any, **kwargs: Any) -> Any:
                return forward(*args, **kwargs)

            run.module = view  # type: ignore[attr-defined]
            yield run


@register_modified_backward(Saliency, InputXGradient)
@contextmanager
def _plain_gradient(method: Attribution) -> Iterator[ForwardFn]:
    yield model_of(method)


@register_modified_backward(ModifiedReluGradientAttribution)
@contextmanager
def _relu_hooks(method: ModifiedReluGradientAttribution) -> Iterator[ForwardFn]:
    # GuidedBackprop, Deconvolution and any other Captum ReLU-hooking method: the same hooks
    # that Captum's attribute() installs, but left in place for the caller's own backward.
    method.backward_hooks = []
    try:
        method.model.apply(method._register_hooks)
        yield method.model
    finally:
        method._remove_hooks()


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
