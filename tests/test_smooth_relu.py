"""Smooth ReLU parameterisation (Mehrpanah et al. 2025): closed form, limit, reversibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from captum_ext.smooth_relu import SmoothReLU, gaussian_smoothed_relu, smooth_relu, smoothed_copy


@pytest.mark.parametrize("beta", [0.5, 2.0, 10.0])
def test_closed_form_equals_numerical_convolution(beta):
    sigma = 1.0 / beta
    points = np.array([-3.0, -0.7, -0.05, 0.0, 0.3, 1.2, 4.0])
    for z in points:
        # ∫ max(0, z - t) N(t; 0, σ²) dt, integrated numerically over t < z only
        value, _ = integrate.quad(
            lambda t, z=z: (z - t) * stats.norm.pdf(t, scale=sigma), -np.inf, z, epsabs=1e-13
        )
        closed = gaussian_smoothed_relu(torch.tensor(z, dtype=torch.float64), beta).item()
        assert closed == pytest.approx(value, abs=1e-10)


def test_beta_to_infinity_is_relu():
    z = torch.linspace(-5, 5, 2001, dtype=torch.float64)
    errors = []
    for beta in (1.0, 10.0, 100.0, 1000.0):
        gap = (gaussian_smoothed_relu(z, beta) - torch.relu(z)).abs().max().item()
        # the largest distance is at z = 0 and equals φ(0)/β
        assert gap == pytest.approx(1 / (beta * math.sqrt(2 * math.pi)), rel=1e-12)
        errors.append(gap)
    assert errors == sorted(errors, reverse=True)
    assert torch.equal(SmoothReLU(math.inf)(z), torch.relu(z))
    assert torch.equal(gaussian_smoothed_relu(z, math.inf), torch.relu(z))


def test_derivative_is_the_gaussian_cdf():
    z = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gaussian_smoothed_relu(z, 2.0).sum(), z)
    assert torch.allclose(grad, torch.from_numpy(stats.norm.cdf(2.0 * z.detach().numpy())))


def test_logistic_kernel_is_softplus():
    z = torch.linspace(-4, 4, 81, dtype=torch.float64)
    assert torch.allclose(SmoothReLU(3.0, "logistic")(z), torch.log1p(torch.exp(3.0 * z)) / 3.0)


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.ReLU(inplace=True),
        torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.ReLU()), torch.nn.Linear(6, 2),
    ).double()  # fmt: skip


def test_context_manager_swaps_and_restores_even_on_error():
    model = _net()
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = model(x)
    with smooth_relu(model, 2.0) as smooth:
        assert smooth is model
        assert sum(isinstance(m, SmoothReLU) for m in model.modules()) == 2
        assert not torch.allclose(model(x), before)
    assert [m for m in model.modules() if isinstance(m, torch.nn.ReLU)] == relus
    assert relus[0].inplace and torch.equal(model(x), before)
    with pytest.raises(RuntimeError, match="boom"), smooth_relu(model, 2.0):
        raise RuntimeError("boom")
    assert [m for m in model.modules() if isinstance(m, torch.nn.ReLU)] == relus
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_copy_leaves_model_alone_and_refuses_functional_relu():
    model = _net()
    copy = smoothed_copy(model, 1e6)
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert any(isinstance(m, SmoothReLU) for m in copy.modules())
    assert not any(isinstance(m, SmoothReLU) for m in model.modules())
    assert torch.allclose(copy(x), model(x), atol=1e-5)
    with pytest.raises(ValueError, match="functional"):
        smoothed_copy(torch.nn.Linear(2, 2), 1.0)
    with pytest.raises(ValueError, match="beta"):
        SmoothReLU(0.0)


def test_second_derivative_is_the_gaussian_density():
    z = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(gaussian_smoothed_relu(z, 3.0).sum(), z, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), z)
    assert torch.allclose(second, torch.from_numpy(3.0 * stats.norm.pdf(3.0 * z.detach().numpy())))
    assert torch.autograd.gradcheck(
        lambda t: gaussian_smoothed_relu(t, 1.5), (z[:7].detach().clone().requires_grad_(),)
    )
