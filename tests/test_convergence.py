"""Convergence constants (Binder et al., 2025; docs/convergence_bounds.md): bounds, Hoeffding,
curve fit, the claim."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import quantus
import torch
from captum.attr import Saliency
from torch import nn

from captum_ext.core.guard import ModelSnapshot
from captum_ext.lrp import LRP, AlphaBeta, Epsilon
from captum_ext.zoo import SmallMLP
from quantus_metrics import ConvergenceConstants
from quantus_metrics.convergence import (
    adaptgrad_perturbation,
    chain_layers,
    convergence_constants,
    fit_convergence_constant,
    gaussian_perturbation,
    hoeffding_draws,
    operator_norm,
)
from quantus_metrics.explain import explain_func_from

GRADIENT = explain_func_from(Saliency, abs=False)


def _lrp_ab(beta: float, stabilizer: float = 1e-6):
    rule_set = AlphaBeta(1.0 + beta, beta, stabilizer)
    return explain_func_from(lambda m: LRP(m, rule_set=rule_set))


def _lrp_eps(epsilon: float):
    return explain_func_from(lambda m: LRP(m, rule_set=Epsilon(epsilon)))


def _mlp(seed: int, bias: bool, widths=(24, 24), n_in: int = 12) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallMLP(n_in, widths, 4, bias=bias).double().eval()


def _small_cnn(seed: int, bias: bool) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return (
            nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1, bias=bias),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=bias),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(6 * 2 * 2, 3, bias=bias),
            )
            .double()
            .eval()
        )


def _run(model, x, explain, theoretical=None, seed=0, **kwargs):
    y = model(x).argmax(1)
    options = {"n_grid": (1, 2, 4), "n_reference": 8, "sigma": 0.3, **kwargs}
    sigma = options.pop("sigma")
    return convergence_constants(
        model,
        x,
        y,
        explain,
        gaussian_perturbation(sigma),
        theoretical=theoretical,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )


# --------------------------------------------------------------------------------------------
# closed forms and oracles
# --------------------------------------------------------------------------------------------


def test_hoeffding_closed_form_and_coverage():
    bound, t, delta = 2.0, 0.25, 0.05
    n = hoeffding_draws(bound, t, delta).item()
    assert n == pytest.approx(2 * bound**2 * math.log(2 / delta) / t**2, rel=1e-12)
    # the guarantee itself: means of ⌈N⌉ uniform[−B, B] draws miss by ≥ t at most δ of the time
    gen = torch.Generator().manual_seed(0)
    draws = (torch.rand(4000, math.ceil(n), generator=gen, dtype=torch.float64) * 2 - 1) * bound
    assert (draws.mean(1).abs() >= t).double().mean().item() <= delta


@pytest.mark.parametrize(
    ("padding", "stride", "dilation", "groups"),
    [(0, 1, 1, 1), (1, 2, 1, 1), (2, 1, 2, 1), (1, 1, 1, 2)],
)
def test_operator_norm_equals_dense_svd(padding, stride, dilation, groups):
    gen = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=padding, stride=stride, dilation=dilation, groups=groups)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
    conv = conv.double()
    shape = (1, 4, 7, 7)
    # the operator's dense matrix: the layer applied to every unit vector at once
    basis = torch.eye(math.prod(shape), dtype=torch.float64).view(-1, *shape[1:])
    dense = conv._conv_forward(basis, conv.weight, None).detach().flatten(1).T
    expected = torch.linalg.matrix_norm(dense, 2).item()
    assert operator_norm(conv, shape) == pytest.approx(expected, rel=1e-8)
    linear = nn.Linear(9, 5).double()
    exact = torch.linalg.matrix_norm(linear.weight.detach(), 2).item()
    assert operator_norm(linear, (1, 9)) == pytest.approx(exact, rel=1e-10)


def test_fit_recovers_known_constant():
    grid = (1, 2, 4, 8)
    errors = torch.tensor([[3.0 * math.sqrt(1 / n + 1 / 16)] for n in grid], dtype=torch.float64)
    assert fit_convergence_constant(grid, errors, 16).item() == pytest.approx(3.0, rel=1e-12)


# --------------------------------------------------------------------------------------------
# the analytic bounds hold
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize(
    ("kind", "explain", "beta"),
    [
        ("gradient", GRADIENT, 1.0),
        ("lrp_alphabeta", _lrp_ab(1.0), 1.0),
        ("lrp_alphabeta", _lrp_ab(0.0), 0.0),
        ("lrp_epsilon", _lrp_eps(0.05), 1.0),
    ],
    ids=["gradient", "ab-beta1", "ab-beta0", "epsilon"],
)
def test_empirical_never_exceeds_theoretical(kind, explain, beta, bias):
    """Random ReLU nets, signed Gaussian-perturbed inputs, with and without bias.

    Conditions (documented in the module): plain chains of Linear/Conv/ReLU/pooling; LRP-αβ with
    the bias split by sign (captum_ext.lrp), so the bound needs no non-negative inputs and
    holds with bias; LRP-ε with the same ε in the explainer and the bound.
    """
    for seed in range(3):
        model = _mlp(seed, bias)
        x = torch.rand(4, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        result = _run(model, x, explain, kind, seed=seed, beta=beta, epsilon=0.05)
        assert torch.all(result.bound <= result.theoretical * (1 + 1e-9)), (seed, result)
    cnn = _small_cnn(0, bias)
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    result = _run(cnn, images, explain, kind, beta=beta, epsilon=0.05)
    assert torch.all(result.bound <= result.theoretical * (1 + 1e-9))


# --------------------------------------------------------------------------------------------
# Binder et al.'s claim: LRP-β constants are weight-norm free, the gradient's and LRP-ε's are not
# --------------------------------------------------------------------------------------------


def _scaled(model: nn.Module, layer: int, s: float, compensate: bool) -> nn.Module:
    copy_ = copy.deepcopy(model)
    linears = [m for m in copy_ if isinstance(m, nn.Linear)]
    with torch.no_grad():
        linears[layer].weight.mul_(s)
        if compensate:
            linears[layer + 1].weight.div_(s)
    return copy_


@pytest.mark.parametrize("s", [0.1, 10.0])
def test_weight_scaling_changes_gradient_bound_not_lrp_beta(s):
    """Bias-free ReLU MLP, hidden layer 1 scaled by s (then also layer 2 by 1/s).

    LRP-αβ's invariance is exact up to its stabiliser, an absolute ε that does not scale with
    the weights; a 1e-12 stabiliser makes that effect invisible at rtol 1e-6 (with 1e-6 it is
    ~2e-4 here).
    """
    lrp_ab = _lrp_ab(1.0, stabilizer=1e-12)
    model = _mlp(0, bias=False)
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    base_g = _run(model, x, GRADIENT, "gradient")
    base_ab = _run(model, x, lrp_ab, "lrp_alphabeta")
    base_eps = _run(model, x, _lrp_eps(0.5), "lrp_epsilon", epsilon=0.5)

    scaled = _scaled(model, 1, s, compensate=False)
    grad = _run(scaled, x, GRADIENT, "gradient")
    ab = _run(scaled, x, lrp_ab, "lrp_alphabeta")
    eps = _run(scaled, x, _lrp_eps(0.5), "lrp_epsilon", epsilon=0.5)
    # gradient: bound, analytic bound and Hoeffding N (absolute t) scale by s, s, s²
    assert torch.allclose(grad.bound, s * base_g.bound, rtol=1e-9)
    assert torch.allclose(grad.theoretical, s * base_g.theoretical, rtol=1e-6)
    absolute_n = hoeffding_draws(grad.bound, 0.05, 0.05) / hoeffding_draws(base_g.bound, 0.05, 0.05)
    assert torch.allclose(absolute_n, torch.full_like(absolute_n, s**2), rtol=1e-9)
    # LRP-αβ: relative bound, (1 + 2β)^L and Hoeffding N (relative t) do not move
    assert torch.allclose(ab.relative_bound, base_ab.relative_bound, rtol=1e-6)
    assert torch.allclose(ab.theoretical_relative, base_ab.theoretical_relative, rtol=1e-6)
    assert torch.allclose(ab.hoeffding_n, base_ab.hoeffding_n, rtol=1e-6)
    # LRP-ε: ε does not scale with the weights, so its relative bound moves
    change = (eps.relative_bound / base_eps.relative_bound - 1).abs().max().item()
    assert change > 0.01

    balanced = _scaled(model, 1, s, compensate=True)  # same function, different weights
    grad_b = _run(balanced, x, GRADIENT, "gradient")
    ab_b = _run(balanced, x, lrp_ab, "lrp_alphabeta")
    assert torch.allclose(grad_b.bound, base_g.bound, rtol=1e-9)
    assert torch.allclose(grad_b.theoretical, base_g.theoretical, rtol=1e-6)
    assert torch.allclose(ab_b.relative_bound, base_ab.relative_bound, rtol=1e-6)


def test_per_neuron_rescaling_loosens_gradient_bound_only():
    """Function-preserving per-neuron rescaling: Π‖W_l‖₂ grows, (1 + 2β)^L does not."""
    model = _mlp(1, bias=False)
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rescaled = copy.deepcopy(model)
    linears = [m for m in rescaled if isinstance(m, nn.Linear)]
    factors = torch.logspace(-1, 1, linears[0].out_features, dtype=torch.float64)
    with torch.no_grad():
        linears[0].weight.mul_(factors[:, None])
        linears[1].weight.div_(factors[None, :])
    assert torch.allclose(model(x), rescaled(x), atol=1e-10)
    before = _run(model, x, GRADIENT, "gradient")
    after = _run(rescaled, x, GRADIENT, "gradient")
    assert torch.allclose(after.bound, before.bound, rtol=1e-9)
    assert torch.all(after.theoretical > 2 * before.theoretical)
    ab_before = _run(model, x, _lrp_ab(1.0), "lrp_alphabeta")
    ab_after = _run(rescaled, x, _lrp_ab(1.0), "lrp_alphabeta")
    assert torch.allclose(ab_after.theoretical_relative, ab_before.theoretical_relative)


# --------------------------------------------------------------------------------------------
# the measured curve
# --------------------------------------------------------------------------------------------


def test_fitted_constant_predicts_held_out_error():
    model = _mlp(2, bias=True, widths=(64, 64), n_in=256)
    x = torch.rand(8, 256, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fit = _run(model, x, GRADIENT, n_grid=(1, 2, 4, 8, 16), n_reference=256, draws_per_call=16)
    held_out = _run(model, x, GRADIENT, seed=9, n_grid=(48,), n_reference=256, draws_per_call=16)
    predicted = fit.constant * math.sqrt(1 / 48 + 1 / 256)
    measured = held_out.errors[0]
    ratio = (measured.mean() / predicted.mean()).item()
    assert abs(ratio - 1) < 0.2, ratio
    assert torch.all(fit.errors[-1] < fit.errors[0])


# --------------------------------------------------------------------------------------------
# contracts: bad input, RNG, model safety, Quantus
# --------------------------------------------------------------------------------------------


def test_bad_input():
    model = _mlp(0, bias=True)
    x = torch.rand(2, 12, dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    noise = gaussian_perturbation(0.1)
    for kwargs, match in [
        ({"t": 0.0}, "t must"),
        ({"t": -1.0}, "t must"),
        ({"delta": 1.0}, "delta"),
        ({"delta": 0.0}, "delta"),
        ({"n_grid": (1, 4, 4)}, "strictly increasing"),
        ({"n_grid": (8, 2)}, "strictly increasing"),
        ({"n_grid": ()}, "non-empty"),
        ({"theoretical": "hessian"}, "theoretical"),
    ]:
        with pytest.raises(ValueError, match=match):
            convergence_constants(model, x, y, GRADIENT, noise, **kwargs)
        with pytest.raises(ValueError, match=match):
            ConvergenceConstants(**kwargs)
    with pytest.raises(ValueError, match="NaN"):
        convergence_constants(model, x * float("nan"), y, GRADIENT, noise)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_perturbation(-1.0)
    with pytest.raises(ValueError, match="perturbation"):
        ConvergenceConstants(perturbation="uniform")


def test_unsupported_layers_name_the_module():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(torch.relu(self.fc(x)) + x)

    x = torch.rand(2, 4)
    with pytest.raises(ValueError, match="'out'.*previous layer"):
        chain_layers(Residual(), x)
    tanh_net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="'1' \\(Tanh\\)"):
        _run(tanh_net.double(), x.double(), GRADIENT, "gradient")
    pool_net = nn.Sequential(nn.Unflatten(1, (1, 2, 2)), nn.MaxPool2d(2, stride=1), nn.Flatten())
    with pytest.raises(ValueError, match="overlapping"):
        _run(nn.Sequential(*pool_net, nn.Linear(1, 2)).double(), x.double(), GRADIENT, "gradient")


def test_rng_model_and_inputs_untouched_also_on_failure():
    model = _mlp(0, bias=True)
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_before = x.clone()
    snapshot = ModelSnapshot.of(model)
    state = torch.random.get_rng_state()
    first = _run(model, x, _lrp_eps(0.1), "lrp_epsilon", epsilon=0.1, seed=4)
    second = _run(model, x, _lrp_eps(0.1), "lrp_epsilon", epsilon=0.1, seed=4)
    assert torch.equal(first.errors, second.errors) and torch.equal(first.bound, second.bound)

    calls = {"n": 0}

    def failing(model, inputs, targets, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("explainer broke")
        return GRADIENT(model=model, inputs=inputs, targets=targets)

    with pytest.raises(RuntimeError, match="explainer broke"):
        _run(model, x, failing, "lrp_epsilon", draws_per_call=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not snapshot.diff(ModelSnapshot.of(model))
    assert torch.equal(x, x_before)


def test_adaptgrad_and_callable_perturbations():
    model = _mlp(0, bias=True)
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = model(x).argmax(1)
    adapt = convergence_constants(
        model, x, y, GRADIENT, adaptgrad_perturbation((0.0, 1.0)), n_grid=(1, 2), n_reference=4
    )
    seen = []

    def shift(inputs, generator):
        seen.append(inputs.shape)
        return inputs + 0.01 * torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype)

    custom = convergence_constants(
        model, x, y, GRADIENT, shift, n_grid=(1, 3), n_reference=4, draws_per_call=3
    )
    assert torch.all(adapt.bound > 0) and torch.all(custom.bound > 0)
    assert seen[0] == (9, 12)  # three stacked draws of the batch per call


def test_quantus_evaluate():
    model = _mlp(0, bias=True).float()
    x = np.random.default_rng(0).uniform(size=(4, 12)).astype(np.float32)
    y = model(torch.from_numpy(x)).argmax(1).numpy()
    metric = ConvergenceConstants(
        sigma=0.2, n_grid=(1, 2, 4), n_reference=8, theoretical="gradient", disable_warnings=True
    )
    results = quantus.evaluate(
        metrics={"convergence": metric},
        xai_methods={"Gradient": GRADIENT},
        model=model,
        x_batch=x,
        y_batch=y,
        agg_func=np.mean,
        explain_func_kwargs={},
        progress=False,
    )
    assert np.isfinite(results["Gradient"]["convergence"])
    summary = metric.results[0].sample(0)
    assert summary["bound"] <= summary["theoretical"]
    assert summary["grid"] == [1, 2, 4]


@pytest.mark.slow
def test_example_runs(monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "convergence_constants.py"
    spec = importlib.util.spec_from_file_location("example_convergence_constants", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr(example, "IMAGES", 1)
    monkeypatch.setattr(example, "GRID", (1, 2))
    monkeypatch.setattr(example, "REFERENCE", 2)
    monkeypatch.setattr(example, "NORM_ITERATIONS", 2)
    example.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("Gradient") and lines[2].startswith("LRP-α2β1")
