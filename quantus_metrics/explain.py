"""Quantus explain functions built from Captum / captum_ext attribution classes.

Quantus calls ``explain_func(model=<nn.Module>, inputs=np.ndarray, targets=np.ndarray, **kwargs)``
and expects an ``np.ndarray``. :func:`explain_func_from` wraps any attribution factory (a Captum
class such as ``captum.attr.Saliency`` or ``lambda model: LRP(model)``) into that signature and
keeps the factory on the function (``explain_func.method_factory``), so metrics that need the
attribution object itself (:class:`quantus_metrics.CSC`) can use the same ``xai_methods`` entry
in ``quantus.evaluate``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.attr import Attribution
from captum.attr._core.guided_backprop_deconvnet import ModifiedReluGradientAttribution
from torch import nn

from captum_ext.core.gradients import refuse_unhooked_gates
from captum_ext.core.isolation import attribute_isolated
from captum_ext.core.modules import model_device_dtype

MethodFactory = Callable[[nn.Module], Attribution]

CAPTUM_HOOK_NOTICES = (
    r"Setting backward hooks on ReLU activations",
    r"Setting forward, backward hooks and attributes on non-linear",
)
"""Messages of Captum's informational notices about its own temporary hooks."""

# Keyword arguments Quantus injects into every explain call that are not attribution options.
_QUANTUS_KWARGS = ("device", "method")


def _checked(method: Any) -> Any:
    """``method``, refused by name when it would silently compute something else on its model:
    Captum's Guided Backprop / Deconvolution on gates other than ``nn.ReLU``."""
    if isinstance(method, ModifiedReluGradientAttribution):
        refuse_unhooked_gates(method.model, type(method).__name__)
    return method


def explain_func_from(method: MethodFactory, **attribute_kwargs: Any) -> Callable[..., np.ndarray]:
    """Turn an attribution factory into a Quantus ``explain_func``.

    Parameters
    ----------
    method : callable
        ``method(model) -> captum.attr.Attribution``; a Captum or captum_ext attribution class
        works as is (``explain_func_from(Saliency, abs=False)``).
    **attribute_kwargs
        Passed to every ``attribute`` call (e.g. ``abs=False`` for signed Saliency maps).

    Returns
    -------
    callable
        ``explain(model, inputs, targets, **kwargs) -> np.ndarray`` of the inputs' shape; extra
        keyword arguments override ``attribute_kwargs`` except Quantus' ``device``/``method``.
        Inputs follow the model's device and dtype. The function carries ``method_factory`` and
        ``attribute_kwargs``, which metrics read (``CSC`` traces the method, ``InherentNoise``
        takes its noise).

    Examples
    --------
    >>> import quantus
    >>> from captum.attr import Saliency
    >>> from quantus_metrics import ModelRandomisationSSIM, explain_func_from
    >>> explain = explain_func_from(Saliency, abs=False)
    >>> results = quantus.evaluate(  # doctest: +SKIP
    ...     metrics={"MRSSIM": ModelRandomisationSSIM()}, xai_methods={"Saliency": explain},
    ...     model=model, x_batch=x, y_batch=y, explain_func_kwargs={})
    """
    if not callable(method):
        raise TypeError(
            "method must be an attribution class or a callable model -> Attribution, got "
            f"{type(method).__name__}."
        )

    def explain(
        model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **kwargs: Any
    ) -> np.ndarray:
        device, dtype = model_device_dtype(model)
        x = torch.as_tensor(np.asarray(inputs), device=device, dtype=dtype)
        # The tensor is ours (made from Quantus' array): let it require gradients up front, so
        # gradient methods do not warn that they had to set the flag themselves.
        if x.is_floating_point():
            x = x.detach().requires_grad_(True)
        target = torch.as_tensor(np.asarray(targets), device=device).long().reshape(-1)
        options = {**attribute_kwargs}
        options.update({k: v for k, v in kwargs.items() if k not in _QUANTUS_KWARGS})
        with warnings.catch_warnings():
            # Captum announces its hooks on every GuidedBackprop/Deconvolution/DeepLift call;
            # inside an evaluation loop that is one identical notice per call, nothing to act on.
            for notice in CAPTUM_HOOK_NOTICES:
                warnings.filterwarnings("ignore", message=notice, category=UserWarning)
            # On a private view: Captum's own classes may leave state on the model (its LRP
            # leaves an ``activations`` dict on every layer) or run it in train mode;
            # captum_ext classes isolate themselves.
            attribution = attribute_isolated(_checked(method(model)), x, target=target, **options)
        return attribution.detach().cpu().numpy()

    explain.method_factory = method  # type: ignore[attr-defined]
    explain.attribute_kwargs = dict(attribute_kwargs)  # type: ignore[attr-defined]
    explain.__name__ = f"explain_{getattr(method, '__name__', type(method).__name__)}"
    return explain
