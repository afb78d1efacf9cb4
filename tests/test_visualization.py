"""Public figure helpers, bounds helpers, reprs and the uniform ``plot()``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from captum.attr import visualization as viz
from matplotlib.figure import Figure
from torch import nn

from captum_ext import data, visualization
from captum_ext.context_aware import pair_normalize
from captum_ext.lrp import EpsilonGammaBox, EpsilonPlus, GammaRule, RuleSet
from quantus_metrics import (
    CSC,
    ConvergenceConstants,
    InherentNoise,
    ModelRandomisationSSIM,
    RandomLogitSSIM,
    SpectralComplexity,
    explain_func_from,
)

GEN = torch.Generator().manual_seed(0)


def test_reduce_channels_keeps_the_channel_axis_and_matches_numpy():
    a = torch.randn(3, 4, 5, 6, generator=GEN, dtype=torch.float64)
    x = a.numpy()
    expected = {
        "sum": x.sum(1),
        "abs_sum": np.abs(x).sum(1),
        "max_abs": np.abs(x).max(1),
        "l2": np.sqrt((x**2).sum(1)),
    }
    for name, oracle in expected.items():
        reduced = visualization.reduce_channels(a, name)
        assert reduced.shape == (3, 1, 5, 6)
        np.testing.assert_allclose(reduced[:, 0].numpy(), oracle, rtol=1e-12)
    assert torch.equal(visualization.reduce_channels(a, "none"), a)
    np.testing.assert_array_equal(visualization.to_hwc(a), np.transpose(x, (0, 2, 3, 1)))
    np.testing.assert_array_equal(visualization.to_hwc(a[0]), np.transpose(x, (0, 2, 3, 1))[:1])
    with pytest.raises(ValueError, match="reduction"):
        visualization.reduce_channels(a, "mean")
    with pytest.raises(ValueError, match="image-shaped"):
        visualization.reduce_channels(torch.zeros(2, 3, 4, 5, 6), "sum")


def test_display_image_uses_the_given_bounds():
    low, high = data.imagenet_bounds(torch.float64)
    pixels = torch.rand(2, 3, 4, 4, generator=GEN, dtype=torch.float64)
    shown = visualization.display_image(data.normalize(pixels), (low, high))
    np.testing.assert_allclose(shown, pixels.permute(0, 2, 3, 1).numpy(), atol=1e-12)


def test_heatmap_grid_draws_what_captum_draws_from_a_manual_permute(tmp_path):
    images = torch.rand(2, 3, 6, 6, generator=GEN)
    maps = {
        "a": torch.randn(2, 3, 6, 6, generator=GEN).requires_grad_(),
        "b": torch.randn(2, 3, 6, 6, generator=GEN),
    }
    path = tmp_path / "grid.png"
    figure = visualization.heatmap_grid(maps, images, sign="all", path=path, row_labels=["x", "y"])
    assert path.stat().st_size > 0
    axes = np.asarray(figure.axes).reshape(2, 3)
    for row in range(2):
        for col, name in enumerate(maps, start=1):
            # What a Captum user writes by hand: permute one sample to HWC and call Captum.
            by_hand = maps[name][row].detach().permute(1, 2, 0).numpy()
            _, ax = viz.visualize_image_attr(by_hand, sign="all", use_pyplot=False)
            np.testing.assert_allclose(
                axes[row, col].images[0].get_array(), ax.images[0].get_array(), rtol=1e-6
            )
    # The input column shows the image itself, min-max scaled.
    shown = axes[1, 0].images[0].get_array()
    np.testing.assert_allclose(shown, visualization.display_image(images)[1], rtol=1e-6)
    with pytest.raises(ValueError, match="batch or image size"):
        visualization.heatmap_grid({"a": maps["a"], "c": maps["b"][:1]})
    fig, ax = visualization.visualize_image_attr(
        maps["a"][0], images[0], method="blended_heat_map", sign="all"
    )
    assert isinstance(fig, Figure) and ax.images


def test_pair_normalize_keeps_the_channel_axis():
    a = torch.randn(2, 3, 5, 5, generator=GEN, dtype=torch.float64)
    out = pair_normalize(a)
    assert out.shape == (2, 1, 5, 5)
    summed = a.abs().sum(1).flatten(1)
    top = torch.quantile(summed, 0.99, dim=1, keepdim=True)
    low = summed.amin(1, keepdim=True)
    expected = ((summed - low) / (top - low)).clamp(0, 1).view(2, 1, 5, 5)
    torch.testing.assert_close(out, expected)
    visualization.heatmap_grid({"CAFO": out})  # goes straight into the figure helpers


def test_channel_bounds_and_normalisation():
    low, high = data.imagenet_bounds(torch.float64)
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(low.numpy(), -mean / std)
    np.testing.assert_allclose(high.numpy(), (1 - mean) / std)
    x = torch.rand(2, 3, 4, 4, generator=GEN, dtype=torch.float64)
    torch.testing.assert_close(data.denormalize(data.normalize(x)), x)
    lo, hi = data.channel_bounds(0.5, 0.25, pixel_range=(0.0, 255.0), dtype=torch.float64)
    assert (float(lo), float(hi)) == (-2.0, 1018.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        data.channel_bounds([0.5], [0.0])
    with pytest.raises(ValueError, match="channels"):
        data.normalize(torch.zeros(1, 1, 2, 2))
    from captum_ext import zoo

    assert zoo.imagenet_bounds is data.imagenet_bounds


def test_readable_reprs():
    box = EpsilonGammaBox(low=-1.0, high=2.0, gamma=0.5)
    expected = "EpsilonGammaBox(low=-1, high=2, epsilon=1e-06, gamma=0.5, stabilizer=1e-06)"
    assert repr(box) == expected
    assert repr(EpsilonPlus()) == "EpsilonPlus(epsilon=1e-06, stabilizer=1e-06)"
    custom = RuleSet(layer_map=[(nn.Conv2d, GammaRule(0.5))])
    assert "layer_map=[(Conv2d, GammaRule(gamma=0.5" in repr(custom)
    from captum_ext import LRP, AdaptGrad, RectGrad

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    assert repr(RectGrad(model, percentile=90.0)) == (
        "RectGrad(model=Sequential, percentile=90, multiply_by_inputs=True)"
    )
    assert repr(LRP(model, rule_set=EpsilonPlus())).startswith(
        "LRP(model=Sequential, rule_set=EpsilonPlus("
    )
    assert repr(AdaptGrad(Saliency(model), bounds=(0.0, 1.0))).startswith(
        "AdaptGrad(attribution_method=Saliency(Sequential), bounds=(0, 1), confidence=0.95"
    )


def test_py_typed_ships():
    from importlib.resources import files

    for package in ("captum_ext", "quantus_metrics"):
        assert files(package).joinpath("py.typed").is_file()


def _tiny() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 64, 3)
        )
    x = np.random.default_rng(0).uniform(0.05, 0.95, size=(3, 1, 8, 8))
    return model.double().eval(), x, np.arange(3) % 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: CSC(n_vectors=3),
        lambda: ModelRandomisationSSIM(n_resamples=100),
        lambda: RandomLogitSSIM(n_resamples=100),
        lambda: InherentNoise(n_draws=4),
        lambda: SpectralComplexity(),
        lambda: ConvergenceConstants(sigma=0.1, n_grid=(1, 2), n_reference=4, norm_iterations=2),
    ],
    ids=["CSC", "MRSSIM", "RLSSIM", "InherentNoise", "Spectral", "Convergence"],
)
def test_every_metric_plots_the_same_way(make, tmp_path):
    model, x, y = _tiny()
    metric = make()
    explain = explain_func_from(Saliency, abs=False)
    a = explain(model, x, y)
    with pytest.raises(ValueError, match="call the metric first|No per-sample|Nothing"):
        metric.plot()
    metric(model=model, x_batch=x, y_batch=y, a_batch=a, explain_func=explain)
    path = tmp_path / "plot.png"
    ax = metric.plot(label="Saliency", path_to_save=path)
    assert path.stat().st_size > 0
    assert ax.get_legend() is not None
    drawn = [line.get_ydata() for line in ax.get_lines()] + [p.get_height() for p in ax.patches]
    assert any(np.size(v) and np.all(np.isfinite(v)) for v in drawn)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.slow
def test_quick_start_example_saves_its_figure_and_prints_a_table(tmp_path, trained_cnn, capsys):
    from examples.quick_start import main

    summary = main(out=tmp_path)
    assert (tmp_path / "quick_start.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "rand. SSIM" in printed and "AdaptGrad" in printed
    # Noise-free methods have no inherent noise; AdaptGrad's draws do leave [0, 1] sometimes.
    assert summary["Saliency"]["inherent noise"] == 0.0
    assert summary["LRP-ε+"]["inherent noise"] == 0.0
    assert 0.0 < summary["AdaptGrad"]["inherent noise"] < 0.05
