"""Rule sets and the LRP classes: zennit agreement, conservation, Captum contract, model safety.

zennit 0.5.1 is the independent reference (test-only). One deliberate difference: zennit's
BatchNorm canonizer turns the BatchNorm into ``x / √(1 + eps)`` rather than the identity
(it resets the running variance to 1 but keeps ``eps``), so its relevance drifts by ~5e-6 per
BatchNorm; ours folds exactly. The comparisons on BatchNorm models therefore set ``eps = 0``,
where both are exact; ``test_batchnorm_folding_is_exact`` checks our folding on its own.
"""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import InputXGradient, NoiseTunnel
from torch import nn
from zennit import composites as zc
from zennit import rules as zr
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.torchvision import ResNetCanonizer as ZennitResNetCanonizer
from zennit.types import Convolution
from zennit.types import Linear as ZLinear

from captum_ext.core import ModelSnapshot, modified_backward
from captum_ext.lrp import (
    LRP,
    LRPCMP,
    Alpha1Beta0,
    AlphaBeta,
    DeepTaylor,
    Epsilon,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    EpsilonRule,
    ExcitationBackprop,
    FlatRule,
    GammaRule,
    LayerLRP,
    PassRule,
    RuleSet,
    SumModule,
    ZPlusRule,
)
from captum_ext.zoo import SmallMLP, torchvision_model
from tests.oracles import zennit_relevance


def _base(stabilizer=1e-6):
    return zc.layer_map_base(stabilizer)


# (ours, zennit composite factory taking canonizers) per rule set.
RULE_SETS = {
    "EpsilonPlus": (EpsilonPlus, lambda c: zc.EpsilonPlus(canonizers=c)),
    "EpsilonPlusFlat": (EpsilonPlusFlat, lambda c: zc.EpsilonPlusFlat(canonizers=c)),
    "EpsilonAlpha2Beta1": (EpsilonAlpha2Beta1, lambda c: zc.EpsilonAlpha2Beta1(canonizers=c)),
    "EpsilonAlpha2Beta1Flat": (
        EpsilonAlpha2Beta1Flat,
        lambda c: zc.EpsilonAlpha2Beta1Flat(canonizers=c),
    ),
    "EpsilonGammaBox": (
        lambda: EpsilonGammaBox(-1.0, 1.0),
        lambda c: zc.EpsilonGammaBox(low=-1.0, high=1.0, canonizers=c),
    ),
    "ExcitationBackprop": (ExcitationBackprop, lambda c: zc.ExcitationBackprop(canonizers=c)),
    # Sixt et al. (2020) sets zennit has no name for, built from zennit's own rules:
    "Alpha1Beta0": (
        Alpha1Beta0,
        lambda c: zc.LayerMapComposite([*_base(), (ZLinear, zr.AlphaBeta(1, 0))], canonizers=c),
    ),
    "AlphaBeta54": (
        lambda: AlphaBeta(5, 4),
        lambda c: zc.LayerMapComposite([*_base(), (ZLinear, zr.AlphaBeta(5, 4))], canonizers=c),
    ),
    "Epsilon0.25": (
        lambda: Epsilon(0.25),
        lambda c: zc.LayerMapComposite([*_base(), (ZLinear, zr.Epsilon(0.25))], canonizers=c),
    ),
    "DeepTaylorW2": (
        DeepTaylor,
        lambda c: zc.SpecialFirstLayerMapComposite(
            [*_base(), (ZLinear, zr.ZPlus())], [(ZLinear, zr.WSquare())], canonizers=c
        ),
    ),
    "DeepTaylorBox": (
        lambda: DeepTaylor(-1.0, 1.0),
        lambda c: zc.SpecialFirstLayerMapComposite(
            [*_base(), (ZLinear, zr.ZPlus())], [(ZLinear, zr.ZBox(-1.0, 1.0))], canonizers=c
        ),
    ),
    "LRPCMP": (
        lambda: LRPCMP(2.0, 1.0),
        lambda c: zc.LayerMapComposite(
            [*_base(), (Convolution, zr.AlphaBeta(2, 1)), (nn.Linear, zr.Epsilon())],
            canonizers=c,
        ),
    ),
}


