"""How Captum's own attribution classes run under :func:`~captum_ext.core.modified_backward`.

Saliency and InputXGradient need nothing; Guided Backprop, Deconvolution and every other
``ModifiedReluGradientAttribution`` keep Captum's ReLU hooks installed for the caller's backward;
Captum's ``LRP`` runs through the one-pass LRP of :mod:`captum_ext.lrp` with the same rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from captum.attr import LRP, Attribution, InputXGradient, Saliency
from captum.attr._core.guided_backprop_deconvnet import ModifiedReluGradientAttribution

from captum_ext.core.gradients import refuse_unhooked_gates, relu_hooks
from captum_ext.core.modified_backward import (
    ForwardFn,
    modified_backward,
    register_modified_backward,
)
from captum_ext.core.modules import model_of


@register_modified_backward(Saliency, InputXGradient)
@contextmanager
def _plain_gradient(method: Attribution) -> Iterator[ForwardFn]:
    yield model_of(method)


@register_modified_backward(ModifiedReluGradientAttribution)
@contextmanager
def _captum_relu_hooks(method: ModifiedReluGradientAttribution) -> Iterator[ForwardFn]:
    refuse_unhooked_gates(method.model, type(method).__name__)
    with relu_hooks(method) as forward:
        yield forward


@register_modified_backward(LRP)
@contextmanager
def _captum_lrp(method: LRP) -> Iterator[ForwardFn]:
    # Captum's own LRP needs two forward passes per call, driven through its private members.
    # The LRP package computes the same relevance in one pass (Captum's rule objects set as
    # ``module.rule`` are translated, unconfigured layers get Captum's defaults), so Captum's
    # class runs through it. Imported here, on use, because the LRP package registers itself
    # with this core.
    from captum_ext.lrp import LRP as OnePassLRP

    with modified_backward(OnePassLRP(method.model)) as forward:
        yield forward


# Captum's DeepLift needs its own forward and backward rules (a module of its own).
from captum_ext.core import captum_deeplift as _captum_deeplift  # noqa: E402, F401
