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
from captum.attr import Attribution

from captum_ext.core.guard import ModelGuard
from captum_ext.core.isolation import isolated
from captum_ext.core.modules import model_of

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
    """Names of the attribution classes that have a registered modified backward.

    Captum's own classes are registered by the core; a captum_ext method registers itself when
    its module is imported, so every class whose instance you hold is already covered.
    """
    return sorted(
        cls.__name__ if cls.__module__.startswith("captum.") else f"captum_ext.{cls.__name__}"
        for cls in _REGISTRY
    )

def has_modified_backward(method: object) -> bool:
    """Whether ``method`` (an attribution instance) has a registered modified backward.

    Metrics that propagate through the method's rules (``quantus_metrics.CSC``) use it to refuse
    methods they cannot trace (Integrated Gradients, NoiseTunnel, CASO, ...) before computing.
    """
    return any(cls in _REGISTRY for cls in type(method).__mro__)




def _lookup(method: object) -> Mechanism:
    for cls in type(method).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    raise TypeError(
        f"{type(method).__name__} has no registered modified backward. Supported: "
        f"{', '.join(supported_methods())}. Register one with "
        "captum_ext.core.register_modified_backward."
    )


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

            # the module the forward actually runs (a mechanism may run a traced copy)
            run.module = getattr(forward, "module", view)  # type: ignore[attr-defined]
            yield run


# Captum's own classes; imported last because that module registers through this one.
from captum_ext.core import captum_mechanisms as _captum_mechanisms  # noqa: E402, F401
