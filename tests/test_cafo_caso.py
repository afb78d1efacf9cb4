"""CAFO / CASO (Singla et al., 2019): closed-form and linear-solve oracles, Theorem 5, λ₁ search,
contracts."""

from __future__ import annotations

import runpy
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from captum.attr import NoiseTunnel
from torch import nn

from captum_ext import CAFO, CASO
from captum_ext.context_aware.cafo import pair_normalize
from captum_ext.context_aware.hessian import closed_form_hessian
from captum_ext.core.guard import ModelSnapshot
from captum_ext.zoo import SmallMLP
from tests.test_hessian import _seeded, dense_reference, tiny_cnn

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]


def ce_gradient(model, x, target):
    """Oracle gradient of the per-sample cross-entropy, straight from autograd."""
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xx), target, reduction="sum"), xx)
    return grad


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(3)


@pytest.fixture
def small_mlp():
    return _seeded(lambda: SmallMLP(12, (16, 16), 5)).to(F64).eval()


@pytest.mark.parametrize("lambda1", [0.0, 1e-4, 1e-3, 5e-3])
def test_cafo_matches_its_closed_form(small_mlp, gen, lambda1):
    x = torch.randn(4, 12, generator=gen, dtype=F64)
    target = torch.tensor([0, 1, 2, 3])
    delta = CAFO(small_mlp).attribute(
        x, target=target, lambda1=lambda1, lambda2=7.0, n_iter=200, tol=1e-12
    )
    g = ce_gradient(small_mlp, x, target)
    expected = g.sign() * (g.abs() - lambda1).clamp_min(0) / (2 * 7.0)
    assert expected.abs().max() > 0
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-15)


def test_cafo_on_cnn_predicted_target_and_f32(gen):
    model = tiny_cnn().eval()
    x = torch.rand(3, 1, 8, 8, generator=gen, dtype=F64)
    g = ce_gradient(model, x, model(x).argmax(1))
    expected = g.sign() * (g.abs() - 1e-4).clamp_min(0) / 20
    torch.testing.assert_close(CAFO(model).attribute(x, lambda1=1e-4), expected)
    # float32 follows float64 to single precision
    d32 = CAFO(model.float()).attribute(x.float(), lambda1=1e-4)
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), expected, rtol=1e-3, atol=1e-6 * expected.abs().max())


