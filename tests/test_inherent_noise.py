"""Inherent noise (Zhou et al., 2025): Figure-3 oracle, analytic vs empirical, the paper's
statistics."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from scipy.stats import norm

from captum_ext.zoo import imagenet_bounds, natural_image_batch
from quantus_metrics import InherentNoise

FIG3_BOUNDS = (-2.12, 2.64)


def _uniform_grid(n: int = 1_000_000) -> torch.Tensor:
    """Midpoint quadrature of x uniform on the Figure-3 range (one sample, n features)."""
    low, high = FIG3_BOUNDS
    return (low + (torch.arange(n, dtype=torch.float64) + 0.5) / n * (high - low)).view(1, -1)


@pytest.mark.parametrize(
    ("noise", "expected"),
    [("smoothgrad", 0.159576), ("adaptgrad", 0.027067)],
)
def test_figure3_oracle(noise, expected):
    metric = InherentNoise(bounds=FIG3_BOUNDS, noise=noise, alpha=0.2, n_draws=1)
    result = metric.compute(_uniform_grid())
    assert result.pixel_level.item() == pytest.approx(expected, abs=2e-6)


def test_per_feature_matches_scipy():
    x = torch.tensor([[0.0, 0.05, 0.5, 0.93, 1.0]], dtype=torch.float64)
    sigma = 0.2
    result = InherentNoise(bounds=(0.0, 1.0), noise=sigma).compute(x)
    xs = x.numpy()[0]
    expected = norm.cdf((0.0 - xs) / sigma) + norm.sf((1.0 - xs) / sigma)
    assert np.allclose(result.per_feature.numpy()[0], expected, atol=1e-12)
    image = 1 - np.prod(1 - expected)
    assert result.image_level.item() == pytest.approx(image, abs=1e-12)


def test_analytic_vs_empirical_on_1e5_draws():
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(3, 1, 2, 4, generator=gen, dtype=torch.float64)
    n = 100_000
    metric = InherentNoise(bounds=(0.0, 1.0), noise=0.1, n_draws=n, seed=3)
    result = metric.compute(x)
    features = x[0].numel()
    # independent draws: pixel fractions average n·features Bernoulli(A_i)
    var_pixel = (result.per_feature * (1 - result.per_feature)).flatten(1).sum(1)
    se_pixel = (n * var_pixel).sqrt() / (n * features)
    assert torch.all((result.empirical_pixel_level - result.pixel_level).abs() < 5 * se_pixel)
    p = result.image_level
    se_image = (p * (1 - p) / n).sqrt()
    assert torch.all((result.empirical_image_level - p).abs() < 5 * se_image)


def test_reproduces_paper_statistics_in_kind_on_photos():
    photos = natural_image_batch(size=64, dtype=torch.float64)
    low, high = imagenet_bounds(torch.float64)
    # the authors' code uses one global range for ImageNet-normalised data
    bounds = (float(low.min()), float(high.max()))
    smooth = InherentNoise(bounds=bounds, noise="smoothgrad", alpha=0.2, n_draws=50).compute(photos)
    adapt = InherentNoise(bounds=bounds, noise="adaptgrad", n_draws=50).compute(photos)
    # paper: 12.62 % of pixels, 100 % of images (ILSVRC2012, 1000 images)
    assert 0.08 < smooth.pixel_level.mean().item() < 0.18
    assert smooth.image_level.min().item() > 0.999
    assert smooth.empirical_image_level.min().item() == 1.0
    assert adapt.pixel_level.mean().item() < 0.5 * smooth.pixel_level.mean().item()


def test_per_channel_bounds_and_tensor_sigma():
    photos = natural_image_batch(size=32, dtype=torch.float64)
    bounds = imagenet_bounds(torch.float64)
    sigma = torch.full((3, 1, 1), 0.5, dtype=torch.float64)
    result = InherentNoise(bounds=bounds, noise=sigma, n_draws=4).compute(photos)
    direct = InherentNoise(bounds=bounds, noise=0.5, n_draws=4).compute(photos)
    assert torch.allclose(result.per_feature, direct.per_feature)


def test_bad_input():
    x = torch.rand(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="outside the bounds"):
        InherentNoise(bounds=(0.0, 0.5)).compute(x + 0.6)
    with pytest.raises(ValueError, match="x_min"):
        InherentNoise(bounds=(1.0, 0.0)).compute(x)
    with pytest.raises(ValueError, match="≥ 0"):
        InherentNoise(noise=-0.1).compute(x)
    with pytest.raises(ValueError, match="noise"):
        InherentNoise(noise="vargrad")
    with pytest.raises(ValueError, match="score"):
        InherentNoise(score="median")
    with pytest.raises(ValueError, match="n_draws"):
        InherentNoise(n_draws=0)


def test_seeded_and_global_rng_untouched():
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = torch.random.get_rng_state()
    first = InherentNoise(noise=0.3, n_draws=20, seed=11).compute(x)
    second = InherentNoise(noise=0.3, n_draws=20, seed=11).compute(x)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first.empirical_pixel_level, second.empirical_pixel_level)


def test_inputs_not_modified_and_quantus_evaluate():
    x = np.random.default_rng(0).uniform(size=(4, 1, 8, 8))
    before = x.copy()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).double().eval()

    def explain(model, inputs, targets, **kwargs):
        return np.asarray(inputs) - 0.5  # any non-constant map; the metric ignores it

    metric = InherentNoise(bounds=(0.0, 1.0), n_draws=8, disable_warnings=True)
    results = quantus.evaluate(
        metrics={"inherent": metric},
        xai_methods={"any": explain},
        model=model,
        x_batch=x,
        y_batch=np.zeros(4, dtype=int),
        agg_func=np.mean,
        explain_func_kwargs={},
        progress=False,
    )
    assert np.array_equal(x, before)
    expected = metric.compute(torch.from_numpy(x)).pixel_level.mean().item()
    assert results["any"]["inherent"] == pytest.approx(expected)
