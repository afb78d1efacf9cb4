"""CSC beyond medians: per-layer ``|cos|`` distributions and the effect of skip connections.

Sixt, Granz and Landgraf, "When Explanations Lie", ICML 2020, Figure 5 e–g show histograms of
the cosine similarity convergence (CSC) after the first layer, not only medians; their ResNet-50
results (appendix) show how residual connections change convergence: the gradient of a block
``h + g(h)`` is ``I + G`` (eq. 3), whose identity part keeps the chain from collapsing.

- :func:`abs_cos_histograms`: histogram data of the pooled ``|cos|`` per layer (from
  ``quantus_metrics.CSC(return_distributions=True).distributions``), on ``1 − |cos|`` with
  logarithmic bins so values near 1 stay visible.
- :class:`~captum_ext.zoo.TinyResNet` (in the zoo): a small residual CNN whose skip connections
  can be switched off with the same weights, so the comparison isolates the skips.
- :func:`csc_with_and_without_skips`: per-layer median ``|cos|`` of each method on the network
  with and without its skip connections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from captum_ext.core.validation import check_positive_int
from captum_ext.zoo.models import TinyResNet
from quantus_metrics.csc import cosine_similarity_convergence

__all__ = ["abs_cos_histograms", "csc_with_and_without_skips"]


def abs_cos_histograms(
    distributions: Mapping[str, np.ndarray],
    bins: int = 40,
    floor: float = 1e-16,
) -> dict[str, dict[str, np.ndarray]]:
    """Histograms of ``1 − |cos|`` per layer on log-spaced bins from ``floor`` to 1.

    Parameters
    ----------
    distributions : mapping of str to np.ndarray
        ``{layer: |cos| values}`` (any shape; NaNs from zero vectors are dropped).
    bins : int
        Number of bins.
    floor : float
        ``1 − |cos|`` below ``floor`` (converged to float64 resolution) is counted in the first
        bin.

    Returns
    -------
    dict
        ``{layer: {"edges": (bins + 1,), "counts": (bins,), "fraction_converged": (),
        "median": ()}}`` where ``fraction_converged`` is the share with ``|cos| ≥ 0.99``.
    """
    check_positive_int("bins", bins)
    edges = np.logspace(np.log10(floor), 0.0, bins + 1)
    out = {}
    for layer, values in distributions.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        gap = np.clip(1.0 - v, floor, 1.0)
        counts, _ = np.histogram(gap, bins=edges)
        out[layer] = {
            "edges": edges,
            "counts": counts,
            "fraction_converged": np.float64((v >= 0.99).mean() if v.size else np.nan),
            "median": np.float64(np.median(v) if v.size else np.nan),
        }
    return out


def csc_with_and_without_skips(
    model: TinyResNet,
    inputs: torch.Tensor,
    methods: Mapping[str, Callable[[nn.Module], object]],
    n_vectors: int = 5,
    seed: int = 0,
) -> dict[str, dict[bool, dict[str, float]]]:
    """Median ``|cos|`` per traced layer for each method, with the skips on and off.

    Parameters
    ----------
    model : TinyResNet
        The network; its skip setting is restored afterwards.
    inputs : Tensor
        ``(B, C, H, W)`` inputs.
    methods : mapping of str to callable
        ``{name: model -> Attribution}`` (any method CSC supports).
    n_vectors : int
        Random vectors per sample.
    seed : int
        Seed of CSC's private generator (the same vectors for both settings).

    Returns
    -------
    dict
        ``{method: {True: {layer: median}, False: {layer: median}}}``.
    """

    if not isinstance(model, TinyResNet):
        raise TypeError("csc_with_and_without_skips needs a TinyResNet (it switches the skips).")
    original = [block.skip for block in model.blocks]
    results: dict[str, dict[bool, dict[str, float]]] = {}
    try:
        for name, factory in methods.items():
            results[name] = {}
            for skip in (True, False):
                model.set_skip(skip)
                result = cosine_similarity_convergence(
                    factory(model),
                    inputs,
                    n_vectors=n_vectors,
                    generator=torch.Generator().manual_seed(seed),
                )
                results[name][skip] = {
                    layer: float(np.nanmedian(values.cpu().numpy()))
                    for layer, values in result.values.items()
                }
    finally:
        for block, skip in zip(model.blocks, original, strict=True):
            block.skip = skip
    return results
