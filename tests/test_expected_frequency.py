"""Expected Frequency (Mehrpanah et al. 2025) and the explanation gap ΔEF: oracles."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from captum.attr import LayerAttribution, LayerGradCam, Saliency
from scipy import stats

from quantus_metrics import ExpectedFrequency, ExplanationGap, SpectralComplexity
from quantus_metrics.explanation_gap import gradient_reference
from quantus_metrics.spectral import expected_frequency


def _slow_ef(image: np.ndarray, rank: bool) -> float:
    """The definition with explicit loops and scipy's ranks (no shared code)."""
    height, width = image.shape
    if rank:
        image = stats.rankdata(image.ravel(), method="average").reshape(image.shape) / image.size
    power = np.abs(np.fft.fft2(image)) ** 2
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for i in range(height):
        for j in range(width):
            # unshifted index (i, j) sits at shifted position (i + H//2) mod H
            si, sj = (i + height // 2) % height, (j + width // 2) % width
            r = int(((si - height // 2) ** 2 + (sj - width // 2) ** 2) ** 0.5)
            sums[r] = sums.get(r, 0.0) + power[i, j]
            counts[r] = counts.get(r, 0) + 1
    n_rings = max(sums) + 1
    profile = [sums[k] / counts[k] for k in range(n_rings)]
    total = sum(profile)
    return sum(k / (n_rings - 1) * p for k, p in enumerate(profile)) / (n_rings * total)


@pytest.mark.parametrize("size, cycles", [(32, 3), (32, 9), (28, 5), (17, 4)])
def test_ef_of_a_sinusoid_closed_form(size, cycles):
    # cos(2π k x / n) has all its power on the two frequencies ±k of one axis, i.e. on integer
    # ring k: EF = f_k / K = k / ((K - 1) K) with K = ⌊r_max⌋ + 1 rings.
    xx = torch.arange(size, dtype=torch.float64)
    wave = torch.cos(2 * torch.pi * cycles * xx / size).expand(size, size)[None].clone()
    half = size // 2
    corner = max(abs(0 - half), abs(size - 1 - half))
    n_rings = int((2 * corner**2) ** 0.5) + 1
    expected = cycles / ((n_rings - 1) * n_rings)
    assert expected_frequency(wave, rank=False).item() == pytest.approx(expected, rel=1e-12)


def test_ef_matches_slow_reference_with_and_without_ranks():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 16, 16))
    maps[1] = np.round(maps[1])  # ties
    maps[2] = np.add.outer(np.arange(16.0), np.arange(16.0)) ** 1.5
    for rank in (True, False):
        fast = expected_frequency(torch.from_numpy(maps), rank=rank)
        for index, image in enumerate(maps):
            assert fast[index].item() == pytest.approx(_slow_ef(image, rank), rel=1e-10)


def test_ef_orders_noise_above_blur_and_sums_channels():
    rng = np.random.default_rng(1)
    noise = torch.from_numpy(rng.normal(size=(2, 3, 32, 32)))
    blurred = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)
    assert torch.all(expected_frequency(blurred) < expected_frequency(noise))
    assert torch.allclose(expected_frequency(noise), expected_frequency(noise.sum(1)))


def test_metric_conventions_and_alias():
    maps = np.random.default_rng(2).normal(size=(2, 1, 16, 16))
    y = np.zeros(2, dtype=int)
    paper = ExpectedFrequency(disable_warnings=True)(None, maps, y, a_batch=maps)
    assert paper == pytest.approx(expected_frequency(torch.from_numpy(maps)).tolist())
    old = SpectralComplexity(disable_warnings=True)(None, maps, y, a_batch=maps)
    project = ExpectedFrequency(convention="project", disable_warnings=True)
    assert project(None, maps, y, a_batch=maps) == pytest.approx(old)
    with pytest.raises(ValueError, match="convention='project'"):
        ExpectedFrequency(n_bins=4)
    with pytest.raises(ValueError, match="convention"):
        ExpectedFrequency(convention="mine")


def _relu_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # test-local model construction; fork below keeps callers unaffected
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 16 * 16, 4),
    ).eval()


@pytest.fixture
def cnn():
    with torch.random.fork_rng():
        return _relu_cnn()


def test_gap_is_zero_for_the_identity_surrogate(cnn):
    x = np.random.default_rng(3).uniform(size=(4, 1, 16, 16)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    a = Saliency(cnn).attribute(torch.from_numpy(x), target=torch.from_numpy(y), abs=False)
    metric = ExplanationGap(disable_warnings=True)
    scores = metric(model=cnn, x_batch=x, y_batch=y, a_batch=a.numpy())
    assert scores == [0.0] * 4
    assert all(v > 0 for v in metric.reference_ef)


def test_gap_sign_blurred_gradient_positive_white_noise_over_smooth_reference_negative(cnn):
    # A surrogate whose explanation is the gradient low-pass filtered loses high frequencies
    # (ΔEF > 0); white noise measured against a smooth reference gains them (ΔEF < 0).
    x = np.random.default_rng(4).uniform(size=(4, 1, 16, 16)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    grad = torch.from_numpy(gradient_reference(cnn, x, y)).double()
    blurred = torch.nn.functional.avg_pool2d(grad, 3, stride=1, padding=1, count_include_pad=False)
    metric = ExplanationGap(disable_warnings=True)
    assert min(metric(model=cnn, x_batch=x, y_batch=y, a_batch=blurred.numpy())) > 0
    ramp = np.add.outer(np.arange(16.0), np.arange(16.0))[None, None].repeat(4, 0)
    smooth_metric = ExplanationGap(reference_func=lambda model, inputs, targets: ramp)
    noise = np.random.default_rng(5).normal(size=ramp.shape)
    assert max(smooth_metric(model=cnn, x_batch=x, y_batch=y, a_batch=noise)) < 0


def test_gap_accepts_upsampled_gradcam_and_refuses_coarse_maps(cnn):
    x = torch.from_numpy(np.random.default_rng(6).uniform(size=(2, 1, 16, 16)).astype(np.float32))
    y = torch.tensor([0, 1])
    coarse = LayerGradCam(cnn, cnn[2]).attribute(x, target=y)[..., ::2, ::2]
    cam = LayerAttribution.interpolate(coarse, (16, 16), interpolate_mode="bilinear")
    metric = ExplanationGap(disable_warnings=True)
    gaps = metric(model=cnn, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=cam.detach().numpy())
    assert all(np.isfinite(gaps))
    with pytest.raises(ValueError, match="upsample"):
        metric.gap(cnn, x.numpy(), y.numpy(), coarse.detach().numpy())


def test_gap_inside_quantus_evaluate(cnn):
    x = np.random.default_rng(5).uniform(size=(3, 1, 16, 16)).astype(np.float32)
    y = np.array([0, 1, 2])

    def explain(model, inputs, targets, **kwargs):
        return gradient_reference(model, inputs, targets)

    results = quantus.evaluate(
        metrics={"gap": ExplanationGap(disable_warnings=True)},
        xai_methods={"Gradient": explain},
        model=cnn,
        x_batch=x,
        y_batch=y,
        agg_func=np.mean,
        explain_func_kwargs={},
        progress=False,
    )
    assert results["Gradient"]["gap"] == pytest.approx(0.0, abs=0)
