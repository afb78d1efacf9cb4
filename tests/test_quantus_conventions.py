"""Quantus conventions: MPRT's layout, NaN rows instead of aborted tables, the method's noise,
``get_params``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import quantus
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from scipy import stats
from scipy.special import erfinv
from torch import nn

from captum_ext import AdaptGrad, SeededNoiseTunnel
from captum_ext.context_aware import CASO
from quantus_metrics import CSC, InherentNoise, ModelRandomisationSSIM, explain_func_from


def _model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 3),
        )
        model[1].running_var.uniform_(0.5, 2.0)
    return model.double().eval()


def _data(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0.05, 0.95, size=(n, 1, 8, 8)), np.arange(n) % 3


def test_randomisation_mprt_layout_round_trip():
    model, (x, y) = _model(), _data()
    explain = explain_func_from(Saliency, abs=False)
    common = {"randomise_norm_layers": True, "n_resamples": 200, "seed": 3}
    ours = ModelRandomisationSSIM(layout="mprt", **common)
    table = ours(model=model, x_batch=x, y_batch=y, explain_func=explain)
    plain = ModelRandomisationSSIM(**common)
    per_sample = plain(model=model, x_batch=x, y_batch=y, explain_func=explain)
    mprt = quantus.MPRT(disable_warnings=True, layer_order="top_down", seed=3)
    theirs = mprt(model=model, x_batch=x, y_batch=y, explain_func=explain, explain_func_kwargs={})

    # Same layout as quantus.MPRT: 'original' first, then the layers from the output down.
    assert isinstance(table, dict) and isinstance(theirs, dict)
    assert list(table) == list(theirs) == ["original", "6", "3", "1", "0"]
    assert all(len(v) == len(x) for v in [*table.values(), *theirs.values()])
    # 'original' is each map against itself; the layers are the per-sample dicts transposed.
    np.testing.assert_allclose(table["original"], 1.0, atol=1e-6)
    for layer in ours.layer_names:
        assert table[layer] == [s[layer] for s in per_sample]
    # The two tabulate together: one row per metric, one column per layer.
    rows = {
        name: {layer: float(np.mean(v)) for layer, v in scores.items()}
        for name, scores in (("ModelRandomisationSSIM", table), ("quantus.MPRT", theirs))
    }
    assert {tuple(r) for r in rows.values()} == {("original", "6", "3", "1", "0")}
    assert all(math.isfinite(v) for r in rows.values() for v in r.values())


def test_randomisation_average_correlation_with_agg_func():
    model, (x, y) = _model(), _data()
    results = quantus.evaluate(
        metrics={
            "mean": ModelRandomisationSSIM(return_average_correlation=True, n_resamples=200),
            "last": ModelRandomisationSSIM(return_last_correlation=True, n_resamples=200),
            "table": ModelRandomisationSSIM(n_resamples=200),
        },
        xai_methods={"Saliency": explain_func_from(Saliency, abs=False)},
        model=model,
        x_batch=x,
        y_batch=y,
        explain_func_kwargs={},
        agg_func=lambda s: s,
    )["Saliency"]
    layers = list(results["table"][0])
    expected_mean = [np.mean([s[k] for k in layers]) for s in results["table"]]
    np.testing.assert_allclose(results["mean"], expected_mean, rtol=1e-12)
    assert results["last"] == [s[layers[-1]] for s in results["table"]]
    assert np.isfinite(np.mean(results["mean"]))  # agg_func=np.mean now has numbers to average


def test_csc_untraceable_methods_give_nan_rows_inside_evaluate():
    model, (x, y) = _model(), _data(2)
    xai = {
        "Saliency": explain_func_from(Saliency, abs=False),
        "IG": explain_func_from(IntegratedGradients, n_steps=4),
        "AdaptGrad": explain_func_from(
            lambda m: AdaptGrad(Saliency(m), bounds=(0.0, 1.0)), nt_samples=2, seed=0
        ),
        "CASO": explain_func_from(CASO, n_iter=3, hessian="autograd", power_iterations=3),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = quantus.evaluate(
            metrics={"CSC": CSC(n_vectors=3)},
            xai_methods=xai,
            model=model,
            x_batch=x,
            y_batch=y,
            explain_func_kwargs={},
        )
    csc = [w for w in caught if str(w.message).startswith("CSC:")]
    # One clear warning per method CSC cannot trace, naming it.
    assert sorted(str(w.message).split()[1] for w in csc) == [
        "AdaptGrad",
        "CASO",
        "IntegratedGradients",
    ]
    traced = results["Saliency"]["CSC"]
    assert all(np.isfinite(v) for s in traced for v in s.values())
    for name in ("IG", "AdaptGrad", "CASO"):
        rows = results[name]["CSC"]
        assert len(rows) == len(x)
        assert list(rows[0]) == list(traced[0])  # same layers: the table stays rectangular
        assert all(math.isnan(v) for s in rows for v in s.values())


def _oracle(x: np.ndarray, sigma: np.ndarray | float, low: float = 0.0, high: float = 1.0):
    """Mean out-of-bounds probability per sample from the normal CDF (Zhou et al., 2025, eq.
    9/10)."""
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), x.shape)
    inside = np.where(
        sigma > 0,
        stats.norm.cdf((high - x) / np.where(sigma > 0, sigma, 1))
        - stats.norm.cdf((low - x) / np.where(sigma > 0, sigma, 1)),
        1.0,
    )
    return (1.0 - inside).reshape(len(x), -1).mean(1)


def test_inherent_noise_takes_the_noise_of_each_method():
    model, (x, y) = _model(), _data()
    kappa = math.sqrt(2.0) * float(erfinv(0.9))  # AdaptGrad's κ(c) with kappa="code"
    xai = {
        "Saliency": explain_func_from(Saliency, abs=False),
        "NoiseTunnel": explain_func_from(
            lambda m: NoiseTunnel(Saliency(m)), nt_samples=3, stdevs=0.15, abs=False
        ),
        "SeededNoiseTunnel": explain_func_from(
            lambda m: SeededNoiseTunnel(Saliency(m)), nt_samples=3, stdevs=0.3, seed=0, abs=False
        ),
        "AdaptGrad": explain_func_from(
            lambda m: AdaptGrad(Saliency(m), bounds=(0.0, 1.0), confidence=0.9),
            nt_samples=3,
            seed=0,
            abs=False,
        ),
        "plain function": lambda model, inputs, targets, **kw: np.asarray(inputs) - 0.5,
    }
    metric = InherentNoise(bounds=(0.0, 1.0), noise="smoothgrad", alpha=0.2, n_draws=4)
    with torch.random.fork_rng(devices=[]):
        results = quantus.evaluate(
            metrics={"noise": metric},
            xai_methods=xai,
            model=model,
            x_batch=x,
            y_batch=y,
            explain_func_kwargs={},
        )
    expected = {
        "Saliency": np.zeros(len(x)),
        "NoiseTunnel": _oracle(x, 0.15),
        "SeededNoiseTunnel": _oracle(x, 0.3),
        "AdaptGrad": _oracle(x, np.minimum(x, 1.0 - x) / kappa),
        "plain function": _oracle(x, 0.2),  # the configured SmoothGrad σ = α·range
    }
    for name, values in expected.items():
        np.testing.assert_allclose(results[name]["noise"], values, rtol=1e-6, atol=1e-12)
    # The rows differ now (before, every method got SmoothGrad's noise).
    assert len({round(float(np.mean(results[n]["noise"])), 9) for n in expected}) == len(expected)
    off = InherentNoise(bounds=(0.0, 1.0), n_draws=4, noise_from_method=False)
    scores = off(model=model, x_batch=x, y_batch=y, explain_func=xai["AdaptGrad"])
    np.testing.assert_allclose(scores, _oracle(x, 0.2), rtol=1e-6)


@pytest.mark.parametrize(
    "metric, own",
    [
        (CSC(n_vectors=3, seed=4), {"n_vectors": 3, "seed": 4, "layer": None, "method": None}),
        (
            ModelRandomisationSSIM(order="independent", win_size=7, layout="mprt"),
            {"order": "independent", "win_size": 7, "layout": "mprt", "data_range": 2.0},
        ),
        (InherentNoise(alpha=0.1), {"alpha": 0.1, "noise_from_method": True, "n_draws": 50}),
    ],
)
def test_get_params_lists_own_parameters_not_results(metric, own):
    params = metric.get_params
    assert own.items() <= params.items()
    assert {"abs", "normalise", "return_aggregate", "aggregate_func"} <= set(params)
    for state in ("results", "baselines", "distributions", "confidence_intervals", "_bar"):
        assert state not in params


def test_library_calls_raise_no_captum_notices():
    from captum.attr import DeepLift, GuidedBackprop

    from captum_ext import RectGrad

    model, (x, y) = _model(), _data(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for method in (Saliency, GuidedBackprop, DeepLift):
            maps = explain_func_from(method)(model, x, y)
            assert maps.shape == x.shape and np.isfinite(maps).all()
        RectGrad(model).attribute(torch.from_numpy(x), target=torch.from_numpy(y))
    assert [str(w.message) for w in caught] == []
