"""Spectral complexity (Mehrpanah et al., 2025): synthetic cases, a slow reference, Quantus use,
digits CNN."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from captum.attr import Saliency
from scipy import ndimage, stats

from captum_ext.noise.adaptgrad import AdaptGrad, SeededNoiseTunnel
from quantus_metrics import SpectralComplexity
from quantus_metrics.spectral import radial_spectrum, rank_normalise, spectral_complexity


def _white_noise(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, size, size))


def _blob(size: int = 32, width: float = 4.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.exp(-(yy**2 + xx**2) / (2 * width**2))[None, None]


def _slow_expected_frequency(image: np.ndarray, n_bins: int) -> tuple[float, float]:
    """Reference written from the definition with explicit loops (no shared code)."""
    height, width = image.shape
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    radii = {}
    for i in range(height):
        for j in range(width):
            fy = i / height if i < (height + 1) // 2 else i / height - 1
            fx = j / width if j < (width + 1) // 2 else j / width - 1
            radii[i, j] = (fy**2 + fx**2) ** 0.5
    r_max = max(radii.values())
    sums, counts, freq_sums = [0.0] * n_bins, [0] * n_bins, [0.0] * n_bins
    for (i, j), r in radii.items():
        k = min(int(r / r_max * n_bins), n_bins - 1)
        sums[k] += power[i, j]
        counts[k] += 1
        freq_sums[k] += r / r_max
    rings = [(freq_sums[k] / counts[k], sums[k] / counts[k]) for k in range(n_bins) if counts[k]]
    total = sum(p for _, p in rings)
    expected = sum(f * p for f, p in rings) / total
    high = sum(p for f, p in rings if f > 0.5) / total
    return expected, high


def test_matches_slow_reference_float64():
    maps = np.concatenate([_white_noise(2, 16), _blob(16)], axis=0)[:, 0]
    maps[2] += 0.1 * _white_noise(1, 16, seed=3)[0, 0]
    result = spectral_complexity(torch.from_numpy(maps), rank=False, n_bins=6)
    for index, image in enumerate(maps):
        expected, high = _slow_expected_frequency(image, 6)
        assert result.expected_frequency[index].item() == pytest.approx(expected, abs=1e-12)
        assert result.high_frequency_share[index].item() == pytest.approx(high, abs=1e-12)
    assert torch.allclose(result.power.sum(1), torch.ones(3, dtype=torch.float64))


def test_rank_normalise_matches_scipy_average_ranks():
    values = torch.tensor([[3.0, 1.0, 1.0, 7.0, 3.0, 3.0, 0.0, 5.0]], dtype=torch.float64)
    expected = (stats.rankdata(values.numpy()[0], method="average") - 1) / 7
    assert np.allclose(rank_normalise(values.view(1, 2, 4)).flatten().numpy(), expected)


def test_white_noise_high_blob_low():
    noise = spectral_complexity(torch.from_numpy(_white_noise(8)))
    blob = spectral_complexity(torch.from_numpy(_blob()))
    # flat spectrum: the ring-averaged expectation is the mean ring frequency, ≈ 0.5
    assert noise.expected_frequency.min() > 0.45
    assert noise.high_frequency_share.min() > 0.4
    assert blob.expected_frequency.item() < 0.1
    assert blob.high_frequency_share.item() < 0.01


@pytest.mark.parametrize("rank", [True, False])
def test_blurring_lowers_score_monotonically(rank):
    noise = _white_noise(1, 48, seed=5)[0, 0]
    blurred = [ndimage.gaussian_filter(noise, s, mode="wrap") for s in (0.5, 1.0, 2.0, 4.0)]
    maps = torch.from_numpy(np.stack([noise, *blurred]))
    result = spectral_complexity(maps, rank=rank)
    for score in (result.expected_frequency, result.high_frequency_share):
        assert torch.all(score[1:] < score[:-1]), score


def test_batch_equals_per_sample():
    maps = torch.from_numpy(np.concatenate([_white_noise(3, 24), _blob(24)], axis=0)).repeat(
        1, 3, 1, 1
    )
    batch = spectral_complexity(maps, reduce="abs_sum")
    for index in range(len(maps)):
        single = spectral_complexity(maps[index : index + 1], reduce="abs_sum")
        assert torch.allclose(single.power, batch.power[index : index + 1])
        assert torch.allclose(single.expected_frequency, batch.expected_frequency[index])


def test_radial_spectrum_of_a_cosine_peaks_at_its_frequency():
    size, cycles = 32, 6
    xx = torch.arange(size, dtype=torch.float64)
    wave = torch.cos(2 * torch.pi * cycles * xx / size).expand(size, size)[None]
    freqs, power = radial_spectrum(wave, n_bins=16)
    peak = freqs[power[0].argmax()].item()
    assert peak == pytest.approx((cycles / size) / (0.5 * 2**0.5), abs=1 / 16)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="image explanations"):
        spectral_complexity(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="smaller than the FFT needs"):
        spectral_complexity(torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN or Inf"):
        spectral_complexity(torch.full((1, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="cutoff"):
        spectral_complexity(torch.randn(1, 1, 16, 16), cutoff=1.5)
    with pytest.raises(ValueError, match="score"):
        SpectralComplexity(score="sharpness")


def test_constant_map_warns_and_gives_nan():
    with pytest.warns(RuntimeWarning, match="constant"):
        result = spectral_complexity(torch.ones(1, 1, 16, 16), rank=False)
    assert torch.isnan(result.expected_frequency).all()


def test_quantus_evaluate_and_call():
    x = np.random.default_rng(1).uniform(size=(4, 1, 16, 16)).astype(np.float32)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten())
    model = torch.nn.Sequential(*model, torch.nn.Linear(512, 3)).eval()

    def explain(model, inputs, targets, **kwargs):
        x = torch.as_tensor(inputs).requires_grad_(True)
        return Saliency(model).attribute(x, target=torch.as_tensor(targets), abs=False).numpy()

    metric = SpectralComplexity(disable_warnings=True)
    y = np.zeros(4, dtype=int)
    results = quantus.evaluate(
        metrics={"spectral": metric},
        xai_methods={"Gradient": explain},
        model=model,
        x_batch=x,
        y_batch=y,
        agg_func=np.mean,
        explain_func_kwargs={},
        progress=False,
    )
    direct = metric(model=model, x_batch=x, y_batch=y, explain_func=explain)
    assert results["Gradient"]["spectral"] == pytest.approx(np.mean(direct))
    assert len(metric.spectra) == 1 and metric.spectra[0].power.shape[0] == 4


@pytest.mark.slow
def test_smoothing_lowers_spectral_score_on_trained_cnn(trained_cnn, digits_test):
    images, labels = digits_test.tensors()
    x, y = images[:8], labels[:8]
    model = trained_cnn.model.eval()
    saliency = Saliency(model)
    gradient = saliency.attribute(x, target=y, abs=False)
    smooth = SeededNoiseTunnel(saliency).attribute(
        x, nt_type="smoothgrad", nt_samples=16, stdevs=0.2, target=y, seed=0
    )
    adapt = AdaptGrad(saliency, bounds=(0.0, 1.0)).attribute(x, nt_samples=16, target=y, seed=0)
    scores = {
        name: spectral_complexity(maps).expected_frequency.mean().item()
        for name, maps in (("gradient", gradient), ("smoothgrad", smooth), ("adaptgrad", adapt))
    }
    assert scores["smoothgrad"] < scores["gradient"], scores
    assert scores["adaptgrad"] < scores["gradient"], scores
