"""DeepLiftLinear / DeepLiftAblation against slow references written from eq. 13 (float64)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import DeepLift, NoiseTunnel
from torch import nn

from captum_ext import DeepLiftAblation, DeepLiftLinear, ModelSnapshot, modified_backward
from captum_ext.zoo import SmallCNN
from quantus_metrics.csc import cosine_similarity_convergence

D = torch.float64


def _mlp(widths, seed=0, gate=nn.ReLU):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = []
        for n_in, n_out in zip(widths[:-2], widths[1:-1]):
            layers += [nn.Linear(n_in, n_out), gate()]
        layers.append(nn.Linear(widths[-2], widths[-1]))
        return nn.Sequential(*layers).to(D).eval()


def _relu(v: float) -> float:
    return max(v, 0.0)


def _relu6(v: float) -> float:
    return min(max(v, 0.0), 6.0)


def _slow_multipliers(model, x, x0, k, ablation=False, f=_relu, step=None):
    """Input multipliers of a one-hidden-layer ReLU network, element by element.

    Linear layer: Δz⁺_i = Σ_j [w_ij Δh_j > 0] w_ij Δh_j, Δz⁻ likewise; RevealCancel at the ReLU;
    eq. 13 for the input: positive Δh_j collect w⁺ r⁺ + w⁻ r⁻, negative Δh_j w⁻ r⁺ + w⁺ r⁻
    (ablation: only w⁺ r⁺ resp. w⁻ r⁻); Δh_j = 0 the average of both.
    """
    lin1, _, lin2 = model
    w1, b1, w2 = lin1.weight.tolist(), lin1.bias.tolist(), lin2.weight.tolist()
    n_in, n_hid = len(w1[0]), len(w1)
    out = []
    for xs, x0s in zip(x.tolist(), x0.tolist()):
        dx = [a - b for a, b in zip(xs, x0s)]
        z0 = [sum(w1[i][j] * x0s[j] for j in range(n_in)) + b1[i] for i in range(n_hid)]
        dzp = [
            sum(w1[i][j] * dx[j] for j in range(n_in) if w1[i][j] * dx[j] > 0) for i in range(n_hid)
        ]
        dzn = [
            sum(w1[i][j] * dx[j] for j in range(n_in) if w1[i][j] * dx[j] < 0) for i in range(n_hid)
        ]
        h = [f(z0[i] + dzp[i] + dzn[i]) for i in range(n_hid)]
        h0 = [f(v) for v in z0]
        dh = [a - b for a, b in zip(h, h0)]
        # output layer (logits): r⁺ = r⁻ = one-hot
        r_out = [1.0 if c == k else 0.0 for c in range(len(w2))]
        g = []
        for j in range(n_hid):
            pos = sum(w2[c][j] * r_out[c] for c in range(len(w2)) if w2[c][j] > 0)
            neg = sum(w2[c][j] * r_out[c] for c in range(len(w2)) if w2[c][j] < 0)
            # r⁺ = r⁻ at the logits: positive Δh gets w⁺r⁺ + w⁻r⁻ = w r (full rule)
            if ablation:
                g.append(pos if dh[j] > 0 else neg if dh[j] < 0 else 0.5 * (pos + neg))
            else:
                g.append(pos + neg)
        r_pos, r_neg = [], []
        for i in range(n_hid):
            a, p, n = z0[i], dzp[i], dzn[i]
            z = a + p + n
            slope = step or (lambda v: 1.0 if v > 0 else 0.0)
            if p > 1e-10:
                s_pos = (0.5 * (f(a + p) - f(a)) + 0.5 * (f(z) - f(a + n))) / p
            else:
                s_pos = 0.5 * (slope(a) + slope(a + n))
            if n < -1e-10:
                s_neg = (0.5 * (f(a + n) - f(a)) + 0.5 * (f(z) - f(a + p))) / n
            else:
                s_neg = 0.5 * (slope(a) + slope(a + p))
            r_pos.append(s_pos * g[i])
            r_neg.append(s_neg * g[i])
        row = []
        for j in range(n_in):
            wp = [max(w1[i][j], 0.0) for i in range(n_hid)]  # W⁺ column j
            wn = [min(w1[i][j], 0.0) for i in range(n_hid)]  # W⁻ column j
            if ablation:  # positive chain only through W⁺, negative only through W⁻
                pos_branch = sum(wp[i] * r_pos[i] for i in range(n_hid))
                neg_branch = sum(wn[i] * r_neg[i] for i in range(n_hid))
            else:  # eq. 13 and its negative analogue
                pos_branch = sum(wp[i] * r_pos[i] + wn[i] * r_neg[i] for i in range(n_hid))
                neg_branch = sum(wn[i] * r_pos[i] + wp[i] * r_neg[i] for i in range(n_hid))
            if dx[j] > 0:
                row.append(pos_branch)
            elif dx[j] < 0:
                row.append(neg_branch)
            else:
                row.append(0.5 * (pos_branch + neg_branch))
        out.append(row)
    return torch.tensor(out, dtype=D)


@pytest.mark.parametrize("ablation", [False, True], ids=["eq13", "ablation"])
def test_multipliers_match_slow_reference_positive_and_negative_parts(ablation):
    model = _mlp([7, 9, 4])
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 7, generator=gen, dtype=D)
    x0 = torch.randn(6, 7, generator=gen, dtype=D) * 0.5
    x0[:, 0] = x[:, 0]  # some Δx = 0 entries
    cls = DeepLiftAblation if ablation else DeepLiftLinear
    ours = cls(model, multiply_by_inputs=False).attribute(x, baselines=x0, target=2)
    slow = _slow_multipliers(model, x, x0, 2, ablation=ablation)
    dx = x - x0
    for mask in (dx > 0, dx < 0, dx == 0):  # the positive, negative and zero parts separately
        assert mask.any()
        torch.testing.assert_close(ours[mask], slow[mask], rtol=1e-12, atol=1e-12)


def test_relu6_gate_matches_slow_reference_and_sums_to_delta():
    # ReLU6 (EfficientNet, MobileNet): RevealCancel with the gate's own function; inputs scaled
    # so that units saturate above 6 as well as below 0
    model = _mlp([7, 9, 4], seed=4, gate=nn.ReLU6)
    gen = torch.Generator().manual_seed(5)
    x = 6 * torch.randn(6, 7, generator=gen, dtype=D)
    x0 = 3 * torch.randn(6, 7, generator=gen, dtype=D)
    with torch.no_grad():
        hidden = model[0](torch.cat([x, x0]))
    assert (hidden > 6).any() and (hidden < 0).any()
    ours = DeepLiftLinear(model, multiply_by_inputs=False).attribute(x, baselines=x0, target=2)
    slow = _slow_multipliers(
        model, x, x0, 2, f=_relu6, step=lambda v: 1.0 if 0.0 < v < 6.0 else 0.0
    )
    torch.testing.assert_close(ours, slow, rtol=1e-12, atol=1e-12)
    attr = DeepLiftLinear(model).attribute(x, baselines=x0, target=2)
    expected = model(x)[:, 2] - model(x0)[:, 2]
    torch.testing.assert_close(attr.sum(1), expected, rtol=0, atol=1e-12)


def test_summation_to_delta_reveal_cancel():
    for widths in ([7, 9, 4], [10, 12, 8, 3]):
        model = _mlp(widths, seed=3)
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(8, widths[0], generator=gen, dtype=D)
        x0 = torch.randn(8, widths[0], generator=gen, dtype=D)
        attr, delta = DeepLiftLinear(model).attribute(
            x, baselines=x0, target=1, return_convergence_delta=True
        )
        expected = model(x)[:, 1] - model(x0)[:, 1]
        torch.testing.assert_close(attr.sum(1), expected, rtol=0, atol=1e-12)
        assert delta.abs().max() < 1e-12


def test_rescale_rule_equals_captum_deeplift():
    """With Rescale at the ReLUs both multipliers coincide and eq. 13 collapses to Wᵀ."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.AvgPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(6 * 16, 12), nn.ReLU(), nn.Linear(12, 5),
        ).to(D).eval()  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        small_cnn = SmallCNN(1, 10).to(D).eval()  # max pooling: gradient routing, as Captum
    cases = ((_mlp([7, 9, 6, 4]), (5, 7)), (cnn, (3, 1, 8, 8)), (small_cnn, (2, 1, 32, 32)))
    for model, shape in cases:
        gen = torch.Generator().manual_seed(4)
        x = torch.randn(*shape, generator=gen, dtype=D)
        x0 = torch.randn(*shape, generator=gen, dtype=D) * 0.2
        expected = DeepLift(model).attribute(x, baselines=x0, target=3)
        ours = DeepLiftLinear(model, nonlinear_rule="rescale").attribute(x, baselines=x0, target=3)
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-14)


