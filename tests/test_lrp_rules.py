"""Every LRP rule against a closed-form dense oracle and a slow matrix-form reference.

The reference writes each rule's equation with the layer's Jacobian ``J`` (obtained by autograd
through the layer, one sample at a time) as the weight matrix, so it shares no code with the
rules' direct ``conv*_input`` backward.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import LRP as CaptumLRP
from torch import nn

from captum_ext.lrp import (
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    NormRule,
    PassRule,
    WSquareRule,
    ZBoxRule,
    ZPlusRule,
)

STAB = 1e-6


def _stab(z: torch.Tensor, eps: float = STAB) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _relevance(rule, layer: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """The rule's input relevance through the hook mechanism (relevance as gradient)."""
    handle = layer.register_forward_hook(rule.forward_hook)
    try:
        x = x.detach().requires_grad_()
        out = layer(x)
    finally:
        handle.remove()
    (r_in,) = torch.autograd.grad(out, x, r_out)
    return r_in


# ----------------------------------------------------------------------- matrix-form reference


def _jacobian(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor | None = None):
    """(J, b) with ``layer(x) = J x + b`` for one sample ``x`` (no batch axis).

    ``J`` is read column by column from the bias-free layer applied to the unit vectors, with
    ``weight`` swapped in if given (with reflect padding J(W⁺) is not max(J, 0)).
    """
    w = layer.weight if weight is None else weight
    n = x.numel()
    basis = torch.eye(n, dtype=x.dtype).reshape(n, *x.shape)
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            columns = nn.functional.linear(basis, w)
        else:
            columns = layer._conv_forward(basis, w, None)
        # the bias per output unit: the layer's response to a zero input
        b = layer(torch.zeros(1, *x.shape, dtype=x.dtype)).flatten()
    return columns.reshape(n, -1).T, b


def _reference(rule_name: str, layer: nn.Module, x: torch.Tensor, r: torch.Tensor, **kw):
    """Input relevance of one sample (no batch axis) from the rule's equation in matrix form."""
    J, b = _jacobian(layer, x)
    v, R = x.flatten(), r.flatten()
    Jp = _jacobian(layer, x, layer.weight.clamp(min=0))[0]
    Jn = _jacobian(layer, x, layer.weight.clamp(max=0))[0]
    vp, vn = v.clamp(min=0), v.clamp(max=0)
    bp, bn = b.clamp(min=0), b.clamp(max=0)
    if rule_name == "epsilon":
        z = J @ v + b
        s = R / _stab(z, kw["epsilon"])
        out = v * (J.T @ s)
    elif rule_name == "alphabeta":
        alpha, beta = kw["alpha"], kw["beta"]
        sa = R / _stab(Jp @ vp + Jn @ vn + bp)
        sb = R / _stab(Jn @ vp + Jp @ vn + bn)
        out = alpha * (vp * (Jp.T @ sa) + vn * (Jn.T @ sa))
        out = out - beta * (vp * (Jn.T @ sb) + vn * (Jp.T @ sb))
    elif rule_name == "gamma":
        g = kw["gamma"]
        z = J @ v + b
        Ju, Jd = J + g * Jp, J + g * Jn
        su = torch.where(z > 0, R, 0.0) / _stab(Ju @ vp + Jd @ vn + b + g * bp)
        sd = torch.where(z < 0, R, 0.0) / _stab(Jd @ vp + Ju @ vn + b + g * bn)
        out = vp * (Ju.T @ su + Jd.T @ sd) + vn * (Jd.T @ su + Ju.T @ sd)
    elif rule_name == "zbox":
        low = torch.full_like(v, kw["low"])
        high = torch.full_like(v, kw["high"])
        s = R / _stab(J @ v - Jp @ low - Jn @ high)
        out = v * (J.T @ s) - low * (Jp.T @ s) - high * (Jn.T @ s)
    elif rule_name == "wsquare":
        J2 = _jacobian(layer, x, layer.weight.square())[0]
        s = R / _stab(J2.sum(1) + b.square())
        out = J2.T @ s
    elif rule_name == "flat":
        ones, _ = _jacobian(layer, x, weight=torch.ones_like(layer.weight))
        s = R / _stab(ones.sum(1))
        out = ones.T @ s
    else:  # pragma: no cover
        raise AssertionError(rule_name)
    return out.reshape(x.shape)


RULES = {
    "epsilon": (lambda: EpsilonRule(1e-6), {"epsilon": 1e-6}),
    "zplus": (lambda: ZPlusRule(), {"alpha": 1.0, "beta": 0.0}),
    "alpha2beta1": (lambda: AlphaBetaRule(2, 1), {"alpha": 2.0, "beta": 1.0}),
    "alpha5beta4": (lambda: AlphaBetaRule(5, 4), {"alpha": 5.0, "beta": 4.0}),
    "gamma": (lambda: GammaRule(0.25), {"gamma": 0.25}),
    "zbox": (lambda: ZBoxRule(-2.0, 2.5), {"low": -2.0, "high": 2.5}),
    "wsquare": (lambda: WSquareRule(), {}),
    "flat": (lambda: FlatRule(), {}),
}
_REF_NAME = {
    "zplus": "alphabeta",
    "alpha2beta1": "alphabeta",
    "alpha5beta4": "alphabeta",
}

