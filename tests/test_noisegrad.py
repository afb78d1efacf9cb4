"""NoiseGrad / FusionGrad (Bykov et al. 2022): formula oracle, model safety, seeding, nesting."""

from __future__ import annotations

import importlib

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from torch import nn
from torch.func import functional_call

from captum_ext import AdaptGrad, FusionGrad, NoiseGrad
from captum_ext.core.guard import ModelSnapshot

# Captum warns whenever it switches on requires_grad for an input; that is expected here
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor.*did not already require gradients")


def _net(dtype: torch.dtype) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    return model.to(dtype).eval()


@pytest.fixture
def net(dtype) -> nn.Module:
    return _net(dtype)


def _x(dtype: torch.dtype, seed: int = 0, n: int = 3) -> torch.Tensor:
    return torch.rand(n, 1, 10, 10, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return (
        {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    )


def _slow_noisegrad(model, x, target, n_models, std, seed, mean=1.0):
    """Eq. of NoiseGrad written out: gradients of f(θ ⊙ η_m) by functional_call, averaged.

    Draw order: for each model, one standard-normal tensor per parameter in named order.
    """
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    total = torch.zeros_like(x)
    for _ in range(n_models):
        noisy = {
            name: p.detach() * (mean + std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            for name, p in params.items()
        }
        xg = x.clone().requires_grad_()
        out = functional_call(model, noisy, (xg,))
        total += torch.autograd.grad(out[:, target].sum(), xg)[0]
    return total / n_models


@pytest.mark.parametrize(
    "make, extra",
    [
        (Saliency, {"abs": False}),
        (InputXGradient, {}),
        (IntegratedGradients, {"baselines": 0.0, "n_steps": 6}),
        (IntegratedGradients, {"baselines": 1.0, "n_steps": 6}),
    ],
)
def test_zero_std_equals_wrapped_and_model_unchanged(net, make, extra):
    dtype = next(net.parameters()).dtype
    x = _x(dtype)
    before = ModelSnapshot.of(net)
    plain = make(net).attribute(x, target=2, **extra)
    ours = NoiseGrad(make(net), n_models=3, std=0.0).attribute(
        x, target=2, seed=0, progress=False, **extra
    )
    torch.testing.assert_close(ours, plain, **_tol(dtype))
    assert before.diff(ModelSnapshot.of(net)) == []


def test_matches_slow_reference_and_changes_the_map(net):
    dtype = next(net.parameters()).dtype
    x = _x(dtype, seed=1)
    before = ModelSnapshot.of(net)
    ours = NoiseGrad(Saliency(net), n_models=4, std=0.3).attribute(
        x, target=1, seed=7, abs=False, progress=False
    )
    expected = _slow_noisegrad(net, x, 1, 4, 0.3, 7)
    torch.testing.assert_close(ours, expected, **_tol(dtype))
    plain = Saliency(net).attribute(x, target=1, abs=False)
    assert (ours - plain).abs().max() > 1e-3  # the noise does something
    assert before.diff(ModelSnapshot.of(net)) == []


def test_factory_equals_instance_and_seeding(net):
    dtype = next(net.parameters()).dtype
    x = _x(dtype, seed=2)
    state = torch.random.get_rng_state()
    by_instance = NoiseGrad(Saliency(net), n_models=3).attribute(
        x, target=0, seed=3, progress=False
    )
    by_factory = NoiseGrad(lambda m: Saliency(m), model=net, n_models=3).attribute(
        x, target=0, generator=torch.Generator().manual_seed(3), progress=False
    )
    by_ctor_seed = NoiseGrad(Saliency(net), n_models=3, seed=3).attribute(
        x, target=0, progress=False
    )
    other = NoiseGrad(Saliency(net), n_models=3).attribute(x, target=0, seed=4, progress=False)
    assert torch.equal(by_instance, by_factory) and torch.equal(by_instance, by_ctor_seed)
    assert not torch.equal(by_instance, other)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_param_filter(net):
    dtype = next(net.parameters()).dtype
    x = _x(dtype, seed=3)
    nothing = NoiseGrad(Saliency(net), n_models=2, param_filter=lambda name, p: False)
    torch.testing.assert_close(
        nothing.attribute(x, target=0, seed=0, progress=False),
        Saliency(net).attribute(x, target=0),
        **_tol(dtype),
    )
    weights_only = NoiseGrad(Saliency(net), n_models=2, param_filter=lambda n, p: "weight" in n)
    result = weights_only.attribute(x, target=0, seed=0, progress=False)
    assert result.shape == x.shape and torch.isfinite(result).all()


def test_model_untouched_after_failure_and_train_mode_kept(net):
    dtype = next(net.parameters()).dtype
    net.train()
    before = ModelSnapshot.of(net)
    with pytest.raises(ValueError, match="out of range"):  # refused before any work
        NoiseGrad(Saliency(net), n_models=2).attribute(
            _x(dtype), target=17, seed=0, progress=False
        )

    def broken(model):
        raise RuntimeError("factory failed")

    with pytest.raises(RuntimeError, match="factory failed"):
        NoiseGrad(broken, model=net).attribute(_x(dtype), target=0, progress=False)
    assert before.diff(ModelSnapshot.of(net)) == []


def test_fusiongrad_against_direct_computation(net):
    """FusionGrad = mean over perturbed models of SmoothGrad; reproduce both noise layers."""
    dtype = next(net.parameters()).dtype
    x, n_models, n_samples, std, input_std = _x(dtype, seed=4, n=2), 2, 3, 0.2, 0.1
    ours = FusionGrad(
        Saliency(net), n_models=n_models, std=std, n_samples=n_samples, input_std=input_std
    ).attribute(x, target=3, seed=5, abs=False, progress=False)
    gen = torch.Generator().manual_seed(5)
    params = dict(net.named_parameters())
    total = torch.zeros_like(x)
    for _ in range(n_models):
        noisy = {
            k: p.detach() * (1 + std * torch.randn(p.shape, generator=gen, dtype=dtype))
            for k, p in params.items()
        }
        rep = x.repeat_interleave(n_samples, 0)
        xs = (rep + input_std * torch.randn(rep.shape, generator=gen, dtype=dtype)).requires_grad_()
        out = functional_call(net, noisy, (xs,))
        grads = torch.autograd.grad(out[:, 3].sum(), xs)[0]
        total += grads.view(2, n_samples, *x.shape[1:]).mean(1)
    torch.testing.assert_close(ours, total / n_models, **_tol(dtype))


def test_fusiongrad_without_input_noise_is_noisegrad(net):
    dtype = next(net.parameters()).dtype
    x = _x(dtype, seed=5)
    fg = FusionGrad(Saliency(net), n_models=1, n_samples=2, input_std=0.0)
    ng = NoiseGrad(Saliency(net), n_models=1)
    torch.testing.assert_close(
        fg.attribute(x, target=1, seed=2, progress=False),
        ng.attribute(x, target=1, seed=2, progress=False),
        **_tol(dtype),
    )


def test_nesting_in_noisetunnel_and_adaptgrad(net):
    """S-NG and A-NG (Zhou et al., 2025, Table 2): NoiseGrad inside Captum's NoiseTunnel and
    AdaptGrad."""
    dtype = next(net.parameters()).dtype
    x = _x(dtype, seed=6)
    before = ModelSnapshot.of(net)
    ng = NoiseGrad(Saliency(net), n_models=2, seed=0)
    with torch.random.fork_rng(devices=[]):
        s_ng = NoiseTunnel(ng).attribute(x, nt_samples=2, stdevs=0.1, target=0, progress=False)
    a_ng = AdaptGrad(ng, (0.0, 1.0)).attribute(x, nt_samples=2, target=0, seed=1, progress=False)
    assert s_ng.shape == a_ng.shape == x.shape
    assert torch.isfinite(s_ng).all() and torch.isfinite(a_ng).all()
    # inputs on the bounds: σ = 0, so A-NG reduces to NG exactly
    binary = (x > 0.5).to(dtype)
    torch.testing.assert_close(
        AdaptGrad(ng, (0.0, 1.0)).attribute(binary, nt_samples=2, target=0, progress=False),
        ng.attribute(binary, target=0, progress=False),
        **_tol(dtype),
    )
    assert before.diff(ModelSnapshot.of(net)) == []


def test_tuple_inputs_and_forward_args():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(5, 3), nn.Linear(2, 3)

        def forward(self, u, v, scale):
            return (self.a(u) * self.b(v)) * scale

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Two().double()
    gen = torch.Generator().manual_seed(0)
    u, v = torch.rand(4, 5, generator=gen).double(), torch.rand(4, 2, generator=gen).double()
    ours = NoiseGrad(Saliency(model), n_models=2, std=0.0).attribute(
        (u, v), target=1, additional_forward_args=(3.0,), seed=0, progress=False
    )
    plain = Saliency(model).attribute((u, v), target=1, additional_forward_args=(3.0,))
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_progress_bar_switch(net, capsys):
    x = _x(next(net.parameters()).dtype, n=1)
    NoiseGrad(Saliency(net), n_models=2).attribute(x, target=0, seed=0, progress=True)
    assert "NoiseGrad" in capsys.readouterr().err
    NoiseGrad(Saliency(net), n_models=2).attribute(x, target=0, seed=0, progress=False)
    assert "NoiseGrad" not in capsys.readouterr().err
    # progress=None (default): a bar on terminals only; pytest's captured stderr is none
    NoiseGrad(Saliency(net), n_models=2).attribute(x, target=0, seed=0)
    assert "NoiseGrad" not in capsys.readouterr().err
    with pytest.warns(DeprecationWarning, match="progress="):
        NoiseGrad(Saliency(net), n_models=2).attribute(x, target=0, seed=0, show_progress=True)
    assert "NoiseGrad" in capsys.readouterr().err


def test_bad_input(net):
    dtype = next(net.parameters()).dtype
    with pytest.raises(ValueError, match="n_models"):
        NoiseGrad(Saliency(net), n_models=0)
    with pytest.raises(ValueError, match="std"):
        NoiseGrad(Saliency(net), std=-0.1)
    with pytest.raises(TypeError, match="factory"):
        NoiseGrad(lambda m: Saliency(m))
    with pytest.raises(TypeError, match="Attribution"):
        NoiseGrad(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_samples"):
        FusionGrad(Saliency(net), n_samples=0)
    with pytest.raises(ValueError, match="convergence"):
        NoiseGrad(IntegratedGradients(net)).attribute(
            _x(dtype), target=0, return_convergence_delta=True
        )
    bad = _x(dtype)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        NoiseGrad(Saliency(net)).attribute(bad, target=0)
    with pytest.raises(TypeError, match="factory"):
        NoiseGrad(Saliency(lambda t: net(t)))


def test_wraps_captum_ext_lrp():
    lrp_cls = importlib.import_module("captum_ext.lrp").LRP
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    x = torch.rand(2, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = ModelSnapshot.of(model)
    plain = lrp_cls(model).attribute(x, target=2)
    ours = NoiseGrad(lrp_cls(model), n_models=2, std=0.0).attribute(
        x, target=2, seed=0, progress=False
    )
    torch.testing.assert_close(ours, plain, rtol=1e-10, atol=1e-12)
    noisy = NoiseGrad(lrp_cls(model), n_models=2).attribute(x, target=2, progress=False)
    assert torch.isfinite(noisy).all()
    assert before.diff(ModelSnapshot.of(model)) == []
