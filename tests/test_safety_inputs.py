"""One validation for every class: targets, model outputs, batch axis, dtype, empty batches.

Also the LRP-specific silent failures of issue 15: target=None on multi-output models,
functional operations in the forward (scales passed as additional_forward_args, DenseNet-style
F.relu/pooling), RuleSet names and MergeBatchNorm pairs, LayerLRP layers given by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from torch import nn

from captum_ext import (
    CAFO,
    CASO,
    LRP,
    AdaptGrad,
    FusionGrad,
    LayerLRP,
    NoiseGrad,
    PatternAttribution,
    PatternNet,
    RectGrad,
    SeededNoiseTunnel,
)
from captum_ext.core.validation import SelectOutput
from captum_ext.lrp import (
    Epsilon,
    EpsilonRule,
    GradientRule,
    MergeBatchNorm,
    PassRule,
    RuleSet,
)

B, D, C = 3, 6, 4


def _mlp(seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, C))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model.double().eval()


def _x() -> torch.Tensor:
    return torch.rand(B, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _last_linear(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def _pattern(cls, model):
    return cls(model).fit(_x().repeat(4, 1), progress=False)


# name -> (factory(model) -> callable(x, target)), whether target=None means "predicted class"
METHODS = {
    "LRP": (lambda m: LRP(m).attribute, False),
    "LayerLRP": (lambda m: LayerLRP(m, _last_linear(m)).attribute, False),
    "RectGrad": (lambda m: RectGrad(m).attribute, False),
    "PatternNet": (lambda m: _pattern(PatternNet, m).attribute, False),
    "PatternAttribution": (lambda m: _pattern(PatternAttribution, m).attribute, False),
    "AdaptGrad": (
        lambda m: (
            lambda x, target=None, **kw: AdaptGrad(Saliency(m), bounds=(0.0, 1.0)).attribute(
                x, target=target, nt_samples=2, seed=0, **kw
            )
        ),
        False,
    ),
    "SeededNoiseTunnel": (
        lambda m: (
            lambda x, target=None, **kw: SeededNoiseTunnel(Saliency(m)).attribute(
                x, target=target, nt_samples=2, stdevs=0.1, seed=0, **kw
            )
        ),
        False,
    ),
    "NoiseGrad": (
        lambda m: (
            lambda x, target=None, **kw: NoiseGrad(Saliency(m), n_models=2).attribute(
                x, target=target, seed=0, show_progress=False, **kw
            )
        ),
        False,
    ),
    "FusionGrad": (
        lambda m: (
            lambda x, target=None, **kw: FusionGrad(Saliency(m), n_models=2, n_samples=2).attribute(
                x, target=target, seed=0, show_progress=False, **kw
            )
        ),
        False,
    ),
    "CAFO": (lambda m: lambda x, target=None, **kw: CAFO(m).attribute(x, target, n_iter=2), True),
    "CASO": (lambda m: lambda x, target=None, **kw: CASO(m).attribute(x, target, n_iter=2), True),
}
NAMES = list(METHODS)


def _call(name, model, x, target, **kwargs):
    factory, _ = METHODS[name]
    return factory(model)(x, target=target, **kwargs)


TARGET_FORMS = {
    "int list": lambda t: t.tolist(),
    "long tensor": lambda t: t,
    "int32 tensor": lambda t: t.int(),
    "numpy int64": lambda t: t.numpy(),
    "numpy int32": lambda t: t.numpy().astype(np.int32),
    "list of numpy ints": lambda t: list(t.numpy()),
}


@pytest.mark.parametrize("name", NAMES)
def test_every_target_form_gives_the_same_result(name):
    model, x = _mlp(), _x()
    t = torch.tensor([0, 3, 1])
    reference = _call(name, model, x, t)
    for form, make in TARGET_FORMS.items():
        out = _call(name, model, x, make(t))
        torch.testing.assert_close(out, reference, msg=f"{name} with {form}")
    # a single class: int, numpy scalar and 0-d tensor agree
    single = _call(name, model, x, 2)
    torch.testing.assert_close(_call(name, model, x, np.int64(2)), single)
    torch.testing.assert_close(_call(name, model, x, torch.tensor(2)), single)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer"),
        (np.array([0.5, 1.0, 2.0]), TypeError, "integer"),
        (2.0, TypeError, "integer"),
        (7, ValueError, "out of range"),
        ([0, 1, -9], ValueError, "out of range"),
        ([0, 1], ValueError, "entries"),
        ("cat", TypeError, "target must be"),
        (True, TypeError, "bool"),
    ],
    ids=["float-tensor", "float-array", "float", "range", "range-list", "length", "str", "bool"],
)
def test_bad_targets_are_refused_by_every_class(name, target, error, match):
    with pytest.raises(error, match=match):
        _call(name, _mlp(), _x(), target)


@pytest.mark.parametrize("name", NAMES)
def test_target_none_on_a_multi_output_model(name):
    model, x = _mlp(), _x()
    _, none_is_predicted = METHODS[name]
    if none_is_predicted:
        predicted = model(x).argmax(1)
        torch.testing.assert_close(_call(name, model, x, None), _call(name, model, x, predicted))
    else:
        with pytest.raises(ValueError, match="target=None"):
            _call(name, model, x, None)


class _TupleOut(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = _mlp()
        self.kind = kind

    def forward(self, x):
        out = self.net(x)
        return {"logits": out, "aux": out.sum(1)} if self.kind == "dict" else (out, out.sum(1))


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("Pattern")])
@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_tuple_and_dict_outputs_get_the_fix(name, kind):
    model = _TupleOut(kind).double().eval()
    with pytest.raises(TypeError, match="SelectOutput"):
        _call(name, model, _x(), 1)
    key = "logits" if kind == "dict" else 0
    fixed = _call(name, SelectOutput(model, key), _x(), 1)
    torch.testing.assert_close(fixed, _call(name, model.net, _x(), 1))


@pytest.mark.parametrize("name", NAMES)
def test_missing_batch_axis_dtype_mismatch_and_empty_batch(name):
    model, x = _mlp(), _x()
    with pytest.raises(ValueError, match="batch"):
        _call(name, model, x[0], 1)  # one sample without its batch axis
    with pytest.raises(TypeError, match="convert"):
        _call(name, model, x.float(), 1)
    with pytest.raises(ValueError, match="batch size 0"):
        _call(name, model, x[:0], 1)


# ---- LRP specifics ---------------------------------------------------------------------------


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp()
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x, scale):
        return self.net(x) * scale


def test_additional_forward_args_scale_keeps_conservation():
    model, x, t = _Scaled().double().eval(), _x(), torch.tensor([0, 1, 2])
    scale = torch.tensor(2.0, dtype=torch.float64)
    out = model(x, scale).gather(1, t[:, None]).squeeze(1)
    exact = Epsilon(0.0, stabilizer=0.0)
    lrp = LRP(model, rule_set=exact).attribute(x, target=t, additional_forward_args=scale)
    torch.testing.assert_close(lrp.sum(1), out, rtol=1e-9, atol=1e-12)
    # the module-hook path (glue guard) agrees
    hooks = LRP(model, rule_set=exact, canonizers=[]).attribute(
        x, target=t, additional_forward_args=scale
    )
    torch.testing.assert_close(hooks, lrp, rtol=1e-9, atol=1e-12)
    layer = LayerLRP(model, "net.2", rule_set=exact)
    at_layer = layer.attribute(x, target=t, additional_forward_args=(scale,))
    torch.testing.assert_close(at_layer.sum(1), out, rtol=1e-9, atol=1e-12)
    # and exactly twice the unscaled relevance
    plain = LRP(model.net, rule_set=exact).attribute(x, target=t)
    torch.testing.assert_close(lrp, 2 * plain, rtol=1e-9, atol=1e-12)


class _DenseStyle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3, C)

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(h)


def test_functional_operations_never_pass_silently():
    model = _DenseStyle().double().eval()
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64)
    # Module hooks cannot give the functional operations a rule: refused by name.
    with pytest.raises(TypeError, match="(relu|adaptive_avg_pool2d).*outside any module"):
        LRP(model, canonizers=[]).attribute(x, target=1)
    with pytest.raises(TypeError, match="outside any module"):
        LayerLRP(model, "conv", canonizers=[]).attribute(x, target=1)
    # above the functional part nothing is wrong: relevance at fc is returned
    LayerLRP(model, "fc", canonizers=[]).attribute(x, target=1)
    # The default traced path gives them rules: bias-free, it conserves.
    for module in (model.conv, model.fc):
        module.bias = None
    exact = Epsilon(1e-12, stabilizer=1e-12)
    r = LRP(model, rule_set=exact, check_conservation=True).attribute(x, target=1)
    torch.testing.assert_close(r.sum((1, 2, 3)), model(x)[:, 1], rtol=1e-9, atol=1e-12)


def test_torchvision_densenet_is_refused_not_wrong():
    from torchvision.models import densenet121

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = densenet121(num_classes=10).double().eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with pytest.raises(TypeError, match="outside any module"):
        LRP(model, canonizers=[]).attribute(x, target=1)
    # traced, DenseNet's functional relu/pooling get rules: finite relevance, no refusal
    assert torch.isfinite(LRP(model).attribute(x, target=1)).all()


def test_rule_set_name_map_typo_and_container_are_refused():
    model, x = _mlp(), _x()
    with pytest.raises(ValueError, match=r"no module named '3'.*'0', '1', '2'"):
        LRP(model, rule_set=RuleSet(name_map={"3": EpsilonRule()})).attribute(x, target=0)
    nested = nn.Sequential(_mlp()).double()
    with pytest.raises(ValueError, match="container"):
        LRP(nested, rule_set=Epsilon(name_map={"0": PassRule()})).attribute(x, target=0)
    # a correct name still works and matters
    ok = LRP(model, rule_set=Epsilon(name_map={"2": EpsilonRule(100.0)})).attribute(x, target=0)
    assert not torch.allclose(ok, LRP(model, rule_set=Epsilon()).attribute(x, target=0))


def test_merge_batchnorm_conflicting_or_unknown_pairs_are_refused():
    model = nn.Sequential(
        nn.Linear(D, 5), nn.BatchNorm1d(5), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, C)
    ).double()
    model.eval()
    x = _x()
    with pytest.raises(ValueError, match="paired with both"):
        LRP(model, canonizers=[MergeBatchNorm(pairs=[("2", "1")])]).attribute(x, target=0)
    with pytest.raises(ValueError, match="no module named 'bn'.*valid names"):
        LRP(model, canonizers=[MergeBatchNorm(pairs=[("0", "bn")])]).attribute(x, target=0)
    with pytest.raises(ValueError, match="is a ReLU"):
        LRP(model, canonizers=[MergeBatchNorm(pairs=[("3", "1")])]).attribute(x, target=0)
    # the automatic pair restated explicitly is fine
    LRP(model, canonizers=[MergeBatchNorm(pairs=[("0", "1")])]).attribute(x, target=0)


def test_layer_lrp_layer_by_name_and_foreign_layers():
    model, x = _mlp(), _x()
    by_module = LayerLRP(model, model[2]).attribute(x, target=1)
    torch.testing.assert_close(LayerLRP(model, "2").attribute(x, target=1), by_module)
    with pytest.raises(ValueError, match="not a submodule"):
        LayerLRP(model, nn.Linear(5, C))
    with pytest.raises(ValueError, match="no module named 'conv2'"):
        LayerLRP(model, "conv2")
    with pytest.raises(TypeError, match="nn.Module of the model or its name"):
        LayerLRP(model, 2)


def test_layer_lrp_takes_token_ids_through_an_embedding():
    emb = nn.Embedding(7, 3)
    model = nn.Sequential(emb, nn.Flatten(), nn.Linear(6, C)).double().eval()
    nn.init.zeros_(model[2].bias)
    tokens = torch.tensor([[1, 2], [3, 6]])
    rules = Epsilon(0.0, name_map={"0": GradientRule()})
    relevance = LayerLRP(model, "1", rule_set=rules).attribute(tokens, target=2)
    torch.testing.assert_close(relevance.sum(1), model(tokens)[:, 2], rtol=1e-9, atol=0)
    with pytest.raises(TypeError, match="embedding"):
        LRP(model, rule_set=rules).attribute(tokens, target=2)