def _hand_model():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1, bias=False)).to(D)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([0.5, -1.0]))
        model[2].weight.copy_(torch.tensor([[2.0, 1.0]]))
    return model.eval()


def test_two_layer_example_worked_by_hand():
    """x = (1, 1), baseline 0. z⁰ = (0.5, −1), Δz⁺ = (1, 4), Δz⁻ = (−2, 0), Δh = (−0.5, 3).

    RevealCancel: unit 1 s⁺ = 0.5/1, s⁻ = −1/−2; unit 2 s⁺ = 3/4, s⁻ = ½ (limit, Δz⁻ = 0).
    Output layer (r⁺ = r⁻ = 1): eq. 13 gives g = (2, 1); the ablation g = (0, 1) (unit 1 has
    Δh < 0 and only W⁻ = 0 may carry r⁻). Hidden r⁺ = (1, 0.75), r⁻ = (1, 0.5) resp.
    (0, 0.75), (0, 0.5). Input (Δx > 0): eq. 13 W⁺ᵀr⁺ + W⁻ᵀr⁻ = (1 + 2.25, 0.75 − 2) =
    (3.25, −1.25), summing to f(x) − f(0) = 3 − 1 = 2; ablation W⁺ᵀr⁺ = (2.25, 0.75).
    """
    model, x = _hand_model(), torch.tensor([[1.0, 1.0]], dtype=D)
    full = DeepLiftLinear(model).attribute(x, target=0)
    ablation = DeepLiftAblation(model).attribute(x, target=0)
    torch.testing.assert_close(full, torch.tensor([[3.25, -1.25]], dtype=D), rtol=0, atol=1e-15)
    torch.testing.assert_close(ablation, torch.tensor([[2.25, 0.75]], dtype=D), rtol=0, atol=1e-15)


