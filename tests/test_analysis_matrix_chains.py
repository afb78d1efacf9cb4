"""Appendix B and Figure 3 analyses (float64, seeded) against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from torch import nn

from captum_ext.analysis import (
    birkhoff_bound,
    decay_rate,
    hilbert_diameter,
    pattern_spectra,
    predicted_rate,
    simulate_chains,
    singular_ratio,
)
from captum_ext.lrp import LRP, Alpha1Beta0
from captum_ext.zoo import TinyResNet
from quantus_metrics.csc_analysis import abs_cos_histograms, csc_with_and_without_skips


@pytest.fixture(scope="module")
def simulation():
    return simulate_chains(width=32, depth=20, n_trials=20, seed=0, low=0.1)


def test_zplus_chain_collapses_exponentially_gradient_chain_does_not(simulation):
    zplus, gradient = simulation.median("zplus"), simulation.median("gradient")
    rate, r2 = decay_rate(zplus)
    # Theorem 1: rank 1 in the limit; Appendix B: exponentially fast
    assert zplus[9] < 1e-3 and zplus[-1] < 1e-8
    assert rate < 0.5 and r2 > 0.99
    assert np.all(np.diff(np.log(zplus)) < 0)  # monotone in depth (median over 20 chains)
    # the gradient's chain of the same forward passes keeps a second direction
    assert gradient.min() > 0.1 and decay_rate(gradient)[0] > 0.85


def test_decay_rates_match_closed_forms(simulation):
    positive, _ = decay_rate(simulation.median("positive"))
    gaussian, _ = decay_rate(simulation.median("gaussian"))
    assert positive == pytest.approx(predicted_rate("positive", 32, low=0.1), rel=0.25)
    assert gaussian == pytest.approx(predicted_rate("gaussian", 32), rel=0.03)


def test_birkhoff_hopf_bound_holds_at_every_depth(simulation):
    assert simulation.hilbert.shape == simulation.bounds.shape == (20, 20)
    assert np.all(simulation.hilbert <= simulation.bounds * (1 + 1e-9))
    # the cone shrinks (Figure 2) until float64 resolution
    assert np.all(np.diff(simulation.hilbert[:, :6], axis=1) < 0)


def test_small_closed_forms():
    assert hilbert_diameter(np.array([[1.0, 2.0], [1.0, 1.0]])) == pytest.approx(np.log(2.0))
    assert hilbert_diameter(np.outer([1.0, 2.0, 3.0], [1.0, 5.0])) == pytest.approx(0.0, abs=1e-12)
    assert hilbert_diameter(np.array([[1.0, 0.0], [1.0, 1.0]])) == np.inf
    assert singular_ratio(np.outer([1.0, 2.0], [3.0, 4.0])) == pytest.approx(0.0, abs=1e-15)
    assert singular_ratio(np.diag([4.0, 1.0])) == pytest.approx(0.25)
    rate, r2 = decay_rate(3.0 * 0.2 ** np.arange(1, 11))
    assert rate == pytest.approx(0.2, rel=1e-12) and r2 == pytest.approx(1.0)
    a = np.array([[1.0, 2.0], [1.0, 1.0]])
    bound = birkhoff_bound([a, a])
    assert bound[1] == pytest.approx(np.log(2.0) * np.tanh(np.log(2.0) / 4))


def test_simulation_is_seeded_and_checks_arguments():
    a = simulate_chains(width=8, depth=4, n_trials=2, seed=3)
    b = simulate_chains(width=8, depth=4, n_trials=2, seed=3)
    for kind in a.ratios:
        np.testing.assert_array_equal(a.ratios[kind], b.ratios[kind])
    with pytest.raises(ValueError, match="low"):
        simulate_chains(low=1.5)


def test_pattern_spectra_closed_forms():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.diag(torch.tensor([4.0, 1.0])))
        model[2].weight.copy_(torch.eye(2))
    patterns = {"0": torch.ones(2, 2), "2": torch.diag(torch.tensor([2.0, 1.0]))}
    spectra = pattern_spectra(patterns, model)
    assert spectra.layers == ["0", "2"]
    assert spectra.full["A"]["0"] == np.inf  # rank-1 pattern
    assert spectra.full["W"]["0"] == pytest.approx(4.0)
    assert spectra.full["W*A"]["2"] == pytest.approx(2.0)
    # T = √Σ_l V_l U_{l+1} √Σ_{l+1}: diag(4,1) then I → diag(2, 1): σ₁/σ₂ = 2
    assert spectra.inter_layer["W"]["0→2"] == pytest.approx(4.0**0.5)
    with pytest.raises(ValueError, match="does not have"):
        pattern_spectra({"9": torch.ones(2, 2)}, model)


def test_conv_slices_and_histograms():
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 1))
    patterns = {"0": torch.randn(4, 3, 3, 3), "2": torch.randn(5, 4, 1, 1)}
    spectra = pattern_spectra(patterns, conv)
    assert spectra.sliced["W"]["0"].shape == (9,) and spectra.sliced["A"]["2"].shape == (1,)
    assert "0→2" in spectra.inter_layer["W*A"]
    values = {"a": np.array([1.0, 0.995, 0.5, np.nan]), "b": np.array([0.1, 0.2])}
    hist = abs_cos_histograms(values, bins=8)
    assert hist["a"]["counts"].sum() == 3 and hist["b"]["counts"].sum() == 2
    assert hist["a"]["fraction_converged"] == pytest.approx(2 / 3)
    assert hist["a"]["median"] == pytest.approx(0.995)


def test_tiny_resnet_skips_and_csc_comparison():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TinyResNet(channels=4, blocks=2).double().eval()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    block = model.blocks[0]
    h = torch.relu(model.stem(x))
    inner = block.conv2(block.relu1(block.conv1(h)))
    torch.testing.assert_close(block(h), torch.relu(h + inner))
    block.skip = False
    torch.testing.assert_close(block(h), torch.relu(inner))
    block.skip = True
    methods = {"Gradient": Saliency, "LRP-α1β0": lambda m: LRP(m, rule_set=Alpha1Beta0())}
    result = csc_with_and_without_skips(model, x, methods, n_vectors=3)
    assert set(result) == set(methods) and set(result["Gradient"]) == {True, False}
    assert "blocks.0.conv1" in result["Gradient"][True]
    assert all(b.skip for b in model.blocks)  # restored


def test_inter_layer_ratio_equals_the_full_svd_construction():
    # Oracle: T = √Σ_l V_l U_{l+1} √Σ_{l+1} from numpy's full SVDs (float64). The fast path
    # decomposes only the smaller Gram matrix and drops zero singular values; a rank-1
    # "depthwise-like" (C, 1) layer and wide/tall layers cover both sides.
    from captum_ext.analysis.matrix_chains import _gram_eig, _ratio_1_2

    rng = np.random.default_rng(0)
    for low_shape, up_shape in (((12, 1), (5, 12)), ((12, 30), (7, 12)), ((40, 6), (9, 40))):
        low, up = rng.normal(size=low_shape), rng.normal(size=up_shape)
        u_l, s_l, _ = np.linalg.svd(low)  # left singular vectors of the lower layer
        _, s_u, vt_u = np.linalg.svd(up)  # right singular vectors of the upper layer
        full = (
            np.sqrt(s_l)[:, None]
            * (u_l[:, : len(s_l)].T @ vt_u[: len(s_u)].T)
            * np.sqrt(s_u)[None, :]
        )
        s2_l, v_l = _gram_eig(low, left=True)
        s2_u, u_u = _gram_eig(up, left=False)
        fast = np.sqrt(np.sqrt(s2_l))[:, None] * (v_l.T @ u_u) * np.sqrt(np.sqrt(s2_u))[None, :]
        np.testing.assert_allclose(
            np.linalg.svd(fast, compute_uv=False),
            np.linalg.svd(full, compute_uv=False)[: min(fast.shape)],
            rtol=1e-10,
            atol=1e-12,
        )
        assert _ratio_1_2(fast) == pytest.approx(_ratio_1_2(full), rel=1e-10)
