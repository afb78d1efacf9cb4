"""One validation for every class: targets, model outputs, batch axis, dtype, empty batches.

Also the LRP-specific silent failures: target=None on multi-output models,
functional operations in the forward (scales passed as additional_forward_args, DenseNet-style
F.relu/pooling), RuleSet names and MergeBatchNorm pairs, LayerLRP layers given by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_ext import LRP, LayerLRP
from captum_ext.core.validation import SelectOutput
from captum_ext.lrp import (
    Epsilon,
    EpsilonRule,
    GradientRule,
    MergeBatchNorm,
    PassRule,
    RuleSet,
)
from tests.safety_models import (
    METHODS,
    NAMES,
    C,
    D,
    DenseStyle,
    Scaled,
    TupleOut,
    call,
    inputs,
    mlp,
)

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
    model, x = mlp(), inputs()
    t = torch.tensor([0, 3, 1])
    reference = call(name, model, x, t)
    for form, make in TARGET_FORMS.items():
        out = call(name, model, x, make(t))
        torch.testing.assert_close(out, reference, msg=f"{name} with {form}")
    # a single class: int, numpy scalar and 0-d tensor agree
    single = call(name, model, x, 2)
    torch.testing.assert_close(call(name, model, x, np.int64(2)), single)
    torch.testing.assert_close(call(name, model, x, torch.tensor(2)), single)


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
        call(name, mlp(), inputs(), target)


@pytest.mark.parametrize("name", NAMES)
def test_target_none_on_a_multi_output_model(name):
    model, x = mlp(), inputs()
    _, none_is_predicted = METHODS[name]
    if none_is_predicted:
        predicted = model(x).argmax(1)
        torch.testing.assert_close(call(name, model, x, None), call(name, model, x, predicted))
    else:
        with pytest.raises(ValueError, match="target=None"):
            call(name, model, x, None)


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("Pattern")])
@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_tuple_and_dict_outputs_get_the_fix(name, kind):
    model = TupleOut(kind).double().eval()
    with pytest.raises(TypeError, match="SelectOutput"):
        call(name, model, inputs(), 1)
    key = "logits" if kind == "dict" else 0
    fixed = call(name, SelectOutput(model, key), inputs(), 1)
    torch.testing.assert_close(fixed, call(name, model.net, inputs(), 1))


@pytest.mark.parametrize("name", NAMES)
def test_missing_batch_axis_dtype_mismatch_and_empty_batch(name):
    model, x = mlp(), inputs()
    with pytest.raises(ValueError, match="batch"):
        call(name, model, x[0], 1)  # one sample without its batch axis
    with pytest.raises(TypeError, match="convert"):
        call(name, model, x.float(), 1)
    with pytest.raises(ValueError, match="batch size 0"):
        call(name, model, x[:0], 1)


# ---- LRP specifics ---------------------------------------------------------------------------


def test_additional_forward_args_scale_keeps_conservation():
    model, x, t = Scaled().double().eval(), inputs(), torch.tensor([0, 1, 2])
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


def test_functional_operations_never_pass_silently():
    model = DenseStyle().double().eval()
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
    model, x = mlp(), inputs()
    with pytest.raises(ValueError, match=r"no module named '3'.*'0', '1', '2'"):
        LRP(model, rule_set=RuleSet(name_map={"3": EpsilonRule()})).attribute(x, target=0)
    nested = nn.Sequential(mlp()).double()
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
    x = inputs()
    with pytest.raises(ValueError, match="paired with both"):
        LRP(model, canonizers=[MergeBatchNorm(pairs=[("2", "1")])]).attribute(x, target=0)
    with pytest.raises(ValueError, match="no module named 'bn'.*valid names"):
        LRP(model, canonizers=[MergeBatchNorm(pairs=[("0", "bn")])]).attribute(x, target=0)
    with pytest.raises(ValueError, match="is a ReLU"):
        LRP(model, canonizers=[MergeBatchNorm(pairs=[("3", "1")])]).attribute(x, target=0)
    # the automatic pair restated explicitly is fine
    LRP(model, canonizers=[MergeBatchNorm(pairs=[("0", "1")])]).attribute(x, target=0)


def test_layer_lrp_layer_by_name_and_foreign_layers():
    model, x = mlp(), inputs()
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