@pytest.mark.parametrize("hessian", ["closed_form", "autograd"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.slow
def test_caso_without_l1_is_the_linear_solve(kind, hessian, small_mlp, gen):
    if kind == "mlp":
        model, x = small_mlp, torch.randn(3, 12, generator=gen, dtype=F64)
    else:
        model, x = tiny_cnn().eval(), torch.rand(3, 1, 8, 8, generator=gen, dtype=F64)
    target = model(x).argmax(1)
    caso = CASO(model)
    # a small λ₂ (just above L/2) keeps the Hessian term influential
    top = torch.linalg.eigvalsh(dense_reference(model, x, target))[:, -1]
    lambda2 = float(top.max()) / 2 + 0.01
    # step 1/(2λ₂) (the smooth part's Lipschitz bound) instead of 0.1, which suits λ₂ ≈ 10
    delta = caso.attribute(
        x, lambda2=lambda2, n_iter=400, tol=1e-12, hessian=hessian, step=0.5 / lambda2
    )
    H = dense_reference(model, x, target)
    g = ce_gradient(model, x, target).reshape(3, -1)
    eye = torch.eye(H.shape[-1], dtype=F64)
    expected = torch.linalg.solve(2 * lambda2 * eye - H, g).reshape_as(x)
    torch.testing.assert_close(delta, expected, rtol=1e-7, atol=1e-9 * expected.abs().max())
    # and it is not simply CAFO: the Hessian term matters at this λ₂
    cafo = (g / (2 * lambda2)).reshape_as(x)
    assert (delta - cafo).abs().max() > 1e-3 * cafo.abs().max()


def test_caso_with_l1_satisfies_optimality_conditions(small_mlp, gen):
    x = torch.randn(3, 12, generator=gen, dtype=F64)
    target = small_mlp(x).argmax(1)
    caso = CASO(small_mlp)
    lambda1 = 2e-3
    delta = caso.attribute(x, lambda1=lambda1, n_iter=400, tol=1e-12)
    H = dense_reference(small_mlp, x, target)
    g = ce_gradient(small_mlp, x, target)
    lam2 = caso.last_lambda2[:, None]
    # default λ₂ = L/2 + 10 with the exact top eigenvalue
    torch.testing.assert_close(
        caso.last_lambda2, torch.linalg.eigvalsh(H)[:, -1] / 2 + 10, rtol=1e-10, atol=0
    )
    smooth_grad = g + (H @ delta[..., None])[..., 0] - 2 * lam2 * delta
    nonzero = delta != 0
    assert nonzero.any() and (~nonzero).any()
    torch.testing.assert_close(
        smooth_grad[nonzero], lambda1 * delta[nonzero].sign(), rtol=0, atol=1e-9
    )
    assert (smooth_grad[~nonzero].abs() <= lambda1 + 1e-12).all()


@pytest.mark.slow
def test_theorem5_caso_parallel_to_cafo_at_high_confidence(gen):
    x = torch.randn(6, 16, generator=gen, dtype=F64)

    def cosines(scale):
        # scaling the last layer sharpens the softmax: p_max → 1 with 100 classes
        model = _seeded(lambda: SmallMLP(16, (32,), 100)).to(F64).eval()
        with torch.no_grad():
            model[-1].weight.mul_(scale)
            model[-1].bias.mul_(scale)
        top = closed_form_hessian(model, x).top_eigenvalue()
        # λ₂ = 0.55·L per sample (just concave) so that the Hessian term is not drowned by
        # c₁ = 10 on this tiny net; an unbounded step lets each sample start at 1/(2λ₂)
        caso = CASO(model).attribute(x, lambda2=0.55 * top, n_iter=300, tol=1e-9, step=1e38)
        cafo = CAFO(model).attribute(x)
        p_max = model(x).softmax(1).amax(1)
        # normalise first: the maps are ~1e-30 at p → 1 and cosine_similarity clamps norms at 1e-8
        unit = lambda t: t / t.norm(dim=1, keepdim=True)  # noqa: E731
        return (unit(caso) * unit(cafo)).sum(1), p_max

    low_cos, low_p = cosines(1.0)
    high_cos, high_p = cosines(1000.0)
    confident = high_p > 0.99
    assert low_p.max() < 0.1 and confident.sum() >= 4
    assert high_cos[confident].min() > 0.999
    assert low_cos.min() < 0.9  # at low confidence the Hessian changes the map


def test_lambda1_search_lands_in_the_sparsity_range(gen):
    model = tiny_cnn().eval()
    x = torch.rand(4, 1, 8, 8, generator=gen, dtype=F64)
    cafo = CAFO(model)
    delta = cafo.attribute(x, lambda1_search=True, sparsity_range=(0.75, 1.0))
    eta = (delta.reshape(4, -1) == 0).double().mean(1)
    assert ((eta >= 0.75) & (eta < 1)).all()
    torch.testing.assert_close(cafo.last_sparsity, eta)
    # the returned map is the CAFO solution at the reported λ₁ (closed form oracle)
    g = ce_gradient(model, x, model(x).argmax(1))
    lam = cafo.last_lambda1.reshape(4, 1, 1, 1)
    torch.testing.assert_close(delta, g.sign() * (g.abs() - lam).clamp_min(0) / 20)
    # oracle for the paper's rule on the first sweep (1e-5 … 1e2): CAFO's sparsity and loss gain
    # gᵀΔ = Σ|g|(|g| − λ)₊/(2λ₂) are closed-form; where a decade lands in range, the search
    # must return the in-range decade with the highest gain
    flat = g.reshape(4, -1).abs()
    decades = 1e-5 * 10.0 ** torch.arange(8, dtype=F64)
    eta_grid = (flat[:, None, :] <= decades[None, :, None]).double().mean(-1)
    gain_grid = (flat[:, None, :] * (flat[:, None, :] - decades[None, :, None]).clamp_min(0)).sum(
        -1
    ) / 20
    ok = (eta_grid >= 0.75) & (eta_grid < 1)
    best = torch.where(ok, gain_grid, -torch.inf).argmax(1)
    for b in range(4):
        if ok[b].any():
            assert float(cafo.last_lambda1[b]) == pytest.approx(float(decades[best[b]]))
    assert ok.any(), "the oracle should cover at least one sample"


def test_caso_lambda1_search_and_refinement(small_mlp, gen):
    x = torch.randn(3, 12, generator=gen, dtype=F64)
    caso = CASO(small_mlp)
    for low, high in ((0.75, 1.0), (0.4, 0.6)):
        delta = caso.attribute(x, lambda1_search=True, sparsity_range=(low, high), n_iter=50)
        eta = (delta == 0).double().mean(1)
        assert ((eta >= low) & (eta <= high) & (eta < 1)).all(), eta
        # decades alone (1e-5 … 1e2) rarely hit a narrow band: refinement produced these
        assert torch.equal(eta, caso.last_sparsity)
    autograd = CASO(small_mlp).attribute(
        x, lambda1_search=True, hessian="autograd", n_iter=50, sparsity_range=(0.4, 0.6)
    )
    torch.testing.assert_close(autograd, delta, rtol=1e-6, atol=1e-12)


def test_smooth_objective_is_averaged_not_the_solutions(small_mlp):
    x = torch.randn(2, 12, generator=torch.Generator().manual_seed(0), dtype=F64)
    target = torch.tensor([1, 3])
    rng = torch.random.get_rng_state()
    kwargs = {"target": target, "lambda1": 1e-3, "n_samples": 5, "stdev": 0.3}
    delta = CAFO(small_mlp).attribute(x, generator=torch.Generator().manual_seed(11), **kwargs)
    assert torch.equal(torch.random.get_rng_state(), rng)
    # oracle: the documented noise layout (B, n, d) drawn from the same seed
    noise = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(11), dtype=F64)
    z = (x[:, None] + 0.3 * noise).reshape(10, 12)
    g = ce_gradient(small_mlp, z, target.repeat_interleave(5)).reshape(2, 5, 12)
    mean = g.mean(1)
    expected = mean.sign() * (mean.abs() - 1e-3).clamp_min(0) / 20
    torch.testing.assert_close(delta, expected)
    separate = (g.sign() * (g.abs() - 1e-3).clamp_min(0) / 20).mean(1)
    assert (separate - expected).abs().max() > 1e-6
    same = CAFO(small_mlp).attribute(x, generator=11, **kwargs)
    other = CAFO(small_mlp).attribute(x, generator=12, **kwargs)
    assert torch.equal(same, delta) and not torch.equal(other, delta)
    smooth_caso = CASO(small_mlp).attribute(x, generator=11, **kwargs)
    assert torch.isfinite(smooth_caso).all() and not torch.equal(smooth_caso, delta)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lambda1": -0.1}, ValueError, "lambda1"),
        ({"lambda1": [0.1, -1.0, 0.0]}, ValueError, "lambda1"),
        ({"n_iter": 0}, ValueError, "n_iter"),
        ({"backtrack": 1.5}, ValueError, "backtrack"),
        ({"sparsity_range": (0.9, 0.5)}, ValueError, "sparsity_range"),
        ({"loss": "mse"}, ValueError, "loss"),
        ({"target": 7}, ValueError, "out of range"),
    ],
)
def test_bad_hyper_parameters(small_mlp, kwargs, error, match):
    x = torch.randn(3, 12, dtype=F64)
    for method in (CAFO(small_mlp), CASO(small_mlp)):
        with pytest.raises(error, match=match):
            method.attribute(x, **kwargs)


