"""Table 1 measures of Zhou et al. (2025): Invariance (Kindermans et al.) and Consistency
(Alvarez-Melis and Jaakkola, Quantus' LocalLipschitzEstimate) on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch

from quantus_metrics import Consistency, InputShiftInvariance
from quantus_metrics.input_invariance import shifted_model


def _mlp(seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3)
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model.eval()


def _gradient(model, inputs, targets, **kwargs):
    x = torch.as_tensor(inputs, dtype=torch.float64).clone().requires_grad_(True)
    out = model(x).gather(1, torch.as_tensor(targets).long()[:, None]).sum()
    return torch.autograd.grad(out, x)[0].numpy()


def _grad_times_input(model, inputs, targets, **kwargs):
    return _gradient(model, inputs, targets) * np.asarray(inputs)


X = np.random.default_rng(0).uniform(0.1, 1.0, size=(5, 1, 4, 4))
Y = np.array([0, 1, 2, 0, 1])


def test_shifted_model_computes_the_same_function():
    model = _mlp()
    twin = shifted_model(model, -1.0)
    x = torch.from_numpy(X)
    assert torch.allclose(twin(x - 1.0), model(x), atol=1e-12)
    assert not torch.equal(twin[1].bias, model[1].bias)  # the user's model is untouched


def test_gradient_is_invariant_and_gradient_times_input_is_not():
    model = _mlp()
    metric = InputShiftInvariance(shift=-1.0, disable_warnings=True)
    grad = metric(model=model, x_batch=X, y_batch=Y, explain_func=_gradient)
    assert max(grad) < 1e-12
    gi = metric(model=model, x_batch=X, y_batch=Y, explain_func=_grad_times_input)
    # closed form: a = g⊙x, a' = g⊙(x + c) ⇒ |a − a'|₁ / |a|₁ = |c|·|g|₁ / |g⊙x|₁
    g = _gradient(model, X, Y).reshape(5, -1)
    expected = np.abs(g).sum(1) / np.abs(g * X.reshape(5, -1)).sum(1)
    assert gi == pytest.approx(expected.tolist(), rel=1e-10)


def test_shifted_kwargs_and_refusals():
    model = _mlp()
    calls = []

    def explain(model, inputs, targets, scale=1.0, **kwargs):
        calls.append(scale)
        return _gradient(model, inputs, targets) * scale

    metric = InputShiftInvariance(shifted_explain_func_kwargs={"scale": 2.0})
    scores = metric(
        model=model, x_batch=X, y_batch=Y, explain_func=explain, explain_func_kwargs={"scale": 1.0}
    )
    assert scores == pytest.approx([1.0] * 5) and 2.0 in calls
    with pytest.raises(ValueError, match="non-zero"):
        InputShiftInvariance(shift=0)
    padded = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten())
    with pytest.raises(ValueError, match="padded"):
        shifted_model(padded, 1.0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()).double()
    xx = torch.from_numpy(X)
    assert torch.allclose(shifted_model(conv, 0.5)(xx + 0.5), conv(xx), atol=1e-12)


def test_consistency_is_quantus_local_lipschitz_on_constructed_cases():
    # Consistency in Zhou et al. (2025) cites Alvarez-Melis and Jaakkola (2018): Quantus'
    # LocalLipschitzEstimate. A linear explanation e(x) = 3x has Lipschitz estimate exactly 3,
    # a constant explanation (gradient of a linear model) exactly 0.
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double().eval()
    metric = Consistency(seed=0, nr_samples=5, normalise=False)
    assert isinstance(metric, quantus.LocalLipschitzEstimate)
    before = np.random.get_state()[1].copy()  # noqa: NPY002 - checking it stays untouched
    triple = metric(
        model=linear, x_batch=X, y_batch=Y, a_batch=3 * X,
        explain_func=lambda model, inputs, targets, **kw: 3 * np.asarray(inputs),
    )  # fmt: skip
    constant = metric(model=linear, x_batch=X, y_batch=Y, explain_func=_gradient)
    assert triple == pytest.approx([3.0] * 5, rel=1e-9)
    assert max(constant) < 1e-12
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    again = Consistency(seed=0, nr_samples=5)(
        model=linear, x_batch=X, y_batch=Y, explain_func=_grad_times_input
    )
    assert again == Consistency(seed=0, nr_samples=5)(
        model=linear, x_batch=X, y_batch=Y, explain_func=_grad_times_input
    )
