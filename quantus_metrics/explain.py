"""Quantus explain functions built from Captum / captum_ext attribution classes.

Quantus calls ``explain_func(model=<nn.Module>, inputs=np.ndarray, targets=np.ndarray, **kwargs)``
and expects an ``np.ndarray``. :func:`explain_func_from` wraps any attribution factory (a Captum
class such as ``captum.attr.Saliency`` or ``lambda model: LRP(model)``) into that signature and
keeps the factory on the function (``explain_func.method_factory``), so metrics that need the
attribution object itself (:class:`quantus_metrics.CSC`) can use the same ``xai_methods`` entry
in ``quantus.evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.attr import Attribution
from torch import nn

from captum_ext.core.isolation import attribute_isolated
from quantus_metrics._base import QuantusDefaults

MethodFactory = Callable[[nn.Module], Attribution]

# Keyword arguments Quantus injects into every explain call that are not attribution options.
_QUANTUS_KWARGS = ("device", "method")


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU/float32 without any)."""
    for param in model.parameters():
        return param.device, param.dtype
    return torch.device("cpu"), torch.float32


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
        Inputs follow the model's device and dtype.

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
        target = torch.as_tensor(np.asarray(targets), device=device).long().reshape(-1)
        options = {**attribute_kwargs}
        options.update({k: v for k, v in kwargs.items() if k not in _QUANTUS_KWARGS})
        # On a private view: Captum's own classes may leave state on the model (e.g. its LRP)
        # or run it in train mode; captum_ext classes isolate themselves.
        attribution = attribute_isolated(method(model), x, target=target, **options)
        return attribution.detach().cpu().numpy()

    explain.method_factory = method  # type: ignore[attr-defined]
    explain.__name__ = f"explain_{getattr(method, '__name__', type(method).__name__)}"
    return explain


class CallDefaults(QuantusDefaults):
    """``quantus.Metric`` whose call arguments besides the data have defaults.

    ``quantus.evaluate`` calls metrics without ``channel_first``, ``model_predict_kwargs`` and
    ``softmax``, which the base ``__call__`` requires; the metrics of this package default them.
    """

    def batch_preprocess(self, data_batch: dict[str, Any]) -> dict[str, Any]:
        """Skip Quantus' lazy explanation of every batch: these metrics explain what they need.

        (The base class would explain each batch once more and reject constant maps with
        ``assert_attributions``; a randomised model legitimately produces them.)
        """
        custom = self.custom_batch_preprocess(**data_batch)
        if custom is not None:
            data_batch.update(custom)
        return data_batch

    def __call__(  # type: ignore[override]
        self,
        model: nn.Module,
        x_batch: np.ndarray,
        y_batch: np.ndarray | None,
        a_batch: np.ndarray | None = None,
        s_batch: np.ndarray | None = None,
        channel_first: bool | None = None,
        explain_func: Callable | None = None,
        explain_func_kwargs: dict | None = None,
        model_predict_kwargs: dict | None = None,
        softmax: bool | None = False,
        device: str | None = None,
        batch_size: int = 64,
        custom_batch: Any = None,
        **kwargs: Any,
    ) -> Any:
        if isinstance(x_batch, torch.Tensor):
            x_batch = x_batch.detach().cpu().numpy()
        if isinstance(y_batch, torch.Tensor):
            y_batch = y_batch.detach().cpu().numpy()
        if y_batch is not None and len(y_batch) != len(x_batch):
            raise ValueError(f"x_batch has {len(x_batch)} samples but y_batch has {len(y_batch)}.")
        if a_batch is not None and len(a_batch) != len(x_batch):
            raise ValueError(f"x_batch has {len(x_batch)} samples but a_batch has {len(a_batch)}.")
        return super().__call__(
            model=model,
            x_batch=x_batch,
            y_batch=y_batch,
            a_batch=a_batch,
            s_batch=s_batch,
            channel_first=channel_first,
            explain_func=explain_func,
            explain_func_kwargs=explain_func_kwargs,
            model_predict_kwargs=model_predict_kwargs,
            softmax=softmax,
            device=device,
            batch_size=batch_size,
            custom_batch=custom_batch,
            **kwargs,
        )
