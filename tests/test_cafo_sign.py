"""CAFO/CASO sign convention: ``sign="loss"`` (Δ, the paper) vs ``sign="target"`` (−Δ)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency

from captum_ext.context_aware.cafo import CAFO
from captum_ext.context_aware.caso import CASO


def _model() -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model.double().eval()


X = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", [CAFO, CASO])
def test_target_sign_is_minus_delta_and_agrees_with_signed_gradient(method):
    model = _model()
    y = model(X).argmax(1)
    loss_map = method(model).attribute(X, target=y, lambda1=1e-3)
    target_map = method(model).attribute(X, target=y, lambda1=1e-3, sign="target")
    assert torch.equal(target_map, -loss_map)
    # with λ₁ = 0 the target-signed CAFO map is ∇log p_y / (2λ₂); for the predicted class of
    # this network it points with the target logit's gradient (the Saliency map)
    grad = Saliency(model).attribute(X, target=y, abs=False)
    cos = torch.nn.functional.cosine_similarity(
        method(model).attribute(X, target=y, sign="target"), grad, dim=1
    )
    assert (cos > 0).all(), cos


def test_cafo_closed_form_sign():
    model = _model()
    y = model(X).argmax(1)
    x = X.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    lam1, lam2 = 0.05, 10.0
    expected = torch.sign(g) * (g.abs() - lam1).clamp_min(0) / (2 * lam2)
    got = CAFO(model).attribute(X, target=y, lambda1=lam1, lambda2=lam2, n_iter=200, tol=1e-12)
    assert torch.allclose(got, expected, atol=1e-8)
    got_t = CAFO(model).attribute(
        X, target=y, lambda1=lam1, lambda2=lam2, n_iter=200, tol=1e-12, sign="target"
    )
    assert torch.allclose(got_t, -expected, atol=1e-8)
    with pytest.raises(ValueError, match="sign must be"):
        CAFO(model).attribute(X, sign="for")
