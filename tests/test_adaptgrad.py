"""AdaptGrad (Zhou et al., 2025): σ, inherent noise, NoiseTunnel contract, reproducibility,
errors."""

from __future__ import annotations

import importlib
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from scipy import special, stats
from torch import nn

from captum_ext import AdaptGrad
from captum_ext.core.guard import ModelSnapshot
from captum_ext.noise.adaptgrad import (
    InherentNoise,
    SeededNoiseTunnel,
    inherent_noise,
    kappa_value,
    noise_std,
    smoothgrad_std,
)

# Captum warns whenever it switches on requires_grad for an input; that is expected here
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor.*did not already require gradients")

FIG3 = (-2.12, 2.64)


def _grid(low: float, high: float, n: int = 400_000) -> torch.Tensor:
    """Midpoints of n equal cells: the midpoint rule for E_{x ~ U[low, high]}."""
    step = (high - low) / n
    return (low + step * (torch.arange(n, dtype=torch.float64) + 0.5)).unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# σ and κ
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_kappa_matches_scipy(c):
    assert kappa_value(c, "code") == pytest.approx(math.sqrt(2) * special.erfinv(c), rel=1e-12)
    assert kappa_value(c, "paper") == pytest.approx(
        math.sqrt(2) * special.erfinv((1 + c) / 2), rel=1e-12
    )
    # the code's κ is the two-sided normal quantile: P(|ε| ≤ κσ) = c
    assert 2 * stats.norm.cdf(kappa_value(c, "code")) - 1 == pytest.approx(c, abs=1e-12)


def test_noise_std_matches_direct_scipy_formula():
    gen = torch.Generator().manual_seed(0)
    low = torch.tensor([-2.0, -1.0, 0.0], dtype=torch.float64)
    high = torch.tensor([2.5, 1.0, 3.0], dtype=torch.float64)
    x = low.view(1, 3, 1, 1) + torch.rand(4, 3, 5, 5, generator=gen, dtype=torch.float64) * (
        high - low
    ).view(1, 3, 1, 1)
    xn, lo, hi = x.numpy(), low.numpy()[None, :, None, None], high.numpy()[None, :, None, None]
    for c, kappa, level in [(0.95, "code", 0.95), (0.9, "paper", 0.95)]:
        expected = np.minimum(np.abs(xn - lo), np.abs(xn - hi)) / (
            np.sqrt(2) * special.erfinv(level)
        )
        got = noise_std(x, (low, high), confidence=c, kappa=kappa)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_bounds_forms_agree():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    scalar = noise_std(x, (0.0, 1.0))
    per_channel = noise_std(x, (torch.zeros(3), torch.ones(3)))
    per_feature = noise_std(x, (torch.zeros(3, 4, 4), torch.ones(3, 4, 4)))
    full = noise_std(x, (torch.zeros_like(x), torch.ones_like(x)))
    broadcast = noise_std(x, (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)))
    for other in (per_channel, per_feature, full, broadcast):
        torch.testing.assert_close(other, scalar, rtol=0, atol=0)
    assert scalar.dtype == torch.float64 and scalar.shape == x.shape


def test_feature_on_a_bound_gets_zero_sigma():
    x = torch.tensor([[0.0, 1.0, 0.5, 0.25]], dtype=torch.float64)
    sigma = noise_std(x, (0.0, 1.0))
    assert sigma[0, 0] == 0 and sigma[0, 1] == 0
    assert sigma[0, 2] == pytest.approx(0.5 / kappa_value(0.95))
    noise = inherent_noise(x, sigma, (0.0, 1.0))
    assert noise.per_feature[0, 0] == 0 and noise.per_feature[0, 1] == 0


