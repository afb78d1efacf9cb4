"""Consistency of Zhou et al. (2025, AdaptGrad Table 1): Quantus' Local Lipschitz Estimate.

Zhou et al. cite Alvarez-Melis and Jaakkola (2018) for "Consistency", whose robustness measure
Quantus implements as ``quantus.LocalLipschitzEstimate``:
``max_{x'} ‖e(x) − e(x')‖₂ / ‖x − x'‖₂`` over Gaussian perturbations ``x'`` of ``x``.
Quantus draws those perturbations from numpy's global random state; :class:`Consistency` is the
same metric with the perturbations drawn from a private ``numpy.random.Generator`` (``seed``),
so an evaluation is reproducible and leaves the caller's random state alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import quantus

__all__ = ["Consistency", "seeded_batch_gaussian_noise"]


def seeded_batch_gaussian_noise(generator: np.random.Generator):
    """A Quantus ``perturb_func`` adding ``N(perturb_mean, perturb_std²)`` from ``generator``."""

    def perturb(
        arr: np.ndarray,
        indices: np.ndarray,
        perturb_mean: float = 0.0,
        perturb_std: float = 0.1,
        **kwargs: Any,
    ) -> np.ndarray:
        if arr.ndim != 2:
            raise ValueError(f"expected a (batch, features) array, got shape {arr.shape}.")
        noise = generator.normal(perturb_mean, perturb_std, size=arr.shape)
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = arr[rows, indices] + noise[rows, indices]
        return out

    return perturb


class Consistency(quantus.LocalLipschitzEstimate):
    """``quantus.LocalLipschitzEstimate`` with a private, seeded perturbation generator.

    Parameters
    ----------
    seed : int
        Seed of the perturbations (one generator per metric object, advanced by every call).
    **kwargs
        As for ``quantus.LocalLipschitzEstimate`` (``nr_samples``, ``perturb_std``,
        ``normalise``; its defaults: 200 samples, σ = 0.1, explanations normalised by their
        maximum).
    """

    name = "Consistency (Local Lipschitz Estimate)"

    def __init__(self, seed: int = 0, **kwargs: Any) -> None:
        if "perturb_func" in kwargs:
            raise TypeError("Consistency draws its own perturbations; use LocalLipschitzEstimate.")
        self.generator = np.random.default_rng(seed)
        kwargs.setdefault("disable_warnings", True)
        kwargs.setdefault("display_progressbar", False)
        super().__init__(perturb_func=seeded_batch_gaussian_noise(self.generator), **kwargs)
