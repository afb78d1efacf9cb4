"""CLRP (eq. 15) and c-EB (eq. 16) against slow z⁺ references (float64), plus LRP-α5β4."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from torch import nn

from captum_ext import (
    ContrastiveExcitationBackprop,
    ContrastiveLRP,
    ModelSnapshot,
)
from captum_ext.lrp import LRP, Alpha5Beta4, AlphaBeta, AlphaBetaRule, Epsilon
from quantus_metrics import CSC
from quantus_metrics.explain import explain_func_from

D = torch.float64
EPS = 1e-6  # the rules' default stabiliser, reproduced by the reference


def _mlp(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)
        ).to(D).eval()  # fmt: skip


def _zplus_matrix(w: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Eq. 5 entry by entry: Z⁺[j, i] = [w_ij h_j]⁺ / (Σ_k [w_ik h_k]⁺ + b_i⁺ + ε).

    (Bias and stabiliser in the denominator as in zennit's z⁺ rule.)
    """
    n_out, n_in = w.shape
    z = np.zeros((n_in, n_out))
    for i in range(n_out):
        den = sum(max(w[i, k] * h[k], 0.0) for k in range(n_in)) + max(b[i], 0.0) + EPS
        for j in range(n_in):
            z[j, i] = max(w[i, j] * h[j], 0.0) / den
    return z


def _slow_zplus(model, x: np.ndarray, start: np.ndarray, final=None) -> np.ndarray:
    """Relevance of one sample under z⁺ on every layer (``final``: matrix for the last layer)."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    acts, h = [], x
    for index, lin in enumerate(linears):
        acts.append(h)
        z = lin.weight.detach().numpy() @ h + lin.bias.detach().numpy()
        h = np.maximum(z, 0.0) if index < len(linears) - 1 else z
    r = start
    for index in reversed(range(len(linears))):
        lin = linears[index]
        w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
        if index == len(linears) - 1 and final is not None:
            r = final(w, b, acts[index]) @ r
        else:
            r = _zplus_matrix(w, b, acts[index]) @ r
    return r


def test_clrp_is_the_difference_of_two_slow_normalised_maps():
    model = _mlp()
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(0), dtype=D)
    target = torch.tensor([0, 1, 2, 3, 1])
    ours = ContrastiveLRP(model).attribute(x, target=target)
    logits = model(x).detach().numpy()
    for n in range(len(x)):
        mask = np.eye(4)[int(target[n])]
        own = _slow_zplus(model, x[n].numpy(), logits[n] * mask)
        dual = _slow_zplus(model, x[n].numpy(), logits[n] * (1 - mask))
        expected = own / own.sum() - dual / dual.sum()
        np.testing.assert_allclose(ours[n].numpy(), expected, rtol=1e-10, atol=1e-13)
    # raw maps and the clipped variant follow from the same two maps
    own, dual = ContrastiveLRP(model).target_and_dual(x, target=target)
    clipped = ContrastiveLRP(model, clip=True).attribute(x, target=target)
    torch.testing.assert_close(clipped, ours.clamp(min=0))
    raw = ContrastiveLRP(model, normalize=False).attribute(x, target=target)
    torch.testing.assert_close(raw, own[0] - dual[0])


def test_clrp_takes_any_rule_set():
    model = _mlp(1)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=D)
    rules = Epsilon(1e-9)
    own = LRP(model, rule_set=rules).attribute(x, target=2)  # starts at y_k: the target map
    raw = ContrastiveLRP(model, rule_set=rules, normalize=False)
    own_map, dual_map = raw.target_and_dual(x, target=2)
    torch.testing.assert_close(own_map[0], own, rtol=1e-12, atol=1e-14)
    # LRP-ε is linear in the injected vector: the dual map is the sum of the other classes' maps
    others = sum(LRP(model, rule_set=rules).attribute(x, target=c) for c in (0, 1, 3))
    torch.testing.assert_close(dual_map[0], others, rtol=1e-10, atol=1e-13)


def test_contrastive_excitation_backprop_matches_slow_reference():
    """Last layer Z⁺ − N⁺ (N⁺: z⁺ of −W, bias −b) applied to the one-hot m_k, z⁺ below."""

    def contrastive(w, b, h):
        return _zplus_matrix(w, b, h) - _zplus_matrix(-w, -b, h)

    model = _mlp(3)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(5), dtype=D)
    ours = ContrastiveExcitationBackprop(model).attribute(x, target=1)
    for n in range(len(x)):
        own = _slow_zplus(model, x[n].numpy(), np.eye(4)[1])
        dual = _slow_zplus(
            model, x[n].numpy(), np.eye(4)[1], final=lambda w, b, h: _zplus_matrix(-w, -b, h)
        )
        expected = _slow_zplus(model, x[n].numpy(), np.eye(4)[1], final=contrastive)
        np.testing.assert_allclose(ours[n].numpy(), expected, rtol=1e-10, atol=1e-13)
        # and it is the difference of the two z⁺ attributions computed separately
        np.testing.assert_allclose(ours[n].numpy(), own - dual, rtol=1e-10, atol=1e-13)


def test_alpha5_beta4_rule_set():
    rules = Alpha5Beta4()
    model = _mlp()
    resolved = {name: rule for name, _, rule in rules.resolve(model)}
    assert isinstance(resolved["0"], AlphaBetaRule)
    assert (resolved["0"].alpha, resolved["0"].beta) == (5.0, 4.0)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=D)
    torch.testing.assert_close(
        LRP(model, rule_set=rules).attribute(x, target=0),
        LRP(model, rule_set=AlphaBeta(5.0, 4.0)).attribute(x, target=0),
        rtol=0,
        atol=0,
    )


def test_contrastive_methods_run_in_csc_and_leave_the_model_alone():
    model = _mlp()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=D)
    snapshot = ModelSnapshot.of(model)
    for cls in (ContrastiveLRP, ContrastiveExcitationBackprop):
        results = quantus.evaluate(
            metrics={"CSC": CSC(n_vectors=3)},
            xai_methods={cls.__name__: explain_func_from(cls)},
            model=model,
            x_batch=x.numpy(),
            y_batch=np.array([0, 1, 2]),
            explain_func_kwargs={},
        )
        scores = results[cls.__name__]["CSC"]
        assert len(scores) == 3 and list(scores[0]) == ["input", "2", "4"]
    assert snapshot.diff(ModelSnapshot.of(model)) == []


def test_errors_are_named():
    model = _mlp()
    x = torch.randn(2, 6, dtype=D)
    with pytest.raises(ValueError, match="target"):
        ContrastiveLRP(model).attribute(x)
    with pytest.raises(ValueError, match="final_layer"):
        ContrastiveExcitationBackprop(model, final_layer="1").attribute(x, target=0)
