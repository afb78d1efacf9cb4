"""Batched torch SSIM and Sixt et al.'s map handling against scikit-image and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from quantus_metrics._bootstrap import bootstrap_ci
from quantus_metrics.ssim import (
    flip_invariant_ssim,
    percentile_normalise,
    reduce_channels,
    ssim_batch,
)


def _maps(rng: torch.Generator, n: int = 6, size: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.rand(n, size, size + 3, generator=rng, dtype=torch.float64)
    # Correlated partner so SSIM is far from 0 and from 1.
    b = (0.6 * a + 0.4 * torch.rand(n, size, size + 3, generator=rng, dtype=torch.float64)).clamp(
        0, 1
    )
    return a, b


@pytest.mark.parametrize(
    ("win_size", "gaussian", "sigma", "sample_cov", "data_range"),
    [
        (5, False, 1.5, True, 2.0),
        (7, False, 1.5, True, 1.0),
        (3, False, 1.5, False, 1.0),
        (11, True, 1.5, False, 1.0),  # Wang et al.'s recommended setting
        (5, True, 0.5, True, 2.0),  # skimage's Gaussian radius int(3.5 σ + 0.5) = 2
    ],
)
def test_ssim_batch_equals_skimage(rng, win_size, gaussian, sigma, sample_cov, data_range):
    a, b = _maps(rng)
    ours = ssim_batch(
        a,
        b,
        data_range=data_range,
        win_size=win_size,
        gaussian=gaussian,
        sigma=sigma,
        use_sample_covariance=sample_cov,
    )
    for flip in (False, True):
        other = 1.0 - b if flip else b
        ours = ssim_batch(
            a,
            other,
            data_range=data_range,
            win_size=win_size,
            gaussian=gaussian,
            sigma=sigma,
            use_sample_covariance=sample_cov,
        )
        for i in range(len(a)):
            kwargs = {"gaussian_weights": gaussian, "use_sample_covariance": sample_cov}
            if gaussian:
                kwargs["sigma"] = sigma
            else:
                kwargs["win_size"] = win_size
            ref = structural_similarity(
                a[i].numpy(), other[i].numpy(), data_range=data_range, **kwargs
            )
            assert abs(float(ours[i]) - ref) < 1e-6


def test_flip_invariant_ssim_is_max_of_both_orientations(rng):
    a, b = _maps(rng)
    na, _ = percentile_normalise(a)
    nb, _ = percentile_normalise(b)
    n_neg, _ = percentile_normalise(-b)
    # Normalising -b is the same as flipping the normalised map (used by flip_invariant_ssim).
    torch.testing.assert_close(n_neg, 1.0 - nb, atol=1e-12, rtol=0)
    score = flip_invariant_ssim(na, nb, win_size=5, data_range=2.0)
    for i in range(len(a)):
        ref = max(
            structural_similarity(na[i].numpy(), nb[i].numpy(), win_size=5, data_range=2.0),
            structural_similarity(na[i].numpy(), n_neg[i].numpy(), win_size=5, data_range=2.0),
        )
        assert abs(float(score[i]) - ref) < 1e-6
    # A sign-flipped map is as similar as the map itself only with sign_invariant=True.
    flipped, _ = percentile_normalise(-a)
    assert torch.allclose(flip_invariant_ssim(na, flipped), torch.ones(len(a), dtype=a.dtype))
    assert (flip_invariant_ssim(na, flipped, sign_invariant=False) < 0.5).all()


def test_percentile_normalise_matches_numpy_definition(rng):
    maps = torch.randn(4, 9, 9, generator=rng, dtype=torch.float64)
    ours, constant = percentile_normalise(maps)
    for i in range(4):
        m = maps[i].numpy()
        lo, hi = np.percentile(m, 0.5), np.percentile(m, 99.5)
        expected = np.clip((hi - m) / (hi - lo), 0, 1)
        np.testing.assert_allclose(ours[i].numpy(), expected, atol=1e-12)
    assert not constant.any()


def test_constant_maps_give_a_defined_ssim():
    zeros = torch.zeros(2, 8, 8, dtype=torch.float64)
    structured = torch.linspace(0, 1, 64, dtype=torch.float64).reshape(1, 8, 8).repeat(2, 1, 1)
    n0, constant = percentile_normalise(zeros)
    assert constant.all() and torch.all(n0 == 0.5)
    ns, _ = percentile_normalise(structured)
    same = flip_invariant_ssim(n0, n0)
    assert torch.equal(same, torch.ones(2, dtype=torch.float64))
    against = flip_invariant_ssim(ns, n0)
    assert torch.isfinite(against).all() and (against < 0.9).all()
    # Equal to skimage's value on the same constant map.
    ref = structural_similarity(ns[0].numpy(), n0[0].numpy(), win_size=5, data_range=2.0)
    ref_flip = structural_similarity(ns[0].numpy(), 1 - n0[0].numpy(), win_size=5, data_range=2.0)
    assert abs(float(against[0]) - max(ref, ref_flip)) < 1e-6


def test_reduce_channels():
    a = torch.tensor([[[[1.0]], [[-3.0]], [[2.0]]]])  # (1, 3, 1, 1)
    assert reduce_channels(a, "sum").item() == 0.0
    assert reduce_channels(a, "max_abs").item() == 3.0
    with pytest.raises(ValueError, match="sum"):
        reduce_channels(a, "mean")
    with pytest.raises(ValueError, match="2-D images"):
        reduce_channels(torch.zeros(2, 3), "sum")


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        (torch.zeros(2, 8, 8), torch.zeros(2, 8, 9), {}, "equal shape"),
        (torch.zeros(2, 4, 4), torch.zeros(2, 4, 4), {"win_size": 5}, "exceeds"),
        (torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), {"win_size": 4}, "odd"),
        (torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), {"data_range": 0.0}, "data_range"),
        (torch.full((2, 8, 8), float("nan")), torch.zeros(2, 8, 8), {}, "non-finite"),
    ],
)
def test_ssim_bad_input(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ssim_batch(a, b, **kwargs)


def test_ssim_batch_keeps_device_and_leading_dims(rng):
    a, b = _maps(rng, n=6)
    out = ssim_batch(a.reshape(2, 3, *a.shape[1:]), b.reshape(2, 3, *b.shape[1:]))
    assert out.shape == (2, 3) and out.device == a.device
    torch.testing.assert_close(out.reshape(-1), ssim_batch(a, b))


def test_bootstrap_ci_matches_loop_reference_and_normal_theory():
    rng = np.random.default_rng(3)
    values = rng.normal(0.5, 0.2, size=(200, 2))
    values[3, 1] = np.nan
    low, high = bootstrap_ci(values, confidence=0.99, n_resamples=4000, seed=7)
    # Same seed, same interval; different seed, close interval.
    low2, high2 = bootstrap_ci(values, confidence=0.99, n_resamples=4000, seed=7)
    assert np.array_equal(low, low2) and np.array_equal(high, high2)
    # Normal theory: mean ± 2.576 σ/√n.
    for column in range(2):
        v = values[:, column][np.isfinite(values[:, column])]
        half = 2.576 * v.std(ddof=1) / np.sqrt(len(v))
        assert abs(low[column] - (v.mean() - half)) < 0.25 * half
        assert abs(high[column] - (v.mean() + half)) < 0.25 * half
    # A slow loop bootstrap (independent implementation) agrees within Monte-Carlo error.
    loop_rng = np.random.default_rng(11)
    v = values[:, 0]
    means = [v[loop_rng.integers(0, len(v), len(v))].mean() for _ in range(4000)]
    ref_low, ref_high = np.quantile(means, [0.005, 0.995])
    assert abs(low[0] - ref_low) < 0.01 and abs(high[0] - ref_high) < 0.01
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(values, confidence=1.5)


def test_bootstrap_leaves_global_rng_alone():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global RNG
    bootstrap_ci(np.arange(10.0), n_resamples=100, seed=1)
    assert np.array_equal(state, np.random.get_state()[1])  # noqa: NPY002