LAYERS = {
    "linear": (lambda bias: nn.Linear(7, 5, bias=bias), (7,)),
    "conv1d": (lambda bias: nn.Conv1d(2, 4, 3, stride=2, padding=1, bias=bias), (2, 9)),
    "conv2d": (lambda bias: nn.Conv2d(3, 4, 3, padding=1, bias=bias), (3, 5, 5)),
    "conv2d_s2_d2_g2": (
        lambda bias: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=bias),
        (4, 6, 6),
    ),
    "conv3d": (
        lambda bias: nn.Conv3d(2, 3, 2, stride=(1, 2, 1), padding=1, bias=bias),
        (2, 3, 4, 3),
    ),
    "conv2d_reflect": (
        lambda bias: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", bias=bias),
        (2, 4, 4),
    ),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("rule_name", list(RULES))
def test_rule_matches_matrix_reference(rule_name, layer_name, bias):
    gen = torch.Generator().manual_seed(hash((rule_name, layer_name, bias)) % 2**31)
    build, shape = LAYERS[layer_name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        layer = build(bias).double()
    if bias:
        with torch.no_grad():
            layer.bias.uniform_(-0.3, 0.3, generator=gen)
    # Signed inputs, so the x⁻ paths of the generalised rules are exercised too.
    x = torch.rand(2, *shape, generator=gen, dtype=torch.float64) * 4 - 2
    with torch.no_grad():
        out = layer(x)
    r_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    factory, kw = RULES[rule_name]
    ours = _relevance(factory(), layer, x, r_out)
    ref_name = _REF_NAME.get(rule_name, rule_name)
    ref = torch.stack(
        [_reference(ref_name, layer, x[i], r_out[i], **kw) for i in range(x.shape[0])]
    )
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


def test_reference_jacobian_is_the_weight_matrix():
    # Ties the reference to the formulas: with zero padding, J(W⁺) = max(J, 0) and J(W²) = J².
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2).double()
    x = torch.rand(4, 6, 6, dtype=torch.float64)
    J, b = _jacobian(layer, x)
    torch.testing.assert_close(_jacobian(layer, x, layer.weight.clamp(min=0))[0], J.clamp(min=0))
    torch.testing.assert_close(_jacobian(layer, x, layer.weight.square())[0], J.square())
    torch.testing.assert_close(J @ x.flatten() + b, layer(x[None]).flatten())