def test_smoothgrad_std():
    assert smoothgrad_std((-2.12, 2.64)) == pytest.approx(0.2 * 4.76)
    assert smoothgrad_std((0, 1), alpha=0.15) == pytest.approx(0.15)
    low, high = torch.tensor([0.0, -1.0]), torch.tensor([1.0, 3.0])
    torch.testing.assert_close(smoothgrad_std((low, high)), torch.tensor([0.2, 0.8]))
    with pytest.raises(ValueError, match="alpha"):
        smoothgrad_std((0, 1), alpha=0)
    with pytest.raises(ValueError, match="x_min must be < x_max"):
        smoothgrad_std((1, 1))


# ---------------------------------------------------------------------------------------------
# inherent noise (eq. 9/10)
# ---------------------------------------------------------------------------------------------


def test_inherent_noise_matches_scipy_closed_form():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 50, generator=gen, dtype=torch.float64) * 4.76 - 2.12
    sigma = 0.1 + torch.rand(3, 50, generator=gen, dtype=torch.float64)
    got = inherent_noise(x, sigma, FIG3)
    assert isinstance(got, InherentNoise)
    xn, sn = x.numpy(), sigma.numpy()
    expected = 1 - (stats.norm.cdf((FIG3[1] - xn) / sn) - stats.norm.cdf((FIG3[0] - xn) / sn))
    np.testing.assert_allclose(got.per_feature.numpy(), expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.per_sample.numpy(), expected.mean(1), rtol=1e-10)
    assert got.mean.item() == pytest.approx(expected.mean(), rel=1e-10)
    # eq. 10 written with erf, as printed in the paper (SmoothGrad, α = 0.2)
    sg = 0.2 * (FIG3[1] - FIG3[0])
    eq10 = (
        1
        - 0.5 * special.erf((FIG3[1] - xn) / (np.sqrt(2) * sg))
        + 0.5 * special.erf((FIG3[0] - xn) / (np.sqrt(2) * sg))
    )
    np.testing.assert_allclose(
        inherent_noise(x, smoothgrad_std(FIG3), FIG3).per_feature.numpy(), eq10, atol=1e-14
    )


@pytest.mark.parametrize("which", ["smoothgrad", "adaptgrad"])
def test_inherent_noise_matches_monte_carlo(which):
    gen = torch.Generator().manual_seed(3)
    low, high = torch.tensor([0.0, -2.0]), torch.tensor([1.0, 2.0])
    x = (
        low.view(1, 2, 1)
        + torch.rand(4, 2, 8, generator=gen, dtype=torch.float64) * (high - low).view(1, 2, 1)
    ).double()
    bounds = (low.double(), high.double())
    std = smoothgrad_std(bounds).view(1, 2, 1) if which == "smoothgrad" else noise_std(x, bounds)
    n = 100_000
    samples = x.unsqueeze(0) + torch.randn((n, *x.shape), generator=gen, dtype=torch.float64) * std
    lo, hi = bounds[0].view(1, 1, 2, 1), bounds[1].view(1, 1, 2, 1)
    empirical = ((samples < lo) | (samples > hi)).double().mean(0)
    analytic = inherent_noise(x, std, bounds).per_feature
    # per-feature binomial standard error, 5 σ band
    se = torch.sqrt(analytic * (1 - analytic) / n).clamp_min(1e-4)
    assert ((empirical - analytic).abs() <= 5 * se).all()
    overall_se = math.sqrt(analytic.mean().item() / (n * x.numel()))
    assert abs(empirical.mean().item() - analytic.mean().item()) < 5 * overall_se + 1e-6


def test_figure3_oracle():
    """Zhou et al. (2025), Fig. 3: x uniform on [−2.12, 2.64]; the paper prints 0.1596, 0.01424."""
    x = _grid(*FIG3)
    sg = inherent_noise(x, smoothgrad_std(FIG3, 0.2), FIG3).mean.item()
    ag_code = inherent_noise(x, noise_std(x, FIG3, 0.95, "code"), FIG3).mean.item()
    ag_paper = inherent_noise(x, noise_std(x, FIG3, 0.95, "paper"), FIG3).mean.item()
    assert sg == pytest.approx(0.159576, abs=2e-6)
    assert ag_code == pytest.approx(0.027067, abs=2e-6)
    assert ag_paper == pytest.approx(0.013353, abs=2e-6)
    assert round(sg, 4) == 0.1596  # the paper's printed SmoothGrad value