def _exact_batchnorm(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 0.0  # see the module docstring
    return model


@pytest.fixture(scope="module")
def zennit_models():
    from captum_ext.zoo import SmallCNN, SmallVGG

    resnet = torchvision_model("resnet18", n_classes=10, seed=0).double()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = SmallCNN(1, 10).double().eval()
        vgg = SmallVGG(3, 10, width=8)
        # Non-trivial BatchNorm statistics, so folding creates real biases (also in resnet18).
        for module in [*vgg.modules(), *resnet.modules()]:
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
    return {
        "cnn": (cnn, 1, []),
        "vgg_bn": (_exact_batchnorm(vgg.double().eval()), 3, [SequentialMergeBatchNorm]),
        "resnet18": (_exact_batchnorm(resnet), 3, [ZennitResNetCanonizer]),
    }


# Every rule set on the small CNN and the BatchNorm VGG; on resnet18 (the ResNet-specific
# part, the residual NormRule, is shared by all sets) three composites that between them use
# every rule type: z⁺, γ, z^B, αβ, flat, ε, Norm, Pass.
_CASES = [
    *((m, s) for m in ("cnn", "vgg_bn") for s in RULE_SETS),
    *(("resnet18", s) for s in ("EpsilonPlus", "EpsilonGammaBox", "EpsilonAlpha2Beta1Flat")),
]


@pytest.mark.slow
@pytest.mark.parametrize("model_name, set_name", _CASES)
def test_rule_set_matches_zennit(zennit_models, model_name, set_name):
    model, channels, canonizers = zennit_models[model_name]
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, channels, 32, 32, generator=gen, dtype=torch.float64) * 2 - 1
    target = torch.tensor([7])
    ours_factory, zennit_factory = RULE_SETS[set_name]
    ours = LRP(model, rule_set=ours_factory()).attribute(x, target=target)
    theirs = zennit_relevance(model, zennit_factory([c() for c in canonizers]), x, target)
    error = (ours - theirs).abs().max() / theirs.abs().max()
    assert error <= 1e-5, f"max relative error {error:.2e}"


def test_batchnorm_folding_is_exact(vgg_bn):
    # With eps > 0 ours must equal the same network with BatchNorm folded by hand.
    x = torch.rand(2, 3, 32, 32, dtype=vgg_bn.features[0].weight.dtype)
    folded = copy.deepcopy(vgg_bn)
    layers = list(folded.features)
    for i, module in enumerate(layers):
        if isinstance(module, nn.BatchNorm2d):
            conv = layers[i - 1]
            scale = module.weight / (module.running_var + module.eps).sqrt()
            with torch.no_grad():
                conv.weight.mul_(scale[:, None, None, None])
                conv.bias.copy_((conv.bias - module.running_mean) * scale + module.bias)
            layers[i] = nn.Identity()
    folded.features = nn.Sequential(*layers)
    ours = LRP(vgg_bn, rule_set=EpsilonGammaBox(0.0, 1.0)).attribute(x, target=2)
    by_hand = LRP(folded, rule_set=EpsilonGammaBox(0.0, 1.0), canonizers=[]).attribute(x, target=2)
    tol = 1e-10 if x.dtype == torch.float64 else 1e-4
    assert ((ours - by_hand).abs().max() / by_hand.abs().max()) < tol


def _bias_free_cnn() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 5, bias=False),
        ).double()


@pytest.mark.parametrize(
    "rule_set",
    # A tiny stabiliser: with the default 1e-6 the stabiliser itself absorbs ~1e-6/|z| per unit.
    [
        Alpha1Beta0(1e-12),
        AlphaBeta(2, 1, 1e-12),
        DeepTaylor(stabilizer=1e-12),
        DeepTaylor(0.0, 1.0, 1e-12),
        EpsilonPlusFlat(1e-12, 1e-12),
    ],
    ids=["a1b0", "a2b1", "dtd_w2", "dtd_box", "eps_plus_flat"],
)
def test_conservation_on_bias_free_net(rule_set):
    model = _bias_free_cnn()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 2, 4])
    relevance, delta = LRP(model, rule_set=rule_set).attribute(
        x, target=target, return_convergence_delta=True
    )
    out = model(x)[torch.arange(3), target]
    torch.testing.assert_close(relevance.sum((1, 2, 3)), out.detach(), rtol=1e-8, atol=1e-12)
    assert delta.abs().max() <= 1e-8 * out.abs().max()


def test_lrp0_equals_gradient_times_input_on_bias_free_relu_net(dtype):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mlp = SmallMLP(16, (12, 8), 4, bias=False).to(dtype).eval()
    x = torch.randn(5, 16, dtype=dtype)
    ours = LRP(mlp, rule_set=Epsilon(0.0)).attribute(x, target=1)
    reference = InputXGradient(mlp).attribute(x.clone().requires_grad_(), target=1)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours, reference.detach(), rtol=tol, atol=tol)
    cnn = _bias_free_cnn().to(dtype)
    xc = torch.rand(2, 1, 8, 8, dtype=dtype)
    # The average pool's NormRule gets a negligible stabiliser, so it is exactly LRP-0 too.
    ours = LRP(cnn, rule_set=Epsilon(0.0, stabilizer=1e-30)).attribute(xc, target=3)
    reference = InputXGradient(cnn).attribute(xc.clone().requires_grad_(), target=3)
    torch.testing.assert_close(ours, reference.detach(), rtol=tol, atol=tol)