def test_caso_rejects_non_concave_lambda2_with_the_minimum(small_mlp, gen):
    x = torch.randn(2, 12, generator=gen, dtype=F64)
    caso = CASO(small_mlp)
    caso.attribute(x)
    half = float((caso.last_lambda2 - 10).max())
    with pytest.raises(ValueError, match=f"lambda2 > {half:.6g}"):
        caso.attribute(x, lambda2=half * 0.999)
    with pytest.raises(ValueError, match="hessian"):
        caso.attribute(x, hessian="exact")
    sigmoid = nn.Sequential(nn.Linear(12, 4), nn.Sigmoid(), nn.Linear(4, 3)).to(F64)
    with pytest.raises(ValueError, match=r"1 \(Sigmoid\)"):
        CASO(sigmoid).attribute(x, hessian="closed_form")


def test_non_finite_inputs_and_missing_gradient_path(small_mlp):
    bad = torch.randn(2, 12, dtype=F64)
    bad[1, 3] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        CASO(small_mlp).attribute(bad)

    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(12, 3)

        def forward(self, x):
            return self.lin(x.detach())

    for method in (CAFO(Detached()), CASO(Detached())):
        with pytest.raises(ValueError, match="no gradient path"):
            method.attribute(torch.randn(2, 12))


def test_non_convergence_is_reported(small_mlp, gen):
    x = torch.randn(2, 12, generator=gen, dtype=F64)
    with pytest.warns(RuntimeWarning, match="did not converge.*objective change"):
        CASO(small_mlp).attribute(x, n_iter=2, tol=1e-12, lambda1=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CASO(small_mlp).attribute(x, n_iter=200, tol=1e-9)


def test_generic_network_uses_double_backward(gen):
    model = _seeded(lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))).to(F64)
    x = torch.randn(2, 6, generator=gen, dtype=F64)
    target = model(x).argmax(1)
    caso = CASO(model)
    delta = caso.attribute(x, n_iter=300, tol=1e-12)
    H = dense_reference(model, x, target)
    g = ce_gradient(model, x, target)
    lam2 = caso.last_lambda2
    eye = torch.eye(6, dtype=F64)
    expected = torch.linalg.solve(2 * lam2[:, None, None] * eye - H, g)
    torch.testing.assert_close(delta, expected, rtol=1e-7, atol=1e-12)
    # λ₂ from 10 power iterations: within c₁'s margin of the exact L/2 + 10
    exact = torch.linalg.eigvalsh(H).abs().amax(-1) / 2 + 10
    assert ((lam2 - exact).abs() < 1.0).all()


