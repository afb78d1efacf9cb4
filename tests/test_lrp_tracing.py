"""Automatic canonization (captum_ext.lrp.tracing): functional models conserve or are refused.

Oracles: conservation Σ R = f_c (a closed-form property of bias-free LRP-0), and gradient × input
(LRP-0 with the identity on ReLUs equals gradient × input on bias-free ReLU networks, Montavon
et al. 2019 / Ancona et al. 2018; with a gate held constant, the gradient of the model whose
gate is detached).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_ext.core import ModelSnapshot
from captum_ext.lrp import LRP, Epsilon, EpsilonPlus, GradientRule, LayerLRP, PassRule, tracing
from captum_ext.lrp.tracing import Addition, TracingError
from captum_ext.zoo.functional_models import (
    FUNCTIONAL_MODELS,
    functional_model,
)


def _init(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.double().eval()


def _grad_times_input(model, x, target):
    x = x.clone().requires_grad_()
    gated = hasattr(model, "detach_gate")
    model.detach_gate = True if gated else None
    try:
        out = model(x)[:, target].sum()
    finally:
        if gated:
            model.detach_gate = False
        else:
            del model.detach_gate
    (grad,) = torch.autograd.grad(out, x)
    return x.detach() * grad


@pytest.mark.parametrize("name", list(FUNCTIONAL_MODELS))
def test_functional_models_conserve_and_equal_gradient_times_input(name):
    model = functional_model(name)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    snapshot = ModelSnapshot.of(model)
    lrp = LRP(model, rule_set=Epsilon(1e-12, stabilizer=1e-12), check_conservation=1e-6)
    relevance, delta = lrp.attribute(x, target=1, return_convergence_delta=True)
    out = model(x)[:, 1]
    assert ((delta.abs() / out.abs()) < 1e-6).all(), (delta, out)
    torch.testing.assert_close(relevance, _grad_times_input(model, x, 1), rtol=1e-8, atol=1e-10)
    assert not snapshot.diff(ModelSnapshot.of(model))


def test_issue_residual_block_is_refused_on_the_module_hook_path():
    model = functional_model("ResidualNet")
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = model(x)[:, 1].detach()
    rule_set = Epsilon(1e-12, stabilizer=1e-12)
    automatic = LRP(model, rule_set=rule_set).attribute(x, target=1)
    torch.testing.assert_close(automatic.sum((1, 2, 3)), out, rtol=1e-9, atol=0)
    # canonizers= wins and selects the module hooks, which cannot give the functional "+" a
    # rule: the glue guard refuses it by name instead of returning the wrong relevance.
    with pytest.raises(TypeError, match="applies `add`"):
        LRP(model, rule_set=rule_set, canonizers=[]).attribute(x, target=1)


def test_float32_and_epsilon_plus_run():
    model = functional_model("GatedNet").float()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    relevance = LRP(model, rule_set=Epsilon(1e-9), check_conservation=True).attribute(x, target=0)
    assert relevance.dtype == torch.float32 and torch.isfinite(relevance).all()
    assert torch.isfinite(LRP(model, rule_set=EpsilonPlus()).attribute(x, target=0)).all()


def test_second_call_costs_no_tracing(monkeypatch):
    calls = []
    original = tracing._LRPTracer.trace

    def counting(self, root, *args, **kwargs):
        calls.append(type(root).__name__)
        return original(self, root, *args, **kwargs)

    monkeypatch.setattr(tracing._LRPTracer, "trace", counting)
    model = functional_model("ConcatNet")
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    lrp = LRP(model, rule_set=Epsilon(1e-9))
    first = lrp.attribute(x, target=0)
    second = LRP(model, rule_set=EpsilonPlus()).attribute(x, target=0)  # other rule set
    third = lrp.attribute(x, target=0)
    assert calls == ["ConcatNet"]
    torch.testing.assert_close(first, third, rtol=0, atol=0)
    assert not torch.equal(first, second)
    # A changed model (a replaced layer, eval/train) is traced again.
    model.b = nn.Conv2d(3, 2, 1, bias=False).double()
    lrp.attribute(x, target=0)
    assert calls == ["ConcatNet", "ConcatNet"]


class Squares(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3, bias=False)
        self.b = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.a(x) * self.b(x)  # a bilinear product: no default rule


class Exponential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return torch.exp(self.a(x))


@pytest.mark.parametrize(
    ("factory", "op"),
    [(Squares, "operator.mul"), (Exponential, "torch.exp")],
)
def test_unsupported_ops_refused_before_computing_with_source_line(factory, op):
    model = _init(factory())
    x = torch.rand(2, 4, dtype=torch.float64)
    calls = []
    model.a.register_forward_hook(lambda *_: calls.append(1))
    snapshot = ModelSnapshot.of(model)
    with pytest.raises(TracingError, match=rf"{op} at .*test_lrp_tracing\.py:\d+: return"):
        LRP(model, rule_set=Epsilon()).attribute(x, target=0)
    assert calls == []  # refused before the forward pass
    assert not snapshot.diff(ModelSnapshot.of(model))


def test_product_gets_a_rule_from_the_rule_set():
    from captum_ext.lrp.tracing import Product, ProportionalRule

    model = _init(Squares())
    x = torch.rand(2, 4, dtype=torch.float64)
    rule_set = Epsilon(
        1e-12,
        stabilizer=1e-12,
        layer_map=[(Product, ProportionalRule(1e-12, 0.5, all_variables=True))],
    )
    _, delta = LRP(model, rule_set=rule_set).attribute(x, target=0, return_convergence_delta=True)
    assert (delta.abs() < 1e-9).all()


def test_untraceable_model_refused_and_sequential_fallback(monkeypatch):
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.a(x)
            return -self.a(x)

    x = torch.rand(2, 4, dtype=torch.float64)
    model = _init(Branchy())
    # Not traceable: the module hooks run, guarded against functional operations (the "-" is
    # a sign flip, which passes relevance); the same as choosing that path explicitly.
    automatic = LRP(model).attribute(x, target=0)
    torch.testing.assert_close(automatic, LRP(model, canonizers=[]).attribute(x, target=0))

    # A pure nn.Sequential has no functional code: if tracing fails it runs on module hooks.
    def failing(self, root, *args, **kwargs):
        raise RuntimeError("tracer down")

    monkeypatch.setattr(tracing._LRPTracer, "trace", failing)
    seq = _init(nn.Sequential(nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 2, bias=False)))
    _, delta = LRP(seq, rule_set=Epsilon(1e-12, stabilizer=1e-12)).attribute(
        x, target=1, return_convergence_delta=True
    )
    assert (delta.abs() < 1e-9).all()


def test_rule_sets_address_the_new_modules():
    model = functional_model("ResidualNet")
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    base = dict(epsilon=1e-12, stabilizer=1e-12)
    default = LRP(model, rule_set=Epsilon(**base)).attribute(x, target=1)
    by_type = LRP(
        model, rule_set=Epsilon(**base, layer_map=[(Addition, GradientRule())])
    ).attribute(x, target=1)
    by_name = LRP(model, rule_set=Epsilon(**base, name_map={"fx.add": GradientRule()})).attribute(
        x, target=1
    )
    # Both address the same module; the gradient on the addition (what module hooks would do)
    # is not the proportional split of the default, which conserves relevance.
    torch.testing.assert_close(by_name, by_type, rtol=1e-12, atol=0)
    assert not torch.allclose(by_type, default, rtol=1e-3)
    f = model(x)[:, 1].detach()
    torch.testing.assert_close(default.sum((1, 2, 3)), f, rtol=1e-9, atol=0)
    assert ((by_type.sum((1, 2, 3)) / f - 1).abs() > 1e-3).all()
    # A plain rule on an op module works too (PassRule on the single-input ReLU op).
    relu_pass = LRP(model, rule_set=Epsilon(**base, name_map={"fx.relu": PassRule()}))
    torch.testing.assert_close(relu_pass.attribute(x, target=1).sum(), model(x)[:, 1].sum())


def test_additional_forward_args_are_constants():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3, bias=False)

        def forward(self, x, scale):
            return self.a(F.relu(x)) * scale

    model = _init(Scaled())
    x = torch.randn(3, 4, dtype=torch.float64)
    scale = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64)
    _, delta = LRP(model, rule_set=Epsilon(1e-12, stabilizer=1e-12)).attribute(
        x, target=2, additional_forward_args=(scale,), return_convergence_delta=True
    )
    assert (delta.abs() < 1e-9).all()


def test_layer_lrp_at_a_traced_through_module_and_user_hooks():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, padding=1, bias=False)

        def forward(self, x):
            return F.relu(self.c(x)) + x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()
            self.fc = nn.Linear(3 * 8 * 8, 2, bias=False)

        def forward(self, x):
            return self.fc(self.block(x).flatten(1))

    model = _init(Net())
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    f = model(x)[:, 0].detach()
    rule_set = Epsilon(1e-12, stabilizer=1e-12)
    # A module that tracing passes through is never called as a module: LayerLRP refuses it.
    with pytest.raises(ValueError, match="not part of the module LRP runs"):
        LayerLRP(model, model.block, rule_set=rule_set).attribute(x, target=0)
    for to_input in (False, True):
        r = LayerLRP(model, model.fc, rule_set=rule_set).attribute(
            x, target=0, attribute_to_layer_input=to_input
        )
        torch.testing.assert_close(r.sum(1), f, rtol=1e-9, atol=0)
    # The block's own hooks still run (on the traced graph's tensors), once per call.
    seen = []
    handle = model.block.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    LRP(model, rule_set=rule_set).attribute(x, target=0)
    handle.remove()
    assert seen == [torch.Size([2, 3, 8, 8])]
