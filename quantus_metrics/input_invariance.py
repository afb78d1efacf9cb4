"""Input (shift) invariance of explanations, as a graded score (Kindermans et al., 2019).

Kindermans, Hooker, Adebayo, Alber, Schütt, Dähne, Erhan and Kim ("The (un)reliability of
saliency methods", 2019) compare two networks that compute the same function on inputs that
differ by a constant shift ``c``: network 2 sees ``x + c`` and its first layer's bias is
``b₂ = b₁ − W c``, so every activation is identical. An input-invariant explanation method gives
both networks the same explanation. Quantus' ``InputInvariance`` returns a pass/fail bit per
sample and only handles convolutional first layers; Zhou et al. (2025, AdaptGrad, Table 1)
report a graded "Invariance" on an MNIST MLP. This metric gives the graded version:

``score(x) = ‖a₁(x) − a₂(x + c)‖₁ / ‖a₁(x)‖₁``

(0 = invariant; this normalisation is this project's choice — the paper does not state its own).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection
from torch import nn

from captum_ext.core.modules import LINEAR_TYPES, unwrap_model
from quantus_metrics._base import QuantusDefaults
from quantus_metrics.explain import model_device_dtype

__all__ = ["InputShiftInvariance", "shifted_model"]


def _first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    for name, module in model.named_modules():
        if isinstance(module, LINEAR_TYPES):
            return name, module
        if module is not model and any(True for _ in module.parameters(recurse=False)):
            raise ValueError(
                f"module {name!r} ({type(module).__name__}) has parameters and comes before the "
                "first Linear/Conv layer; input-shift invariance needs the input to enter an "
                "affine layer first."
            )
    raise ValueError("the model has no Linear or Conv layer to absorb the input shift.")


@torch.no_grad()
def shifted_model(model: nn.Module, shift: float) -> nn.Module:
    """A deep copy of ``model`` whose first affine layer absorbs an input shift by ``shift``.

    For inputs ``x + shift`` the copy computes exactly what ``model`` computes for ``x``:
    the first layer's bias becomes ``b − W·(shift·1)``. Convolutions must have zero padding
    (with padding the shift is not constant near the borders).
    """
    clone = copy.deepcopy(model)
    name, layer = _first_layer(clone)
    if isinstance(layer, nn.Linear):
        delta = layer.weight.sum(1) * shift
    else:
        padding = layer.padding
        padded = padding != "valid" if isinstance(padding, str) else any(p != 0 for p in padding)
        if padded:
            raise ValueError(
                f"first layer {name!r} is padded ({layer.padding!r}); a padded convolution does "
                "not see a constant shift as a constant, so no bias can absorb it."
            )
        delta = layer.weight.sum(dim=tuple(range(1, layer.weight.dim()))) * shift
    if layer.bias is None:
        layer.bias = nn.Parameter(-delta.clone())
    else:
        layer.bias -= delta
    return clone


class InputShiftInvariance(QuantusDefaults):
    """Quantus metric: relative L1 change of the explanation under a model-compensated shift.

    Parameters
    ----------
    shift : float
        The constant added to every input feature (Kindermans et al. shift MNIST [0, 1] by −1).
    shifted_explain_func_kwargs : dict, optional
        Keyword arguments for the explanation of the shifted network *instead of*
        ``explain_func_kwargs`` (e.g. AdaptGrad's ``bounds`` moved by ``shift``). By default the
        same keyword arguments are used for both networks.
    **kwargs
        The ``quantus.Metric`` base arguments (``abs``, ``normalise``, ``normalise_func``,
        ``normalise_func_kwargs``, ``return_aggregate``, ``aggregate_func``,
        ``default_plot_func``, ``disable_warnings``, ``display_progressbar``; ``normalise`` is
        off by default; normalisation is applied to both explanations alike).

    Notes
    -----
    An explanation method that draws random noise must use the same noise for both networks
    (a fixed ``seed``), otherwise the score measures the sampling noise.
    """

    name = "Input Shift Invariance"
    data_applicability = {DataType.IMAGE, DataType.TABULAR, DataType.TIMESERIES}
    model_applicability = {ModelType.TORCH}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.AXIOMATIC

    def __init__(
        self,
        shift: float = -1.0,
        shifted_explain_func_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(shift, bool) or not isinstance(shift, (int, float)) or shift == 0:
            raise ValueError(f"shift must be a non-zero number, got {shift!r}.")
        self.shift = float(shift)
        self.shifted_explain_func_kwargs = shifted_explain_func_kwargs

    def prepare(self, **kwargs: Any) -> None:
        if getattr(self, "explain_func", None) is None:
            raise ValueError(
                "InputShiftInvariance needs explain_func: it explains the shifted network itself."
            )

    def evaluate_batch(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        a_batch: np.ndarray,
        **kwargs: Any,
    ) -> list[float]:
        """One relative L1 difference per sample."""
        module = unwrap_model(model)
        explain: Callable[..., np.ndarray] = self.explain_func
        shifted_kwargs = (
            self.explain_func_kwargs
            if self.shifted_explain_func_kwargs is None
            else self.shifted_explain_func_kwargs
        )
        device, _ = model_device_dtype(module)
        twin = shifted_model(module, self.shift).to(device)
        a_shift = np.asarray(
            explain(model=twin, inputs=x_batch + self.shift, targets=y_batch, **shifted_kwargs)
        ).reshape(a_batch.shape)
        if self.abs:
            a_shift = np.abs(a_shift)
        if self.normalise:
            a_shift = self.normalise_func(a_shift, **(self.normalise_func_kwargs or {}))
        flat, flat_shift = a_batch.reshape(len(a_batch), -1), a_shift.reshape(len(a_batch), -1)
        norm = np.abs(flat).sum(1)
        if (norm == 0).any():
            warnings.warn(
                f"{int((norm == 0).sum())} explanation(s) are all zero; their score is NaN.",
                RuntimeWarning,
                stacklevel=2,
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.abs(flat - flat_shift).sum(1) / np.where(norm == 0, np.nan, norm)
        return [float(s) for s in scores]