@pytest.mark.slow
def test_model_input_and_rng_unharmed_including_failures(vgg_bn, gen):
    x = torch.rand(2, 3, 32, 32, generator=gen).to(next(vgg_bn.parameters()).dtype)
    next(vgg_bn.parameters()).requires_grad_(False)
    before = ModelSnapshot.of(vgg_bn)
    x_before = x.clone()
    rng = torch.random.get_rng_state()
    CASO(vgg_bn).attribute(x, n_iter=3, tol=1.0)  # BN in eval: closed form
    CAFO(vgg_bn).attribute(x, lambda1_search=True, n_iter=2)
    with pytest.raises(ValueError):
        CASO(vgg_bn).attribute(x, lambda2=1e-12)
    with pytest.raises(ValueError):
        CAFO(vgg_bn).attribute(x, target=99)
    assert before.diff(ModelSnapshot.of(vgg_bn)) == []
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.equal(x, x_before)


def test_captum_contract_tuple_inputs_args_and_noise_tunnel(gen):
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 5), nn.Linear(2, 5)

        def forward(self, x, y, shift):
            return torch.relu(self.a(x) + self.b(y)) + shift

    model = _seeded(TwoInputs).to(F64)
    x = torch.randn(4, 3, generator=gen, dtype=F64)
    y = torch.randn(4, 2, generator=gen, dtype=F64)
    shift = torch.randn(4, 5, generator=gen, dtype=F64)
    dx, dy = CASO(model).attribute((x, y), target=2, additional_forward_args=shift, n_iter=50)
    assert dx.shape == x.shape and dy.shape == y.shape
    xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xx, yy, shift), torch.full((4,), 2), reduction="sum")
    gx, gy = torch.autograd.grad(loss, (xx, yy))
    cafo_x, cafo_y = CAFO(model).attribute((x, y), target=2, additional_forward_args=shift)
    torch.testing.assert_close(cafo_x, gx / 20)
    torch.testing.assert_close(cafo_y, gy / 20)
    tunnel = NoiseTunnel(CAFO(model))
    with torch.random.fork_rng(devices=[]):  # NoiseTunnel itself draws from the global RNG
        torch.manual_seed(0)
        smooth = tunnel.attribute(
            (x, y),
            nt_type="smoothgrad",
            nt_samples=3,
            stdevs=0.1,
            target=2,
            additional_forward_args=shift,
        )
    assert smooth[0].shape == x.shape and torch.isfinite(smooth[0]).all()


def test_pair_normalize_oracle():
    sums = torch.tensor([15.0, 11, 7, 3, 1, 5, 9, 13, 17], dtype=F64)
    # split each channel-abs-sum over 3 channels with mixed signs: Σ_c |x| is unchanged
    channels = torch.stack([sums / 2, -sums / 4, sums / 4]).reshape(1, 3, 3, 3)
    expected = torch.tensor(
        [0.883838, 0.631313, 0.378788, 0.126263, 0, 0.252525, 0.505051, 0.757576, 1],
        dtype=F64,
    )
    torch.testing.assert_close(pair_normalize(channels).flatten(), expected, rtol=0, atol=5e-7)


@pytest.mark.slow
def test_example_runs():
    runpy.run_path(str(ROOT / "examples" / "cafo_caso.py"), run_name="__main__")


def test_auto_hessian_picks_the_cheaper_exact_path(gen):
    """Closed form (a Jacobian row per class) for few classes, autograd HVPs for many or for
    networks that are not piecewise linear."""
    x = torch.randn(2, 12, generator=gen, dtype=F64)
    few = _seeded(lambda: SmallMLP(12, (16,), 10)).to(F64).eval()
    many = _seeded(lambda: SmallMLP(12, (16,), 100)).to(F64).eval()
    smooth = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    cases = [(few, {}, "closed_form"), (many, {}, "autograd"), (smooth.to(F64), {}, "autograd")]
    # the λ₁ search needs n_lambda1 × more products: the closed form pays off up to 180 classes
    cases.append((many, {"lambda1_search": True}, "closed_form"))
    for model, kwargs, expected in cases:
        method = CASO(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            method.attribute(x, **kwargs)
        assert method.last_hessian == expected
