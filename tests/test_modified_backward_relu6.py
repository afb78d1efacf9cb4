"""The hook-based modified-backward methods on ReLU6 networks with TF "same"-padding layers.

The EfficientNet-Lite0 pattern: Conv2d subclasses that pad with a child and call ``F.conv2d``,
BatchNorm named freely, ReLU6. Oracles: closed forms (RectGrad with τ = −inf is the gradient;
a hand-written rectified backward; DeepLIFT's summation to delta), the same network built from
plain torch.nn layers (PatternNet, CSC), and a refusal for forwards that are not understood.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_ext import DeepLiftLinear, PatternAttribution, PatternNet, RectGrad
from captum_ext.core.linear_input import input_map
from captum_ext.lrp import LRP, EpsilonPlus
from quantus_metrics.csc import CSC
from tests.test_lrp_functional_layers import SameConv, _input, _models, lite0  # noqa: F401


def _mlp6() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    w1 = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 3
    w2 = torch.randn(2, 6, generator=gen, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU6(), nn.Linear(6, 2, bias=False))
    model = model.double().eval()
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[2].weight.copy_(w2)
    return model, w1, w2


def test_rectgrad_rectifies_at_relu6_like_the_definition():
    model, w1, w2 = _mlp6()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    tau = 0.2
    got = RectGrad(model, threshold=tau, multiply_by_inputs=False).attribute(x, target=1)
    # By hand: importance a·g at the ReLU6 output, kept above τ, then ReLU6's derivative.
    z = x @ w1.T
    a, g = F.relu6(z), w2[1].expand(3, -1)
    keep = (a * g > tau).double() * ((z > 0) & (z < 6)).double()
    torch.testing.assert_close(got, (g * keep) @ w1, rtol=1e-12, atol=1e-12)
    assert bool((z > 6).any())  # the clipped regime is exercised
    plain = RectGrad(model, threshold=float("-inf"), multiply_by_inputs=False)
    gradient = torch.func.vmap(torch.func.grad(lambda v: model(v[None])[0, 1]))(x)
    torch.testing.assert_close(plain.attribute(x, target=1), gradient, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule", ["reveal_cancel", "rescale"])
def test_deeplift_linear_sums_to_delta_on_same_padding_relu6(rule):
    model, _ = _models()
    model = model.double()
    x = _input()
    attribution, delta = DeepLiftLinear(model, nonlinear_rule=rule).attribute(
        x, target=2, return_convergence_delta=True
    )
    assert delta.abs().max() < 1e-12
    assert attribution.abs().sum() > 0


def test_deeplift_linear_equals_its_plain_layer_twin():
    model, plain = _models()
    x = _input()
    ours = DeepLiftLinear(model.double()).attribute(x, target=2)
    theirs = DeepLiftLinear(plain.double()).attribute(x, target=2)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [PatternNet, PatternAttribution])
def test_pattern_methods_equal_their_plain_layer_twin(cls):
    model, plain = _models()
    model, plain = model.double(), plain.double()
    data = torch.rand(16, 3, 15, 15, generator=torch.Generator().manual_seed(5)).double() * 2 - 1
    ours = cls(model).fit(data, progress=False)
    theirs = cls(plain).fit(data, progress=False)
    names = {"0": "1", "3": "5", "6": "9", "10": "13.1"}
    for mine, twin in names.items():
        torch.testing.assert_close(
            ours.patterns[mine], theirs.patterns[twin], rtol=1e-9, atol=1e-12
        )
    x = _input()
    torch.testing.assert_close(
        ours.attribute(x, target=0), theirs.attribute(x, target=0), rtol=1e-9, atol=1e-12
    )


def test_csc_sees_the_traced_through_layers_of_lrp():
    model, plain = _models()
    x = _input(torch.float32).numpy()
    kwargs = {"method": lambda m: LRP(m, rule_set=EpsilonPlus()), "n_vectors": 3, "seed": 1}
    ours = CSC(trace_layers=["3", "6", "10"], **kwargs)(model=model, x_batch=x)
    theirs = CSC(trace_layers=["4", "8", "13"], **kwargs)(model=plain, x_batch=x)
    for a, b in zip(ours, theirs, strict=True):
        assert list(a) == ["input", "3", "6", "10"]
        np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-5)


def test_input_map_refuses_a_forward_it_cannot_follow():
    class Scaled(SameConv):
        def forward(self, x):
            return super().forward(2 * x)

    layer = Scaled(3, 4, 3)
    with pytest.raises(TypeError, match=r"'stem' \(Scaled\) overrides the forward of nn.Conv2d"):
        input_map(layer, "stem")
    with pytest.raises(TypeError, match="overrides the forward"):
        DeepLiftLinear(nn.Sequential(layer, nn.ReLU())).attribute(torch.rand(1, 3, 8, 8), target=0)


def test_input_map_of_same_padding_reproduces_the_layer():
    layer = copy.deepcopy(_models()[0][3])
    x = torch.rand(2, 8, 9, 9, generator=torch.Generator().manual_seed(6))
    pre = input_map(layer)
    torch.testing.assert_close(layer._conv_forward(pre(x), layer.weight, None), layer(x))


@pytest.mark.slow
def test_methods_on_pretrained_efficientnet_lite0(lite0):  # noqa: F811 (the fixture)
    from captum_ext import ContrastiveExcitationBackprop, ContrastiveLRP

    model, x, y = lite0
    _, delta = DeepLiftLinear(model.double()).attribute(
        x.double(), target=y, return_convergence_delta=True
    )
    model.float()
    assert delta.abs().max() < 1e-10  # summation to delta (ReLU6, padding, residuals, BN)
    for method in (RectGrad(model), ContrastiveLRP(model), ContrastiveExcitationBackprop(model)):
        assert bool(torch.isfinite(method.attribute(x, target=y)).all())
    pattern = PatternAttribution(model).fit(x, progress=False)
    assert bool(torch.isfinite(pattern.attribute(x, target=y)).all())
    scores = CSC(method=lambda m: LRP(m, rule_set=EpsilonPlus()), n_vectors=2)(
        model=model, x_batch=x[:1].numpy()
    )
    assert len(scores[0]) == 50  # the input and all 49 convolution/linear layers