def test_float32_close_to_float64():
    model64 = _bias_free_cnn()
    model32 = copy.deepcopy(model64).float()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    for rule_set in (EpsilonPlus(), EpsilonGammaBox(0.0, 1.0)):
        a = LRP(model64, rule_set=rule_set).attribute(x, target=1)
        b = LRP(model32, rule_set=rule_set).attribute(x.float(), target=1)
        assert b.dtype == torch.float32
        assert ((a - b.double()).abs().max() / a.abs().max()) < 1e-4


def test_noise_tunnel_and_repeated_calls_keep_rules(dtype):
    model = _bias_free_cnn().to(dtype)
    x = torch.rand(2, 1, 8, 8, dtype=dtype)
    model[7].rule = EpsilonRule(0.5)  # a user rule that must survive (captum #1059)
    lrp = LRP(model, rule_set=EpsilonPlus())
    first = lrp.attribute(x, target=3)
    second = lrp.attribute(x, target=3)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert isinstance(model[7].rule, EpsilonRule)
    # The user's rule was used: equal to a rule set naming that layer, not to plain EpsilonPlus.
    named = EpsilonPlus(name_map={"7": EpsilonRule(0.5)})
    del model[7].rule
    torch.testing.assert_close(first, LRP(model, rule_set=named).attribute(x, target=3))
    assert not torch.allclose(first, LRP(model, rule_set=EpsilonPlus()).attribute(x, target=3))
    # NoiseTunnel with zero noise averages identical copies: it must return the plain result.
    nt = NoiseTunnel(LRP(model, rule_set=EpsilonPlus()))
    tunnel = nt.attribute(x, nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=3)
    torch.testing.assert_close(tunnel, LRP(model, rule_set=EpsilonPlus()).attribute(x, target=3))
    noisy = nt.attribute(x, nt_type="smoothgrad_sq", nt_samples=2, stdevs=0.1, target=3)
    assert noisy.shape == x.shape and torch.isfinite(noisy).all()


def test_modified_backward_yields_relevance_at_every_layer():
    model = _bias_free_cnn()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    method = LRP(model, rule_set=Alpha1Beta0(1e-12))  # tiny stabiliser: exact conservation
    snapshot = ModelSnapshot.of(model)
    taps: dict[str, torch.Tensor] = {}
    handles = [
        model[i].register_forward_hook(lambda m, a, out, i=i: taps.setdefault(str(i), out))
        for i in (0, 1, 3, 6)
    ]
    try:
        with modified_backward(method) as forward:
            leaf = x.clone().requires_grad_()
            out = forward(leaf)
            g = torch.zeros_like(out)
            g[:, 2] = out[:, 2].detach()
            grads = torch.autograd.grad(out, [leaf, *taps.values()], g)
    finally:
        for handle in handles:
            handle.remove()
    assert not snapshot.diff(ModelSnapshot.of(model))
    torch.testing.assert_close(grads[0], method.attribute(x, target=2))
    for layer_index, grad in zip(taps, grads[1:], strict=True):
        layer = model[int(layer_index)]
        expected = LayerLRP(model, layer, rule_set=Alpha1Beta0(1e-12)).attribute(x, target=2)
        torch.testing.assert_close(grad, expected)
        # Alpha1Beta0 conserves relevance layer by layer on this bias-free net.
        torch.testing.assert_close(grad.sum(), g.sum(), rtol=1e-6, atol=0)


def test_layer_lrp_input_and_output(dtype):
    model = _bias_free_cnn().to(dtype)
    x = torch.rand(2, 1, 8, 8, dtype=dtype)
    at_input = LayerLRP(model, model[0], rule_set=EpsilonPlus()).attribute(
        x, target=1, attribute_to_layer_input=True
    )
    torch.testing.assert_close(at_input, LRP(model, rule_set=EpsilonPlus()).attribute(x, target=1))
    out, delta = LayerLRP(model, model[7], rule_set=EpsilonPlus()).attribute(
        x, target=1, return_convergence_delta=True
    )
    # At the logits the relevance is the target score itself, so the delta vanishes.
    expected = torch.zeros(2, 5, dtype=dtype)
    expected[:, 1] = model(x)[:, 1].detach()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(delta, torch.zeros(2, dtype=dtype))


