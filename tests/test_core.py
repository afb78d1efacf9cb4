"""The modified-backward core and the model guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LRP, Deconvolution, GuidedBackprop, IntegratedGradients, Saliency
from torch import nn

from captum_ext.core import ModelGuard, ModelSnapshot, modified_backward, supported_methods
from captum_ext.core.validation import check_finite, check_targets


def _relevance(method, model, x, grad_out):
    with modified_backward(method) as forward:
        out = forward(x)
        (rel,) = torch.autograd.grad(out, x, grad_outputs=grad_out)
    return out, rel


@pytest.fixture
def net():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)).double().eval()


def test_plain_gradient_equals_autograd(net):
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 4, dtype=torch.float64)
    _, rel = _relevance(Saliency(net), net, x, g)
    (expected,) = torch.autograd.grad(net(x), x, g)
    torch.testing.assert_close(rel, expected, rtol=0, atol=0)


@pytest.mark.parametrize("method_cls", [GuidedBackprop, Deconvolution, LRP])
def test_matches_captum_attribute(net, method_cls):
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    target = 2
    expected = method_cls(net).attribute(x, target=target)
    g = torch.zeros(3, 4, dtype=torch.float64)
    g[:, target] = 1.0
    out, rel = _relevance(method_cls(net), net, x, g)
    if method_cls is LRP:  # Captum's LRP multiplies the normalised relevance by the output
        rel = rel * out[:, target : target + 1]
    torch.testing.assert_close(rel, expected, rtol=1e-10, atol=1e-12)


def test_guided_backprop_formula(net):
    # Independent oracle: Guided BP = gradient with ReLU backward gated by (z > 0) and (grad > 0).
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 4, dtype=torch.float64)
    _, rel = _relevance(GuidedBackprop(net), net, x, g)
    w1, b1, w2 = net[0].weight, net[0].bias, net[2].weight
    z = x @ w1.T + b1
    upstream = g @ w2
    expected = ((z > 0) & (upstream > 0)) * upstream
    torch.testing.assert_close(rel, (expected @ w1).detach(), rtol=1e-12, atol=1e-12)


def test_relevance_can_be_read_at_intermediate_layers(net):
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    captured = {}
    handle = net[2].register_forward_pre_hook(lambda m, inp: captured.update(h=inp[0]))
    try:
        with modified_backward(LRP(net)) as forward:
            out = forward(x)
            g = torch.randn_like(out)
            (r_hidden,) = torch.autograd.grad(out, captured["h"], grad_outputs=g)
    finally:
        handle.remove()
    # LRP-ε (tiny ε) at the last layer: R_i = h_i Σ_j w_ij g_j / z_j
    h = captured["h"].detach()
    z = out.detach()
    expected = h * ((g / z) @ net[2].weight)
    torch.testing.assert_close(r_hidden, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method_cls", [Saliency, GuidedBackprop, LRP])
def test_model_unchanged_after_normal_and_failing_use(net, method_cls):
    before = ModelSnapshot.of(net)
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    _relevance(method_cls(net), net, x, torch.ones(2, 4, dtype=torch.float64))
    assert ModelSnapshot.of(net).diff(before) == []
    with pytest.raises(RuntimeError, match="boom"):
        with modified_backward(method_cls(net)) as forward:
            forward(x)
            raise RuntimeError("boom")
    assert ModelSnapshot.of(net).diff(before) == []


def test_user_lrp_rules_survive(net):
    from captum.attr._utils.lrp_rules import EpsilonRule

    rule = EpsilonRule(0.5)
    net[0].rule = rule
    try:
        x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
        _relevance(LRP(net), net, x, torch.ones(2, 4, dtype=torch.float64))
        assert net[0].rule is rule
        assert not hasattr(net[2], "rule")
    finally:
        del net[0].rule


def test_unsupported_method_is_named(net):
    with pytest.raises(TypeError, match="IntegratedGradients has no registered"):
        with modified_backward(IntegratedGradients(net)):
            pass
    assert "Saliency" in supported_methods()


def test_guard_restores_flags_and_mode(net):
    net.train()
    flags = [p.requires_grad for p in net.parameters()]
    with pytest.raises(ValueError):
        with ModelGuard(net):
            net.eval()
            for p in net.parameters():
                p.requires_grad_(False)
            raise ValueError
    assert net.training and [p.requires_grad for p in net.parameters()] == flags


def test_snapshot_detects_changes(net):
    before = ModelSnapshot.of(net)
    with torch.no_grad():
        net[0].weight[0, 0] += 1e-12
    net[2].register_forward_hook(lambda *a: None)
    net.train()
    problems = ModelSnapshot.of(net).diff(before)
    assert any("values changed" in p for p in problems)
    assert any("hook count" in p for p in problems)
    assert any("training" in p for p in problems)


def test_validation_messages():
    with pytest.raises(ValueError, match="2 non-finite"):
        check_finite(torch.tensor([1.0, float("nan"), float("inf")]))
    with pytest.raises(ValueError, match="out of range"):
        check_targets(10, torch.zeros(2, 10))
    with pytest.raises(ValueError, match="one target per sample"):
        check_targets([1, 2, 3], torch.zeros(2, 10))
    check_targets([1, 2], torch.zeros(2, 10))
    # Captum's per-sample tuple targets for outputs with more than two dimensions.
    grid = torch.zeros(3, 2, 4)
    check_targets([(0, 1), (1, 3), (1, 0)], grid)
    check_targets((1, 2), grid)
    with pytest.raises(ValueError, match="3 entries but the batch has 2"):
        check_targets([(0, 1), (1, 3), (1, 0)], grid[:2])
    with pytest.raises(ValueError, match=r"\(1, 4\) does not index"):
        check_targets([(0, 1), (1, 4), (1, 0)], grid)
    with pytest.raises(ValueError, match="does not index"):
        check_targets((1,), grid)


def test_captum_relu_hook_methods_refuse_gates_they_would_pass_unchanged():
    # Captum's GuidedBackprop/Deconvolution modify nn.ReLU only: on a ReLU6 or GELU network
    # they would return the plain gradient there; the core mechanism and explain functions
    # refuse by name instead.
    from captum_ext.core.modified_backward import modified_backward
    from quantus_metrics.explain import explain_func_from

    for gate in (torch.nn.ReLU6, torch.nn.GELU):
        net = torch.nn.Sequential(torch.nn.Linear(4, 5), gate(), torch.nn.Linear(5, 3)).eval()
        for cls in (GuidedBackprop, Deconvolution):
            with pytest.raises(TypeError, match=gate.__name__):
                with modified_backward(cls(net)):
                    pass
            with pytest.raises(TypeError, match="nn.ReLU modules only"):
                explain_func_from(cls)(
                    model=net, inputs=np.ones((2, 4), np.float32), targets=[0, 1]
                )
    relu = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    maps = explain_func_from(GuidedBackprop)(
        model=relu.eval(), inputs=np.ones((2, 4), np.float32), targets=[0, 1]
    )
    assert maps.shape == (2, 4)
