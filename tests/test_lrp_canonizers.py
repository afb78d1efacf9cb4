"""Canonizers: the function is preserved, the structure is what LRP needs, undo is bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_ext.core import ModelSnapshot
from captum_ext.lrp import (
    Canonizer,
    MergeBatchNorm,
    NoInplaceActivations,
    ResNetCanonizer,
    SumModule,
    canonized,
    default_canonizers,
)


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.rand(shape, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(shape, generator=gen) - 0.5)
    return model


def test_merge_batchnorm_preserves_function_and_removes_batchnorm(vgg_bn):
    x = torch.rand(2, 3, 32, 32, dtype=vgg_bn.features[0].weight.dtype)
    before = vgg_bn(x)
    snapshot = ModelSnapshot.of(vgg_bn)
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, a, out: seen.append(torch.equal(a[0], out)))
        for m in vgg_bn.modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    with canonized(vgg_bn, [MergeBatchNorm()]) as model:
        during = model(x)
    for hook in hooks:
        hook.remove()
    tol = 1e-12 if x.dtype == torch.float64 else 1e-5
    torch.testing.assert_close(during, before, rtol=tol, atol=tol)
    assert seen == [True] * 4  # every BatchNorm was the identity while canonized
    assert not snapshot.diff(ModelSnapshot.of(vgg_bn))
    torch.testing.assert_close(vgg_bn(x), before, rtol=0, atol=0)


def test_merge_batchnorm_matches_closed_form_on_conv_without_bias():
    conv, bn = nn.Conv2d(2, 3, 3, bias=False).double(), nn.BatchNorm2d(3).double()
    model = _randomise_batchnorm(nn.Sequential(conv, bn)).eval()
    original = conv.weight
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    canonizer = MergeBatchNorm()
    canonizer.apply(model)
    try:
        # W' = W·scale, b' = (0 − μ)·scale + β: a bias appears for the duration.
        torch.testing.assert_close(conv.weight, original * scale[:, None, None, None])
        torch.testing.assert_close(conv.bias, bn.bias - bn.running_mean * scale)
        assert conv.weight is not original
    finally:
        canonizer.remove()
    assert conv.weight is original and conv.bias is None
    canonizer.remove()  # a second remove is harmless


def test_resnet18_canonized_function_preserved_and_undone(resnet18):
    model = _randomise_batchnorm(resnet18)
    x = torch.rand(1, 3, 32, 32, dtype=next(model.parameters()).dtype)
    before = model(x)
    snapshot = ModelSnapshot.of(model)
    with canonized(model, default_canonizers()):
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(bns) == 20 and all("forward" in vars(m) for m in bns)  # all folded
        assert sum(isinstance(m, SumModule) for m in model.modules()) == 8
        assert not any(getattr(m, "inplace", False) for m in model.modules())
        during = model(x)
    tol = 1e-10 if x.dtype == torch.float64 else 1e-4
    torch.testing.assert_close(during, before, rtol=tol, atol=tol)
    assert not snapshot.diff(ModelSnapshot.of(model))


def test_resnet_canonizer_routes_every_residual_through_sum_module(resnet18):
    x = torch.rand(1, 3, 32, 32, dtype=next(resnet18.parameters()).dtype)
    calls = []
    with canonized(resnet18, [ResNetCanonizer()]):
        hooks = [
            m.register_forward_hook(lambda m, a, out: calls.append(len(a)))
            for m in resnet18.modules()
            if isinstance(m, SumModule)
        ]
        resnet18(x)
        for hook in hooks:
            hook.remove()
    assert calls == [2] * 8


def test_canonizers_undone_on_exception(resnet18):
    snapshot = ModelSnapshot.of(resnet18)
    with pytest.raises(RuntimeError, match="boom"):
        with canonized(resnet18, default_canonizers()):
            raise RuntimeError("boom")
    assert not snapshot.diff(ModelSnapshot.of(resnet18))

    class Failing(Canonizer):
        def apply(self, model):
            raise ValueError("cannot apply")

        def remove(self):
            pass

    with pytest.raises(ValueError, match="cannot apply"):
        with canonized(resnet18, [MergeBatchNorm(), Failing()]):
            pass  # pragma: no cover
    assert not snapshot.diff(ModelSnapshot.of(resnet18))


def test_user_forward_attribute_is_restored():
    bn = nn.BatchNorm1d(3).eval()
    model = nn.Sequential(nn.Linear(2, 3), bn)

    def custom(x):
        return x * 2

    bn.forward = custom
    with canonized(model, [MergeBatchNorm()]):
        assert bn.forward is not custom
    assert bn.forward is custom


def test_explicit_pairs_and_errors():
    lin, bn = nn.Linear(3, 4).double(), nn.BatchNorm1d(4).double()

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.norm = lin, bn

        def forward(self, x):
            return self.norm(self.first(x))

    model = _randomise_batchnorm(Odd()).eval()
    x = torch.rand(5, 3, dtype=torch.float64)
    before = model(x)
    assert MergeBatchNorm.find_pairs(model) == []  # not a known layout
    with canonized(model, [MergeBatchNorm(pairs=[("first", "norm")])]):
        assert "forward" in vars(bn)
        torch.testing.assert_close(model(x), before)
    with pytest.raises(ValueError, match="no module named 'missing'"):
        with canonized(model, [MergeBatchNorm(pairs=[("first", "missing")])]):
            pass  # pragma: no cover
    no_stats = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))
    snapshot = ModelSnapshot.of(no_stats)
    with pytest.raises(ValueError, match="running statistics"):
        with canonized(no_stats, [MergeBatchNorm()]):
            pass  # pragma: no cover
    assert not snapshot.diff(ModelSnapshot.of(no_stats))
    with pytest.raises(TypeError, match="Canonizer instances"):
        with canonized(model, [object()]):
            pass  # pragma: no cover


def test_no_inplace_activations_restores_flags():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True), nn.ReLU())
    with canonized(model, [NoInplaceActivations()]):
        assert model[1].inplace is False and model[2].inplace is False
    assert model[1].inplace is True and model[2].inplace is False