def test_model_unharmed_after_normal_and_failing_calls(vgg_bn):
    snapshot = ModelSnapshot.of(vgg_bn)
    dtype = vgg_bn.features[0].weight.dtype
    x = torch.rand(2, 3, 32, 32, dtype=dtype)
    wrong_channels = torch.rand(2, 5, 32, 32, dtype=dtype)
    rng = torch.random.get_rng_state()
    lrp = LRP(vgg_bn, rule_set=EpsilonGammaBox(0.0, 1.0))
    lrp.attribute(x, target=0)
    assert not snapshot.diff(ModelSnapshot.of(vgg_bn))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        lrp.attribute(bad, target=0)
    with pytest.raises(ValueError, match="out of range"):
        lrp.attribute(x, target=10)
    with pytest.raises(RuntimeError):  # fails inside the forward, after canonizers and hooks
        lrp.attribute(wrong_channels, target=0)
    assert not snapshot.diff(ModelSnapshot.of(vgg_bn))
    assert torch.equal(rng, torch.random.get_rng_state())
    assert not torch.isnan(x).any()


def test_unsupported_layer_names_path_and_fix():
    # (LayerNorm has a default rule since automatic canonization; Softmax has none.)
    model = nn.Sequential(nn.Linear(4, 6), nn.Softmax(1), nn.ReLU(), nn.Linear(6, 2)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    snapshot = ModelSnapshot.of(model)
    with pytest.raises(TypeError, match=r"'1' of type Softmax.*PassRule"):
        LRP(model).attribute(x, target=0)
    assert not snapshot.diff(ModelSnapshot.of(model))
    by_name = LRP(model, rule_set=EpsilonPlus(name_map={"1": PassRule()})).attribute(x, target=0)
    model[1].rule = PassRule()
    by_attribute = LRP(model, rule_set=EpsilonPlus()).attribute(x, target=0)
    torch.testing.assert_close(by_name, by_attribute)


def test_custom_rule_set_and_validation():
    model = _bias_free_cnn()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    custom = RuleSet(
        layer_map=[(nn.Conv2d, GammaRule(0.5)), (nn.Linear, EpsilonRule(0.1))],
        first_map=[(nn.Conv2d, FlatRule())],
    )
    resolved = {name: rule for name, _, rule in custom.resolve(model)}
    assert isinstance(resolved["0"], FlatRule) and isinstance(resolved["3"], GammaRule)
    assert isinstance(resolved["7"], EpsilonRule)
    assert LRP(model, rule_set=custom).attribute(x, target=0).shape == x.shape
    with pytest.raises(TypeError, match="captum_ext.lrp rules"):
        RuleSet(layer_map=[(nn.Conv2d, "gamma")])
    with pytest.raises(TypeError, match="ZPlusRule cannot handle"):
        RuleSet([(nn.Conv2d, ZPlusRule())], name_map={"1": ZPlusRule()}).resolve(model)
    with pytest.raises(TypeError, match="RuleSet"):
        LRP(model, rule_set="EpsilonPlus")
    with pytest.raises(ValueError, match="both low and high"):
        DeepTaylor(low=0.0)


def test_tuple_inputs_and_additional_forward_args():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(2, 4)
            self.add = SumModule()  # a plain + would be refused (captum_ext.lrp.glue)
            self.out = nn.Linear(4, 2)

        def forward(self, x, y, scale):
            return self.out(torch.relu(self.add(self.a(x), self.b(y)))) * scale

    model = TwoInputs().double()
    x, y = torch.rand(5, 3, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
    rx, ry = LRP(model, rule_set=Epsilon(0.0)).attribute(
        (x, y), target=0, additional_forward_args=(1.0,)
    )
    assert rx.shape == x.shape and ry.shape == y.shape


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn", "resnet50"])
def test_torchvision_models_work_out_of_the_box(name):
    # The architectural support (canonizers, layer coverage) is shared by all rule sets: every
    # rule set runs on resnet18, two on the large models (CPU budget); vgg16 is vgg16_bn without
    # BatchNorm and runs in benchmarks/bench_lrp.py.
    model = torchvision_model(name, n_classes=10, seed=0)
    snapshot = ModelSnapshot.of(model)
    x = torch.rand(1, 3, 32, 32)
    if name == "resnet18":
        factories = [factory for factory, _ in RULE_SETS.values()]
    else:
        factories = [lambda: EpsilonGammaBox(-3.0, 3.0), EpsilonAlpha2Beta1Flat]
    for factory in factories:
        relevance = LRP(model, rule_set=factory()).attribute(x, target=0)
        assert relevance.shape == x.shape and torch.isfinite(relevance).all()
        assert relevance.abs().sum() > 0
    assert not snapshot.diff(ModelSnapshot.of(model))


@pytest.mark.slow
def test_example_runs(capsys):
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "lrp_rule_sets_resnet.py"
    runpy.run_path(str(path), run_name="__main__")
    printed = capsys.readouterr().out
    assert "model unchanged: True" in printed and "relevance at layer2" in printed
