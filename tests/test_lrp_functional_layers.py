"""Conv/Linear subclasses with their own forward (TF "same" padding, EfficientNet-Lite0).

torch.fx traces through a ``nn.Conv2d`` subclass whose forward pads and calls ``F.conv2d``;
the traced path lifts that call back into a convolution layer sharing the parameter. Oracles:
zennit (which hooks the subclass itself and runs its forward with modified weights), the same
network built from plain torch.nn layers, and conservation of bias-free LRP-0 in float64.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_ext.lrp import (
    LRP,
    Alpha1Beta0,
    CaptumDefault,
    Epsilon,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    tracing,
)
from captum_ext.lrp.functional_layers import FunctionalConv2d, FunctionalLayer, FunctionalLinear


class SameConv(nn.Conv2d):
    """TensorFlow-style 'same' padding as in EfficientNet ports: a ZeroPad2d child, F.conv2d."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, k, stride, groups=groups, bias=False)
        total = k - stride if k > stride else 0
        self.static_padding = nn.ZeroPad2d((total // 2, total - total // 2) * 2)

    def forward(self, x):
        x = self.static_padding(x)
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class Head(nn.Linear):
    def forward(self, x):
        return F.linear(x.flatten(1), self.weight, self.bias)


def _layers(plain: bool) -> list[nn.Module]:
    gen = torch.Generator().manual_seed(0)

    def conv(cin, cout, k, stride=1, groups=1):
        layer = SameConv(cin, cout, k, stride, groups)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.4)
        if not plain:
            return [layer]
        twin = nn.Conv2d(cin, cout, k, stride, groups=groups, bias=False)
        twin.weight = layer.weight
        return [copy.deepcopy(layer.static_padding), twin]

    def bn(c):
        layer = nn.BatchNorm2d(c, eps=1e-3).eval()
        with torch.no_grad():
            layer.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            layer.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            layer.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            layer.bias.copy_(torch.randn(c, generator=gen) * 0.1)
        return layer

    head = Head(8, 5)
    with torch.no_grad():
        head.weight.copy_(torch.randn(5, 8, generator=gen) * 0.4)
        head.bias.copy_(torch.randn(5, generator=gen) * 0.1)
    if plain:
        linear = nn.Linear(8, 5)
        linear.weight, linear.bias = head.weight, head.bias
        head = nn.Sequential(nn.Flatten(), linear)
    return [
        *conv(3, 8, 3, 2),
        bn(8),
        nn.ReLU6(),
        *conv(8, 8, 3, 1, groups=8),
        bn(8),
        nn.ReLU6(),
        *conv(8, 8, 1),
        bn(8),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        head,
    ]


def _models() -> tuple[nn.Module, nn.Module]:
    return nn.Sequential(*_layers(False)).eval(), nn.Sequential(*_layers(True)).eval()


def _input(dtype=torch.float64) -> torch.Tensor:
    return (torch.rand(2, 3, 15, 15, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(dtype)


def test_subclass_calls_become_layers_sharing_the_parameters_and_bn_is_folded():
    model, _ = _models()
    traced = tracing.trace(model, 1)
    lifted = {n: m for n, m in traced.named_modules() if isinstance(m, FunctionalLayer)}
    assert list(lifted) == ["0.conv2d", "3.conv2d", "6.conv2d", "10.linear"]
    assert isinstance(lifted["3.conv2d"], FunctionalConv2d) and lifted["3.conv2d"].groups == 8
    assert isinstance(lifted["10.linear"], FunctionalLinear)
    assert lifted["0.conv2d"].weight is model[0].weight  # shared, not copied
    assert traced.lrp_bn_pairs == [("0.conv2d", "1"), ("3.conv2d", "4"), ("6.conv2d", "7")]
    # "the first layer" is the stem, not the shallower head
    first = next(n for n, m in traced.named_modules() if isinstance(m, nn.Conv2d | nn.Linear))
    assert first == "0.conv2d"
    x = _input(torch.float32)
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "rule_set",
    [EpsilonPlus(), EpsilonGammaBox(-1.0, 1.0), Epsilon(0.1), EpsilonPlusFlat(), Alpha1Beta0()],
    ids=type,
)
def test_equal_to_the_same_network_of_plain_layers(rule_set):
    model, plain = _models()
    x = _input()
    ours = LRP(model.double(), rule_set=rule_set).attribute(x, target=1)
    reference = LRP(plain.double(), rule_set=rule_set).attribute(x, target=1)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_epsilon_plus_agrees_with_zennit():
    # zennit's reference runs on the plain-layer network (zennit's hooks fire for the padding
    # child inside a subclass's own forward too, and it gives a different map there).
    from zennit import composites as zc
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm

    model, plain = _models()
    model, plain = model.double(), plain.double()
    for module in [*model.modules(), *plain.modules()]:  # zennit's BatchNorm fold drops eps
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 0.0
    x = _input()
    ours = LRP(model, rule_set=EpsilonPlus()).attribute(x, target=1)
    onehot = torch.eye(5, dtype=x.dtype)[[1, 1]]
    with Gradient(plain, zc.EpsilonPlus(canonizers=[SequentialMergeBatchNorm()])) as attr:
        _, theirs = attr(x, lambda out: out * onehot)  # relevance starts as the score
    error = (ours - theirs).abs().max() / theirs.abs().max()
    assert error < 1e-10


# ---------------------------------------------------------------- pretrained EfficientNet-Lite0

RULE_SETS = [
    "Epsilon",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "Alpha1Beta0",
    "Alpha5Beta4",
    "AlphaBeta",
    "ExcitationBackprop",
    "DeepTaylor",
    "LRPCMP",
    "AttnLRP",
    "CPLRP",
]


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite_pytorch")
    from captum_ext.zoo import efficientnet_lite0, imagenet_samples

    try:
        model = efficientnet_lite0(pretrained=True)
        x, y = imagenet_samples(size=224, normalize=False)
    except ImportError as err:  # the `real` extra is not installed
        pytest.skip(str(err))
    # The TF-Lite input scaling these weights were trained with.
    return model, ((x * 255 - 127) / 128)[:2], y[:2]


@pytest.mark.slow
@pytest.mark.parametrize("name", RULE_SETS)
def test_every_rule_set_runs_finite_on_pretrained_efficientnet_lite0(lite0, name):
    import captum_ext.lrp as lrp

    model, x, y = lite0
    rule_set = getattr(lrp, name)(-127 / 128, 128 / 128) if name == "EpsilonGammaBox" else None
    rule_set = rule_set or getattr(lrp, name)()
    relevance = LRP(model, rule_set=rule_set).attribute(x, target=y)
    assert relevance.shape == x.shape
    assert bool(torch.isfinite(relevance).all())
    assert relevance.abs().sum() > 0


@pytest.mark.slow
def test_bias_free_lrp0_conserves_on_pretrained_efficientnet_lite0(lite0):
    model, x, y = lite0
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        for module in exact.modules():
            if isinstance(module, nn.BatchNorm2d):  # a pure per-channel scaling
                module.running_mean.zero_()
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    x = x.double()
    relevance = LRP(exact, rule_set=Epsilon(1e-30, stabilizer=1e-30)).attribute(x, target=y)
    f = exact(x).gather(1, y[:, None])[:, 0]
    error = ((relevance.sum((1, 2, 3)) - f).abs() / f.abs()).max()
    assert error < 1e-6


@pytest.mark.slow
def test_captum_default_refuses_relu6_by_name_like_captum(lite0):
    model, x, y = lite0
    with pytest.raises(TypeError, match=r"ReLU6.*EpsilonPlus\(\) or Epsilon\(\)"):
        LRP(model, rule_set=CaptumDefault()).attribute(x, target=y)
