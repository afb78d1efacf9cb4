"""Metrics never depend on batching, never crash on half precision, and refuse with the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from torch import nn

from captum_ext import PatternNet
from captum_ext.core.randomness import sample_seed
from quantus_metrics import (
    ModelRandomisationSSIM,
    RandomLogitSSIM,
    SpectralComplexity,
    explain_func_from,
    ssim_batch,
)
from tests.safety_models import BATCHED_METRICS, metric_scores


def _cnn() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8 * 8, 4)
        )
    return model.double().eval()


def _data(n: int = 8):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 8, 8)), rng.integers(0, 4, n)


def test_sample_seeds_are_distinct_and_stable():
    seeds = {sample_seed(s, i) for s in range(3) for i in range(1000)}
    assert len(seeds) == 3000
    assert sample_seed(0, 5) == sample_seed(0, 5) and 0 <= sample_seed(7, 1) < 2**63


@pytest.mark.parametrize("metric", BATCHED_METRICS)
def test_per_sample_scores_do_not_depend_on_batch_size(metric):
    model = _cnn()
    x, y = _data(8)
    scores = {b: metric_scores(metric, model, x, y, b) for b in (1, 3, 8)}
    np.testing.assert_allclose(scores[1], scores[8], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scores[3], scores[8], rtol=1e-10, atol=1e-12)
    # and the samples really got different draws (not one shared stream restarted per batch)
    assert not np.allclose(scores[8][0], scores[8][1])


@pytest.mark.parametrize("half", [np.float16])
def test_half_precision_maps_are_scored_as_float32(half):
    model = _cnn().float()
    x, y = _data(4)
    x = x.astype(np.float32)
    maps = np.random.default_rng(1).random((4, 1, 8, 8))
    for cls in (ModelRandomisationSSIM, RandomLogitSSIM):
        kwargs = {"disable_warnings": True, "display_progressbar": False}
        metric = cls(**kwargs)
        ef = explain_func_from(Saliency)
        got = metric(model, x, y, a_batch=maps.astype(half), explain_func=ef)
        want = cls(**kwargs)(
            model, x, y, a_batch=maps.astype(half).astype(np.float32), explain_func=ef
        )
        np.testing.assert_allclose(
            np.asarray([list(g.values()) if isinstance(g, dict) else g for g in got], float),
            np.asarray([list(w.values()) if isinstance(w, dict) else w for w in want], float),
        )
    spectral = SpectralComplexity(disable_warnings=True, display_progressbar=False)
    got = spectral(model, x, y, a_batch=maps.astype(half))
    want = SpectralComplexity(disable_warnings=True, display_progressbar=False)(
        model, x, y, a_batch=maps.astype(half).astype(np.float32)
    )
    np.testing.assert_allclose(got, want)


def test_randomisation_with_a_batch_but_no_explain_func_says_so():
    model = _cnn().float()
    x, y = _data(4)
    with pytest.raises(ValueError, match="needs explain_func also when a_batch is given"):
        ModelRandomisationSSIM(disable_warnings=True, display_progressbar=False)(
            model, x.astype(np.float32), y, a_batch=np.random.default_rng(2).random((4, 1, 8, 8))
        )


def test_one_dimensional_maps_are_refused_as_such():
    with pytest.raises(ValueError, match="1-D data"):
        ssim_batch(torch.rand(4, 1, 20), torch.rand(4, 1, 20))
    mlp = nn.Sequential(nn.Linear(5, 3)).eval()
    x = np.ones((4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="1-D attributions"):
        ModelRandomisationSSIM(disable_warnings=True, display_progressbar=False)(
            mlp, x, np.zeros(4, dtype=int), explain_func=explain_func_from(Saliency)
        )


def test_pattern_net_non_finite_advice_names_no_epsilon():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    with torch.no_grad():  # every unit active on positive inputs: the overflow reaches the input
        for layer in (model[0], model[2]):
            layer.weight.fill_(0.5)
            layer.bias.zero_()
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(16, 3, dtype=torch.float64, generator=gen)
    net = PatternNet(model).fit(data, progress=False)
    state = net.patterns_state_dict()
    for name in state:  # finite, but their product overflows
        state[name].fill_(1e200)
    net.load_patterns(state)
    with pytest.raises(FloatingPointError) as info:
        net.attribute(torch.rand(2, 3, dtype=torch.float64, generator=gen) + 0.1, target=0)
    assert "epsilon" not in str(info.value) and "stabiliser" not in str(info.value)
