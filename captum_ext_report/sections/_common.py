"""Small helpers shared by the paper-experiment sections."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from captum.attr import Saliency
from torch import nn


class FixedSeed:
    """An attribution whose random stream is fixed: every call draws the same noise.

    Used inside NoiseGrad (its model copies then share one input-noise draw) and wherever two
    explanations must see identical draws (the shifted network of the Invariance check).
    """

    def __init__(self, method: Any, seed: int, **options: Any) -> None:
        self.method, self.seed, self.options = method, seed, options

    def attribute(self, inputs, target=None, additional_forward_args=None, **kwargs):
        return self.method.attribute(
            inputs,
            target=target,
            additional_forward_args=additional_forward_args,
            seed=self.seed,
            **self.options,
            **kwargs,
        )


class SignedSaliency:
    """``Saliency(abs=False)`` that ignores a ``seed`` (so it composes like the noisy methods)."""

    def __init__(self, model: nn.Module) -> None:
        self.saliency = Saliency(model)

    def attribute(self, inputs, target=None, additional_forward_args=None, seed=None, **kw):
        return self.saliency.attribute(
            inputs, target=target, additional_forward_args=additional_forward_args, abs=False
        )


def spearman(a, b) -> float:
    """Spearman rank correlation (no ties expected), rounded so that exact ρ = 1 compares equal."""
    ra = np.argsort(np.argsort(np.asarray(a, dtype=float)))
    rb = np.argsort(np.argsort(np.asarray(b, dtype=float)))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return round(float(np.corrcoef(ra, rb)[0, 1]), 9)


def paired_bootstrap(
    values: torch.Tensor, gen: torch.Generator, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval of the mean of a 1-D tensor."""
    values = values.double().flatten()
    idx = torch.randint(len(values), (n_boot, len(values)), generator=gen)
    means = values[idx].mean(1)
    alpha = (1 - level) / 2
    q = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return float(values.mean()), float(q[0]), float(q[1])