@pytest.mark.parametrize("rule_name", ["zplus", "alpha2beta1", "gamma", "epsilon"])
def test_rules_non_negative_input_path_matches_reference(rule_name):
    # Post-ReLU inputs take the shortcut without x⁻ terms; it must give the same numbers.
    gen = torch.Generator().manual_seed(5)
    layer = nn.Conv2d(3, 4, 3, padding=1).double()
    x = torch.rand(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    x[:, :, ::2] = 0.0
    r_out = torch.randn(2, 4, 6, 6, generator=gen, dtype=torch.float64)
    factory, kw = RULES[rule_name]
    ours = _relevance(factory(), layer, x, r_out)
    ref = torch.stack(
        [
            _reference(_REF_NAME.get(rule_name, rule_name), layer, x[i], r_out[i], **kw)
            for i in (0, 1)
        ]
    )
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------ dense closed form

ORACLE = {
    "eps1e-6": (EpsilonRule(1e-6), [-0.625662, 0.053022, 3.722162]),
    "eps0.25": (EpsilonRule(0.25), [-0.554429, 0.067613, 3.367140]),
    "zplus": (ZPlusRule(), [0.243902, 0.487805, 2.243902]),
    "alpha1beta0": (AlphaBetaRule(1, 0), [0.243902, 0.487805, 2.243902]),
    "alpha2beta1": (AlphaBetaRule(2, 1), [-0.688665, 0.387375, 4.487804]),
    "gamma": (GammaRule(0.25), [-0.362158, 0.184775, 3.274205]),
    "zbox": (ZBoxRule(-3.0, 3.0), [0.583554, 0.705570, 1.710875]),
    "wsquare": (WSquareRule(), [0.568186, 0.854974, 1.559816]),
    "flat": (FlatRule(), [1.0, 1.0, 1.0]),
}


@pytest.mark.parametrize("name", list(ORACLE))
def test_dense_oracle(name):
    rule, expected = ORACLE[name]
    layer = nn.Linear(3, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0]]))
        layer.bias.copy_(torch.tensor([0.1, -0.2]))
    x = torch.tensor([[1.0, -1.0, 2.0]], dtype=torch.float64)
    r = _relevance(rule, layer, x, torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    # The oracle is printed to 6 decimals; the stabiliser shifts the 7th.
    torch.testing.assert_close(r[0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=2e-6)


def test_zbox_conserves_and_per_channel_bounds_match_scalar():
    layer = nn.Conv2d(3, 4, 3, padding=1).double()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    r_out = torch.rand(2, 4, 5, 5, dtype=torch.float64)
    scalar = _relevance(ZBoxRule(0.0, 1.0), layer, x, r_out)
    per_channel = _relevance(ZBoxRule(torch.zeros(3), torch.ones(3)), layer, x, r_out)
    torch.testing.assert_close(scalar, per_channel)
    torch.testing.assert_close(scalar.sum(), r_out.sum(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("rule", [ZPlusRule(), AlphaBetaRule(2, 1), FlatRule(), WSquareRule()])
def test_conservation_on_bias_free_layer(rule):
    layer = nn.Conv2d(3, 4, 3, padding=1, bias=False).double()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)  # non-negative, as after a ReLU
    r_out = torch.rand(2, 4, 5, 5, dtype=torch.float64)
    r_in = _relevance(rule, layer, x, r_out)
    torch.testing.assert_close(r_in.sum((1, 2, 3)), r_out.sum((1, 2, 3)), rtol=1e-5, atol=0)


def test_float32_matches_float64():
    layer64 = nn.Conv2d(3, 4, 3, padding=1).double()
    layer32 = nn.Conv2d(3, 4, 3, padding=1)
    layer32.load_state_dict({k: v.float() for k, v in layer64.state_dict().items()})
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    r = torch.rand(2, 4, 6, 6, dtype=torch.float64)
    for rule in (EpsilonRule(0.1), ZPlusRule(), GammaRule(), ZBoxRule(0.0, 1.0), FlatRule()):
        a = _relevance(rule, layer64, x, r)
        b = _relevance(rule, layer32, x.float(), r.float())
        assert b.dtype == torch.float32
        torch.testing.assert_close(b.double(), a, rtol=1e-4, atol=1e-5)


def test_norm_rule_on_average_pool_and_pass_rule():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    r = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    pool = nn.AvgPool2d(2)
    r_in = _relevance(NormRule(), pool, x, r)
    # Closed form: each input's share x_i / Σ_window x of its window's relevance.
    window_sum = nn.functional.avg_pool2d(x, 2) * 4
    expected = x * nn.functional.interpolate(r / window_sum, scale_factor=2)
    torch.testing.assert_close(r_in, expected, rtol=1e-5, atol=1e-9)
    r_act = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(_relevance(PassRule(), nn.Tanh(), x, r_act), r_act)


def test_pass_rule_rejects_shape_changing_module():
    with pytest.raises(TypeError, match="PassRule"):
        _relevance(PassRule(), nn.Flatten(), torch.rand(2, 3, 2), torch.rand(2, 6))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: AlphaBetaRule(2, 2), "alpha - beta == 1"),
        (lambda: AlphaBetaRule(-1, -2), "alpha"),
        (lambda: EpsilonRule(-0.1), "epsilon"),
        (lambda: GammaRule(float("nan")), "gamma"),
        (lambda: ZBoxRule(1.0, 0.0), "low <= high"),
        (lambda: ZBoxRule(float("-inf"), 0.0), "finite"),
        (lambda: FlatRule(stabilizer=0.0), "stabilizer"),
    ],
)
def test_invalid_hyper_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_zbox_bad_bound_shape():
    with pytest.raises(ValueError, match="broadcast"):
        _relevance(
            ZBoxRule(torch.zeros(5, 5), torch.ones(5, 5)),
            nn.Linear(3, 2),
            torch.rand(2, 3),
            torch.rand(2, 2),
        )


def test_rules_work_as_captum_module_rule():
    # Our rules plugged into Captum's own LRP give the same relevance as the matrix reference.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = torch.rand(4, 6, dtype=torch.float64) * 2 - 1
    model[0].rule, model[2].rule = AlphaBetaRule(2, 1), EpsilonRule(0.1)
    captum = CaptumLRP(model).attribute(x.clone().requires_grad_(), target=1)
    with torch.no_grad():
        hidden = torch.relu(model[0](x))
        out = model(x)
    expected = []
    for i in range(4):
        r_top = torch.zeros(3, dtype=torch.float64)
        r_top[1] = out[i, 1]
        r_hidden = _reference("epsilon", model[2], hidden[i], r_top, epsilon=0.1)
        expected.append(_reference("alphabeta", model[0], x[i], r_hidden, alpha=2.0, beta=1.0))
    torch.testing.assert_close(captum, torch.stack(expected), rtol=1e-8, atol=1e-10)