def test_inherent_noise_zero_sigma_and_outside_points():
    x = torch.tensor([[-0.5, 0.0, 0.5, 1.0, 1.5]], dtype=torch.float64)
    got = inherent_noise(x, 0.0, (0.0, 1.0)).per_feature
    torch.testing.assert_close(got, torch.tensor([[1.0, 0, 0, 0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="std must be ≥ 0"):
        inherent_noise(x, -1.0, (0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# AdaptGrad as a NoiseTunnel
# ---------------------------------------------------------------------------------------------


class TwoInputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.head(torch.tanh(self.a(x1) + self.b(x2))) * scale


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _tiny_cnn() -> nn.Module:
    """A float32 conv net on 1×12×12 inputs (cheap enough for many NoiseTunnel calls)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 5)
        ).eval()


@pytest.fixture
def tiny(dtype) -> nn.Module:
    return _tiny_cnn().to(dtype)


def _captum_nt(method, inputs, seed, **kwargs):
    """Captum's NoiseTunnel with the global RNG seeded inside a fork (restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NoiseTunnel(method).attribute(inputs, **kwargs)


@pytest.mark.parametrize(
    "make, extra",
    [
        (Saliency, {"abs": False}),
        (InputXGradient, {}),
        (IntegratedGradients, {"baselines": 0.0, "n_steps": 8}),  # A-IG(B)
        (IntegratedGradients, {"baselines": 1.0, "n_steps": 8}),  # A-IG(W)
    ],
)
@pytest.mark.parametrize("batch", [None, 3])
def test_constant_sigma_equals_captum_noisetunnel(make, extra, batch):
    """Per-feature bounds x ± d give σ_i = d/κ everywhere: AdaptGrad == NoiseTunnel(stdevs=d/κ).

    Captum draws its noise in float32 whatever the input dtype, so the draws coincide in f32.
    """
    model = _tiny_cnn()
    x = _rand(2, 1, 12, 12, seed=4, dtype=torch.float32)
    d = 0.25
    ag = AdaptGrad(make(model), bounds=(x - d, x + d))
    kwargs = dict(target=2, nt_samples=7, nt_samples_batch_size=batch, **extra)
    ours = ag.attribute(x, seed=11, **kwargs)
    sigma = d / ag.kappa_value
    theirs = _captum_nt(make(model), x, 11, stdevs=sigma, **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_nt_types_against_direct_computation(mlp, nt_type):
    """Redo eq. 11 by hand: same draws (Captum's repeat_interleave order), per-sample gradients."""
    dtype = next(mlp.parameters()).dtype
    x, n = _rand(3, 64, seed=5, dtype=dtype), 6
    bounds = (torch.zeros(64, dtype=dtype), torch.ones(64, dtype=dtype))
    ours = AdaptGrad(Saliency(mlp), bounds).attribute(
        x, nt_type=nt_type, nt_samples=n, target=1, abs=False, seed=3
    )
    sigma = torch.minimum(x, 1 - x) / (math.sqrt(2) * special.erfinv(0.95))
    gen = torch.Generator().manual_seed(3)
    eps = torch.randn((3 * n, 64), generator=gen, dtype=dtype)
    noisy = (x.repeat_interleave(n, 0) + eps * sigma.repeat_interleave(n, 0)).requires_grad_()
    grads = torch.autograd.grad(mlp(noisy)[:, 1].sum(), noisy)[0].view(3, n, 64)
    expected = {
        "smoothgrad": grads.mean(1),
        "smoothgrad_sq": (grads**2).mean(1),
        "vargrad": grads.var(1, unbiased=False),
    }[nt_type]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours, expected, rtol=tol, atol=tol)
    assert ours.dtype == dtype


def test_batch_size_remainder_matches_unbatched_sum(mlp):
    """nt_samples = 7 in batches of 3 (3 + 3 + 1): same draws as three direct partitions."""
    dtype = next(mlp.parameters()).dtype
    x = _rand(2, 64, seed=6, dtype=dtype)
    ours = AdaptGrad(Saliency(mlp), (0.0, 1.0)).attribute(
        x, nt_samples=7, nt_samples_batch_size=3, target=0, abs=False, seed=9
    )
    sigma = torch.minimum(x, 1 - x) / kappa_value(0.95)
    gen = torch.Generator().manual_seed(9)
    total = torch.zeros_like(x)
    for k in (3, 3, 1):
        noisy = x.repeat_interleave(k, 0)
        noisy = (
            noisy
            + torch.randn(noisy.shape, generator=gen, dtype=dtype) * sigma.repeat_interleave(k, 0)
        ).requires_grad_()
        grads = torch.autograd.grad(mlp(noisy)[:, 0].sum(), noisy)[0]
        total += grads.view(2, k, 64).sum(1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours, total / 7, rtol=tol, atol=tol)


def test_zero_sigma_equals_wrapped_method(tiny):
    """Binary inputs sit on the bounds of [0, 1]: σ = 0 everywhere, so AG == the plain method."""
    dtype = next(tiny.parameters()).dtype
    x = (_rand(2, 1, 12, 12, seed=7, dtype=dtype) > 0.5).to(dtype)
    for method, extra in [(Saliency(tiny), {"abs": False}), (InputXGradient(tiny), {})]:
        plain = method.attribute(x, target=3, **extra)
        smoothed = AdaptGrad(method, (0.0, 1.0)).attribute(
            x, nt_samples=4, target=3, seed=0, **extra
        )
        torch.testing.assert_close(
            smoothed,
            plain,
            rtol=1e-12 if dtype == torch.float64 else 1e-6,
            atol=1e-12 if dtype == torch.float64 else 1e-6,
        )
        var = AdaptGrad(method, (0.0, 1.0)).attribute(
            x, nt_type="vargrad", nt_samples=4, target=3, seed=0, **extra
        )
        assert var.abs().max() < (1e-12 if dtype == torch.float64 else 1e-6)


def test_tuple_inputs_bounds_per_input_and_forward_args():
    """Tuple inputs with one bounds pair each, additional_forward_args, against NoiseTunnel."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TwoInputNet().eval()
    x1, x2 = _rand(3, 6, seed=1, dtype=torch.float32), _rand(3, 4, seed=2, dtype=torch.float32)
    d1, d2 = 0.2, 0.1
    ag = AdaptGrad(Saliency(model), bounds=[(x1 - d1, x1 + d1), (x2 - d2, x2 + d2)])
    kwargs = dict(target=1, nt_samples=5, nt_samples_batch_size=2, abs=False)
    ours = ag.attribute((x1, x2), additional_forward_args=(2.0,), seed=4, **kwargs)
    k = ag.kappa_value
    theirs = _captum_nt(
        Saliency(model),
        (x1, x2),
        4,
        stdevs=(d1 / k, d2 / k),
        additional_forward_args=(2.0,),
        **kwargs,
    )
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # a single pair is shared by every input tensor
    shared = AdaptGrad(Saliency(model), bounds=(0.0, 1.0)).attribute((x1, x2), seed=0, **kwargs)
    assert shared[0].shape == x1.shape and shared[1].shape == x2.shape
    with pytest.raises(ValueError, match="one pair per input"):
        AdaptGrad(Saliency(model), bounds=[(0, 1)] * 3).attribute((x1, x2), **kwargs)


def test_seeded_tunnel_float_sigma_is_captum_noisetunnel():
    model = _tiny_cnn()
    x = _rand(2, 1, 12, 12, seed=8, dtype=torch.float32)
    kwargs = dict(target=0, nt_samples=5, stdevs=0.3, nt_samples_batch_size=2)
    ours = SeededNoiseTunnel(Saliency(model)).attribute(x, seed=21, **kwargs)
    theirs = _captum_nt(Saliency(model), x, 21, **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# reproducibility, safety, errors
# ---------------------------------------------------------------------------------------------


def test_seed_generator_and_global_rng(tiny):
    x = _rand(2, 1, 12, 12, seed=9, dtype=next(tiny.parameters()).dtype)
    ag = AdaptGrad(Saliency(tiny), (0.0, 1.0))
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    a = ag.attribute(x, target=1, nt_samples=3, seed=5)
    b = ag.attribute(x, target=1, nt_samples=3, generator=torch.Generator().manual_seed(5))
    c = ag.attribute(x, target=1, nt_samples=3, seed=6)
    ag.attribute(x, target=1, nt_samples=3)  # fresh private stream
    baselines = _rand(5, 1, 12, 12, seed=10, dtype=x.dtype)
    ig = AdaptGrad(IntegratedGradients(tiny), (0.0, 1.0))
    kw = dict(target=1, nt_samples=3, baselines=baselines, draw_baseline_from_distrib=True)
    d1 = ig.attribute(x, seed=1, n_steps=4, **kw)
    d2 = ig.attribute(x, seed=1, n_steps=4, **kw)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(d1, d2)
    with pytest.raises(ValueError, match="either generator= or seed="):
        ag.attribute(x, target=1, seed=1, generator=torch.Generator())


def test_model_and_inputs_untouched_also_on_failure(tiny):
    x = _rand(2, 1, 12, 12, seed=11, dtype=next(tiny.parameters()).dtype)
    x_before = x.clone()
    before = ModelSnapshot.of(tiny)
    ag = AdaptGrad(Saliency(tiny), (0.0, 1.0))
    ag.attribute(x, target=1, nt_samples=3, seed=0)
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        ag.attribute(x, target=99, nt_samples=3, seed=0)
    assert before.diff(ModelSnapshot.of(tiny)) == []
    assert torch.equal(x, x_before) and not x.requires_grad
    assert ag._sigmas is None and ag._generator is None  # per-call state cleared


def test_bad_input_errors(tiny):
    dtype = next(tiny.parameters()).dtype
    x = _rand(2, 1, 12, 12, seed=12, dtype=dtype)
    sal = Saliency(tiny)
    for c in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="confidence"):
            AdaptGrad(sal, (0.0, 1.0), confidence=c)
    with pytest.raises(ValueError, match="kappa"):
        AdaptGrad(sal, (0.0, 1.0), kappa="eq13")
    with pytest.raises(ValueError, match="x_min must be < x_max"):
        AdaptGrad(sal, (1.0, 1.0)).attribute(x, target=0)
    with pytest.raises(ValueError, match="does not fit"):
        AdaptGrad(sal, (torch.zeros(5), torch.ones(5))).attribute(x, target=0)
    bad = x.clone()
    bad[1, 0, 3, 4] = 1.7
    bad[0, 0, 0, 0] = -0.2
    with pytest.raises(ValueError, match=r"2 of 288 value\(s\).*inputs\[1, 0, 3, 4\] = 1.7"):
        AdaptGrad(sal, (0.0, 1.0)).attribute(bad, target=0)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        AdaptGrad(sal, (0.0, 1.0)).attribute(nan, target=0)
    with pytest.raises(TypeError, match="stdevs"):
        AdaptGrad(sal, (0.0, 1.0)).attribute(x, target=0, stdevs=0.1)
    with pytest.raises(ValueError, match="nt_samples"):
        AdaptGrad(sal, (0.0, 1.0)).attribute(x, target=0, nt_samples=0)
    with pytest.raises(TypeError, match="Attribution"):
        AdaptGrad(tiny, (0.0, 1.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating point"):
        noise_std(torch.zeros(2, 3, dtype=torch.long), (0, 1))
    high = torch.ones(1, 12, 12, dtype=dtype)
    high[0, 0, :2] = 0.0  # two features with x_min = x_max = 0
    with pytest.raises(ValueError, match=r"2 value\(s\) have x_min ≥ x_max"):
        noise_std(x, (0.0, high))


def test_clamp_projects_inputs(tiny):
    dtype = next(tiny.parameters()).dtype
    x = _rand(2, 1, 12, 12, seed=13, dtype=dtype) * 1.4 - 0.2
    ag = AdaptGrad(Saliency(tiny), (0.0, 1.0), clamp=True)
    ours = ag.attribute(x, target=0, nt_samples=3, seed=2)
    projected = AdaptGrad(Saliency(tiny), (0.0, 1.0)).attribute(
        x.clamp(0, 1), target=0, nt_samples=3, seed=2
    )
    torch.testing.assert_close(ours, projected, rtol=0, atol=0)
    torch.testing.assert_close(ag.noise_std(x), noise_std(x.clamp(0, 1), (0.0, 1.0)))


@pytest.mark.parametrize(
    "module, name", [("captum_ext.lrp", "LRP"), ("captum_ext.rectgrad", "RectGrad")]
)
def test_wraps_other_captum_ext_methods(module, name):
    """σ = 0 (binary inputs) makes AdaptGrad(method) the method itself; σ > 0 stays finite."""
    cls = getattr(importlib.import_module(module), name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).double().eval()
    x = (_rand(3, 12, seed=14) > 0.5).double()
    plain = cls(model).attribute(x, target=1)
    smoothed = AdaptGrad(cls(model), (0.0, 1.0)).attribute(x, target=1, nt_samples=3, seed=0)
    torch.testing.assert_close(smoothed, plain, rtol=1e-10, atol=1e-12)
    inner = _rand(3, 12, seed=15)
    out = AdaptGrad(cls(model), (0.0, 1.0)).attribute(inner, target=1, nt_samples=3, seed=0)
    assert out.shape == inner.shape and torch.isfinite(out).all()


def test_rounding_slack_at_normalised_bounds():
    """Normalising [0, 1] images lands a few ulps past the bounds: σ = 0 there, no error."""
    low, high = torch.tensor([-2.0357141]), torch.tensor([2.4285715])
    x = torch.stack([low - 2.4e-7, high + 2.4e-7, torch.tensor([0.1])], 0).view(1, 1, 3, 1)
    sigma = noise_std(x, (low, high))
    assert sigma[0, 0, 0, 0] == 0 and sigma[0, 0, 1, 0] == 0 and sigma[0, 0, 2, 0] > 0
    with pytest.raises(ValueError, match="outside the bounds"):
        noise_std(x + 1e-3, (low, high))


@pytest.mark.slow
def test_example_runs(capsys):
    runpy.run_path(
        str(Path(__file__).parents[1] / "examples" / "adaptgrad_vs_noisetunnel.py"),
        run_name="__main__",
    )
    rows = {
        line.split()[0]: [float(v) for v in line.split()[1:]]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("SmoothGrad", "AdaptGrad"))
    }
    (sg_a, sg_e, _), (ag_a, ag_e, _) = rows["SmoothGrad"], rows["AdaptGrad"]
    assert ag_a < 0.05 < sg_a  # AdaptGrad's inherent noise stays below 1 - c
    assert abs(sg_e - sg_a) < 0.01 and abs(ag_e - ag_a) < 0.01  # analytic == empirical


@pytest.mark.slow
def test_report_section_quick(tmp_path, trained_cnn, digits_test):
    from captum_ext_report.context import ReportContext
    from captum_ext_report.sections import adaptgrad as section

    ctx = ReportContext(
        out_dir=tmp_path,
        model=trained_cnn.model,
        images=digits_test.images[:3],
        labels=digits_test.labels[:3],
        bounds=digits_test.bounds,
        quick=True,
        progress=False,
    )
    result = section.run(ctx)
    assert result.key == "adaptgrad" and result.verdict is not None
    assert result.verdict.decide().outcome in {"confirmed", "partly confirmed", "not confirmed"}
    assert result.numbers["figure3_oracle_max_abs_error"] < 1e-5
    for figure in result.figures:
        assert (tmp_path / figure).stat().st_size > 1000
