"""Explanation gap ΔEF of surrogate-based smoothing (Mehrpanah, Gamba, Smith, Azizpour, 2025).

Smoothing methods explain a *surrogate* of the network rather than the network: SmoothGrad is
the gradient of the network convolved with a Gaussian, GradCAM the gradient of a model whose
input dependence is pooled to a coarse feature grid. Mehrpanah et al. measure what this costs as
the difference between the Expected Frequency (EF) of the network's own gradient and the EF of
the surrogate's explanation:

``ΔEF(x) = EF(∇ₓ f_y(x)) − EF(explanation(x))``

Positive ΔEF means the explanation dropped high-frequency content that the network's gradient
has, i.e. the explanation is smoother than the function it claims to explain. An explanation
equal to the gradient (the identity surrogate) has ΔEF = 0 exactly. The sign (reference minus
method) is this project's reading of the paper's "complexity vs. faithfulness" plot, where the
gap grows with the amount of smoothing; see ``docs/spectral.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection

from captum_ext.core.modules import unwrap_model
from quantus_metrics._base import QuantusDefaults
from quantus_metrics.explain import model_device_dtype
from quantus_metrics.spectral import check_reduction, expected_frequency

__all__ = ["ExplanationGap", "gradient_reference"]

ReferenceFunc = Callable[..., np.ndarray]


def gradient_reference(
    model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Signed input gradient of the target logit (the explanation of the network itself).

    The model's train/eval mode and ``requires_grad`` flags are untouched: the gradient is taken
    with respect to a fresh leaf copy of the inputs only.
    """
    device, dtype = model_device_dtype(model)
    x = torch.as_tensor(np.asarray(inputs), device=device, dtype=dtype).clone().requires_grad_(True)
    target = torch.as_tensor(np.asarray(targets), device=device).long().view(-1)
    with torch.enable_grad():
        logits = model(x)
        if logits.dim() != 2 or len(target) != len(x):
            raise ValueError(
                f"the model must return (batch, classes) logits for one target per input; got "
                f"logits {tuple(logits.shape)} for {len(target)} targets."
            )
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return grad.detach().cpu().numpy()


class ExplanationGap(QuantusDefaults):
    """Quantus metric: ``ΔEF = EF(gradient) − EF(explanation)`` per sample.

    Parameters
    ----------
    reference_func : callable, optional
        ``reference_func(model, inputs, targets) -> np.ndarray``: the explanation of the network
        itself. Default :func:`gradient_reference` (the signed input gradient), as in the paper.
    rank, reduce, min_size
        Options of :func:`quantus_metrics.spectral.expected_frequency` (paper convention); both
        maps are reduced and rank-normalised the same way.
    **kwargs
        The ``quantus.Metric`` base arguments (``abs``, ``normalise``, ``normalise_func``,
        ``normalise_func_kwargs``, ``return_aggregate``, ``aggregate_func``,
        ``default_plot_func``, ``disable_warnings``, ``display_progressbar``). ``abs`` and
        ``normalise`` act on the explanations
        (``a_batch``) only, never on the reference, so leave them off unless the reference is
        built the same way.

    Attributes
    ----------
    reference_ef, explanation_ef : list of float
        The two EF values behind each score of the last call.

    Notes
    -----
    Explanations smaller than the input (GradCAM's feature grid) must be upsampled to the input
    size before scoring: EF depends on the grid size, so both maps must share it; a mismatch
    raises.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from quantus_metrics.explanation_gap import ExplanationGap, gradient_reference
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3))
    >>> x = np.random.default_rng(0).normal(size=(2, 1, 16, 16)).astype(np.float32)
    >>> y = np.array([0, 2])
    >>> a = gradient_reference(model, x, y)
    >>> ExplanationGap()(model=model, x_batch=x, y_batch=y, a_batch=a)
    [0.0, 0.0]
    """

    name = "Explanation Gap"
    data_applicability = {DataType.IMAGE}
    model_applicability = {ModelType.TORCH}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.FAITHFULNESS

    def __init__(
        self,
        reference_func: ReferenceFunc | None = None,
        rank: bool = True,
        reduce: str = "sum",
        min_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        reduce = check_reduction(reduce)
        if reference_func is not None and not callable(reference_func):
            raise TypeError("reference_func must be callable(model, inputs, targets).")
        self.reference_func = reference_func or gradient_reference
        self.rank = rank
        self.reduce = reduce
        self.min_size = min_size
        self.reference_ef: list[float] = []
        self.explanation_ef: list[float] = []

    def __call__(self, model: Any, x_batch: np.ndarray, y_batch: np.ndarray, **kwargs: Any) -> Any:
        """Score ``a_batch`` (or the explanations of ``explain_func``); see ``quantus.Metric``."""
        self.reference_ef, self.explanation_ef = [], []
        return super().__call__(model, x_batch, y_batch, **kwargs)

    def gap(
        self, model: torch.nn.Module, x_batch: np.ndarray, y_batch: np.ndarray, a_batch: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """EF of the reference and of the explanations, ``(B,)`` each (no Quantus plumbing)."""
        reference = torch.as_tensor(np.asarray(self.reference_func(model, x_batch, y_batch)))
        maps = torch.as_tensor(np.asarray(a_batch))
        if reference.shape[-2:] != maps.shape[-2:]:
            raise ValueError(
                f"explanations of {tuple(maps.shape[-2:])} pixels differ from the reference's "
                f"{tuple(reference.shape[-2:])}; upsample them to the input size first (e.g. "
                "captum's LayerAttribution.interpolate for GradCAM)."
            )
        ef_ref = expected_frequency(reference.double(), self.rank, self.reduce, self.min_size)
        ef_map = expected_frequency(maps.double(), self.rank, self.reduce, self.min_size)
        return ef_ref, ef_map

    def evaluate_batch(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        a_batch: np.ndarray,
        **kwargs: Any,
    ) -> list[float]:
        """One ΔEF per sample of the batch."""
        module = unwrap_model(model)
        ef_ref, ef_map = self.gap(module, x_batch, y_batch, a_batch)
        self.reference_ef += ef_ref.tolist()
        self.explanation_ef += ef_map.tolist()
        return (ef_ref - ef_map).tolist()
