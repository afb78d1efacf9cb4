"""Small models and the method table shared by the safety tests and ``benchmarks.safety_sweep``.

Importable (not collected): the tests assert on these cases one by one, the sweep counts how
many of them keep the README's promises, and both must build exactly the same cases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from torch import nn

from captum_ext import (
    CAFO,
    CASO,
    LRP,
    AdaptGrad,
    FusionGrad,
    LayerLRP,
    NoiseGrad,
    PatternAttribution,
    PatternNet,
    RectGrad,
    SeededNoiseTunnel,
)

B, D, C = 3, 6, 4  # batch, features, classes


def mlp(seed: int = 0) -> nn.Module:
    """``Linear(D, 5) → ReLU → Linear(5, C)`` in float64, weights from a private generator."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, C))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model.double().eval()


def inputs(n: int = B, seed: int = 1) -> torch.Tensor:
    """``n`` float64 rows of ``D`` features in [0, 1)."""
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def last_linear(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def fitted_pattern(cls: type, model: nn.Module) -> Any:
    return cls(model).fit(inputs().repeat(4, 1), progress=False)


# name -> (factory(model) -> callable(x, target, **kw)), whether target=None means "predicted class"
METHODS: dict[str, tuple[Callable[[nn.Module], Callable[..., Any]], bool]] = {
    "LRP": (lambda m: LRP(m).attribute, False),
    "LayerLRP": (lambda m: LayerLRP(m, last_linear(m)).attribute, False),
    "RectGrad": (lambda m: RectGrad(m).attribute, False),
    "PatternNet": (lambda m: fitted_pattern(PatternNet, m).attribute, False),
    "PatternAttribution": (lambda m: fitted_pattern(PatternAttribution, m).attribute, False),
    "AdaptGrad": (
        lambda m: (
            lambda x, target=None, **kw: AdaptGrad(Saliency(m), bounds=(0.0, 1.0)).attribute(
                x, target=target, nt_samples=2, seed=0, **kw
            )
        ),
        False,
    ),
    "SeededNoiseTunnel": (
        lambda m: (
            lambda x, target=None, **kw: SeededNoiseTunnel(Saliency(m)).attribute(
                x, target=target, nt_samples=2, stdevs=0.1, seed=0, **kw
            )
        ),
        False,
    ),
    "NoiseGrad": (
        lambda m: (
            lambda x, target=None, **kw: NoiseGrad(Saliency(m), n_models=2).attribute(
                x, target=target, seed=0, show_progress=False, **kw
            )
        ),
        False,
    ),
    "FusionGrad": (
        lambda m: (
            lambda x, target=None, **kw: FusionGrad(Saliency(m), n_models=2, n_samples=2).attribute(
                x, target=target, seed=0, show_progress=False, **kw
            )
        ),
        False,
    ),
    "CAFO": (lambda m: lambda x, target=None, **kw: CAFO(m).attribute(x, target, n_iter=2), True),
    "CASO": (lambda m: lambda x, target=None, **kw: CASO(m).attribute(x, target, n_iter=2), True),
}
NAMES = list(METHODS)


def call(name: str, model: nn.Module, x: Any, target: Any, **kwargs: Any) -> Any:
    factory, _ = METHODS[name]
    return factory(model)(x, target=target, **kwargs)


class TupleOut(nn.Module):
    """The MLP returning a tuple or a dict (``kind``) instead of one logits tensor."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = mlp()
        self.kind = kind

    def forward(self, x):
        out = self.net(x)
        return {"logits": out, "aux": out.sum(1)} if self.kind == "dict" else (out, out.sum(1))


class Scaled(nn.Module):
    """The bias-free MLP times a scale passed as an additional forward argument."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x, scale):
        return self.net(x) * scale


class DenseStyle(nn.Module):
    """DenseNet's functional tail: ``F.relu`` and ``F.adaptive_avg_pool2d`` outside any module."""

    def __init__(self, zero_bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3, C)
        if zero_bias:  # bias-free, so LRP must conserve the output exactly
            nn.init.zeros_(self.conv.bias)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(h)


class Act(nn.Module):
    """``Linear(6, 8) → act → Linear(8, 5)``: one activation between two layers."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(6, 8), act, nn.Linear(8, 5)

    def forward(self, x):
        return self.b(self.act(self.a(x)))


class ClampHardsigmoid(nn.Module):
    def forward(self, x):  # hardsigmoid written independently
        return torch.clamp(x / 6 + 0.5, 0, 1)


class ClampHardswish(nn.Module):
    def forward(self, x):
        return x * torch.clamp(x / 6 + 0.5, 0, 1)


class Attention(nn.Module):
    """One multi-head self-attention over 3 tokens of width 4, then a linear read-out."""

    def __init__(self) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(4, 2, batch_first=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc(self.att(x, x, x, need_weights=False)[0].flatten(1))


BATCHED_METRICS = ("CSC", "ConvergenceConstants", "InherentNoise")


def metric_scores(name: str, model: nn.Module, x: Any, y: Any, batch_size: int) -> np.ndarray:
    """Per-sample scores of one of :data:`BATCHED_METRICS` on ``(x, y)`` in ``batch_size`` chunks.

    Each metric keys its random draws to the sample, so the scores must not depend on
    ``batch_size``; the settings are the smallest that still draw several times per sample.
    """
    from quantus_metrics import CSC, ConvergenceConstants, InherentNoise, explain_func_from

    if name == "CSC":
        metric = CSC(method=Saliency, n_vectors=3, seed=1, display_progressbar=False)
        out = metric(model, x, y, batch_size=batch_size)
        return np.array([[s[k] for k in sorted(s)] for s in out])
    if name == "InherentNoise":
        metric = InherentNoise(
            bounds=(0.0, 1.0), n_draws=5, score="empirical_pixel_level",
            noise_from_method=False, display_progressbar=False, disable_warnings=True,
        )  # fmt: skip
    elif name == "ConvergenceConstants":
        metric = ConvergenceConstants(
            sigma=0.1, n_grid=(1, 2), n_reference=2, draws_per_call=2, seed=1,
            display_progressbar=False, disable_warnings=True,
        )  # fmt: skip
    else:
        raise ValueError(f"no batched metric {name!r}; one of {BATCHED_METRICS}.")
    out = metric(model, x, y, explain_func=explain_func_from(Saliency), batch_size=batch_size)
    return np.asarray(out, dtype=np.float64)