def test_csc_noise_tunnel_and_model_left_unchanged():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCNN(1, 10).to(D).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=D)
    snapshot = ModelSnapshot.of(model)
    for cls in (DeepLiftLinear, DeepLiftAblation):
        result = cosine_similarity_convergence(cls(model), x, n_vectors=3)
        assert list(result.values)[0] == "input" and len(result.values) == 6
        for values in result.values.values():
            finite = values[torch.isfinite(values)]
            assert ((finite >= 0) & (finite <= 1 + 1e-9)).all()
        tunnel = NoiseTunnel(cls(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=2, stdevs=0.1, target=1
        )
        assert tunnel.shape == x.shape and torch.isfinite(tunnel).all()
    assert snapshot.diff(ModelSnapshot.of(model)) == []


def test_same_answer_for_repeated_backward_through_one_forward():
    model = _mlp([7, 9, 4])
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(0), dtype=D)
    with modified_backward(DeepLiftLinear(model)) as forward:
        leaf = x.clone().requires_grad_()
        out = forward(leaf)
        v = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=D)
        (first,) = torch.autograd.grad(out, leaf, v, retain_graph=True)
        (second,) = torch.autograd.grad(out, leaf, v)
    assert torch.equal(first, second)


def test_refuses_unsupported_modules_and_bad_arguments():
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)).to(D)
    with pytest.raises(TypeError, match="Tanh"):
        DeepLiftLinear(model).attribute(torch.ones(1, 3, dtype=D), target=0)
    with pytest.raises(ValueError, match="nonlinear_rule"):
        DeepLiftLinear(_mlp([3, 3, 2]), nonlinear_rule="softmax")
    with pytest.raises(ValueError, match="broadcast"):
        DeepLiftLinear(_mlp([3, 3, 2])).attribute(
            torch.ones(2, 3, dtype=D), baselines=torch.zeros(4, dtype=D), target=0
        )
