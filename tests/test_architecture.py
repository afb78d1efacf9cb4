"""Layout guarantees: Quantus' template is used as designed, closed forms need no SciPy.

Oracles: SciPy's Beta quantile and digamma (a test-only import; the library computes both with
torch), and the list of ``@final`` methods read from ``quantus.Metric`` itself.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from quantus.metrics.base import Metric
from scipy import special, stats

import quantus_metrics
from captum_ext.analysis import predicted_rate
from quantus_metrics.csc import random_baseline

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("channels", [2, 3, 10, 64, 1024, 4096])
def test_csc_chance_level_matches_the_beta_median(channels):
    want = float(np.sqrt(stats.beta.ppf(0.5, 0.5, (channels - 1) / 2.0)))
    assert random_baseline(channels) == pytest.approx(want, rel=1e-7)


@pytest.mark.parametrize("width", [2, 5, 64, 512])
def test_gaussian_chain_rate_matches_scipy_digamma(width):
    want = np.exp(-0.5 * (special.digamma(width / 2.0) - special.digamma((width - 1) / 2.0)))
    assert predicted_rate("gaussian", width) == pytest.approx(float(want), rel=1e-12)


def test_no_metric_overrides_a_final_quantus_method():
    finals = [name for name, f in vars(Metric).items() if getattr(f, "__final__", False)]
    assert "batch_preprocess" in finals  # the guard below checks something real
    overridden = [
        (cls.__name__, owner.__name__, name)
        for cls in vars(quantus_metrics).values()
        if inspect.isclass(cls) and issubclass(cls, Metric)
        for owner in cls.__mro__[: cls.__mro__.index(Metric)]
        for name in finals
        if name in vars(owner)
    ]
    assert overridden == []


def test_self_explaining_metric_gets_no_quantus_explanation():
    """Quantus must not call ``explain_func`` for a metric that explains itself."""
    from quantus_metrics._base import QuantusDefaults

    calls: list[int] = []

    class Counting(QuantusDefaults):
        explains_itself = True

        def evaluate_batch(self, model, x_batch, y_batch, a_batch=None, **kwargs):
            assert a_batch is None  # the stand-in never reaches the metric
            return [float(len(calls))] * len(x_batch)

    def explain(model, inputs, targets, **kwargs):
        calls.append(1)
        return np.zeros_like(inputs)  # constant: Quantus' own path would reject it

    x, y = np.random.default_rng(0).normal(size=(4, 1, 8, 8)), np.zeros(4, dtype=int)
    scores = Counting(disable_warnings=True)(torch.nn.Flatten(), x, y, explain_func=explain)
    assert calls == [] and scores == [0.0] * 4


def test_library_modules_import_no_scipy():
    # SciPy is no runtime dependency of its own (it arrives with Quantus): no module imports it
    # at import time; an optional code path (Information Level's reference fill) may, inside the
    # function that needs it.
    offenders = []
    for package in ("captum_ext", "quantus_metrics"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )  # fmt: skip
                if any(n.split(".")[0] == "scipy" for n in names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
