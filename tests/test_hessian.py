"""captum_ext.context_aware.hessian: closed-form ReLU Hessian vs autograd, HVPs, eigenpairs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_ext.context_aware.hessian import (
    AutogradHessian,
    KrylovCache,
    RowFunction,
    closed_form_hessian,
    hessian_vector_product,
    is_piecewise_linear,
    non_piecewise_linear_modules,
    rank_one_error,
)
from captum_ext.core.guard import ModelSnapshot
from captum_ext.zoo import SmallCNN, SmallMLP

F64 = torch.float64


def _seeded(factory, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def tiny_cnn(n_classes: int = 5) -> nn.Module:
    """1×8×8 inputs (d = 64): small enough for torch.autograd.functional.hessian."""
    return _seeded(
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Flatten(),
            nn.Linear(6 * 4 * 4, n_classes),
        )
    ).to(F64)


def dense_reference(model, x, target):
    """Oracle: the (d × d) input Hessian of the CE loss of each sample by autograd."""
    out = []
    for b in range(x.shape[0]):

        def loss(z, b=b):
            return F.cross_entropy(model(z[None]), target[b : b + 1])

        hess = torch.autograd.functional.hessian(loss, x[b], vectorize=True)
        out.append(hess.reshape(x[b].numel(), x[b].numel()))
    return torch.stack(out)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(7)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.slow
def test_closed_form_matches_autograd_hessian(kind, gen):
    if kind == "mlp":
        model = _seeded(lambda: SmallMLP(10, (16, 12), 4)).to(F64).eval()
        x = torch.randn(3, 10, generator=gen, dtype=F64)
    else:
        model = tiny_cnn().eval()
        x = torch.randn(3, 1, 8, 8, generator=gen, dtype=F64)
    target = torch.tensor([0, 2, 1])
    reference = dense_reference(model, x, target)
    factored = closed_form_hessian(model, x, target=target)
    dense = factored.dense()
    scale = reference.abs().max()
    assert scale > 1e-6  # the Hessian is not trivially zero
    torch.testing.assert_close(dense, reference, rtol=0, atol=1e-10 * scale)
    # the gradient comes for free from the Jacobian: check it against autograd
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xx), target, reduction="sum"), xx)
    torch.testing.assert_close(factored.gradient, grad.reshape(3, -1), rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_hvps_of_both_paths_agree_on_the_small_cnn(gen):
    model = _seeded(lambda: SmallCNN(1, 10)).to(F64).eval()
    x = torch.rand(2, 1, 32, 32, generator=gen, dtype=F64)
    v = torch.randn(2, 1, 32, 32, generator=gen, dtype=F64)
    autograd = hessian_vector_product(model, x, v)
    factored = closed_form_hessian(model, x)
    closed = factored.hvp(v.reshape(2, -1)).reshape_as(v)
    assert autograd.abs().max() > 0
    torch.testing.assert_close(closed, autograd, rtol=1e-9, atol=1e-12 * autograd.abs().max())


@pytest.mark.parametrize("kwargs", [{"strategy": "vmap"}, {"chunk_size": 2}])
def test_jacobian_strategies_and_chunks_agree(kwargs, gen):
    model = tiny_cnn().eval()
    x = torch.randn(3, 1, 8, 8, generator=gen, dtype=F64)
    reference = closed_form_hessian(model, x)
    other = closed_form_hessian(model, x, **kwargs)
    torch.testing.assert_close(other.jacobian, reference.jacobian, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_eigenpairs_from_the_small_problem(gen):
    model = tiny_cnn(6).eval()
    x = torch.randn(2, 1, 8, 8, generator=gen, dtype=F64)
    factored = closed_form_hessian(model, x)
    dense = factored.dense()
    values, vectors = factored.eigh()
    reference = torch.linalg.eigvalsh(dense).flip(-1)[:, :6]
    torch.testing.assert_close(values, reference, rtol=0, atol=1e-12 * reference.abs().max())
    top = values[:, :4]  # well separated from 0 (rank ≤ c − 1 = 5)
    u = vectors[:, :, :4]
    torch.testing.assert_close(dense @ u, u * top[:, None, :], rtol=0, atol=1e-10 * top.max())
    gram = u.transpose(1, 2) @ u
    torch.testing.assert_close(gram, torch.eye(4, dtype=F64).expand(2, 4, 4), atol=1e-9, rtol=0)
    torch.testing.assert_close(factored.top_eigenvalue(), reference[:, 0])
    # power iteration on double-backward HVPs approaches the same value
    function = RowFunction(model, [x.shape])
    rows = x.reshape(2, -1)
    target = model(x).argmax(1)
    lanczos = AutogradHessian(function, rows, target).top_eigenvalue(n_iter=60, rtol=0.0)
    torch.testing.assert_close(lanczos, reference[:, 0], rtol=1e-10, atol=0)


def test_rank_one_error_against_dense_oracle_and_theorem4(gen):
    model = _seeded(lambda: SmallMLP(16, (32,), 100)).to(F64).eval()
    x = torch.randn(2, 16, generator=gen, dtype=F64)
    error, angle = rank_one_error(model, x)
    target = model(x).argmax(1)
    dense = dense_reference(model, x, target)
    values, vectors = torch.linalg.eigh(dense)
    expected = (values[:, :-1].square().sum(-1) / values.square().sum(-1)).sqrt()
    torch.testing.assert_close(error, expected, rtol=1e-8, atol=1e-12)
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xx), target, reduction="sum"), xx)
    cos = (vectors[:, :, -1] * grad).sum(-1).abs() / grad.norm(dim=-1)
    torch.testing.assert_close(angle, torch.rad2deg(torch.arccos(cos)), rtol=1e-6, atol=1e-6)
    # Theorem 4: sharpening the softmax (p_max → 1, 100 classes) makes H rank one, u₁ ∥ g
    errors, angles = [], []
    for scale in (1.0, 30.0, 300.0):
        sharp = _seeded(lambda: SmallMLP(16, (32,), 100)).to(F64).eval()
        with torch.no_grad():
            sharp[-1].weight.mul_(scale)
            sharp[-1].bias.mul_(scale)
        e, a = rank_one_error(sharp, x)
        errors.append(float(e.max()))
        angles.append(float(a.max()))
    assert errors[0] > 0.3 and errors[-1] < 0.05 and errors == sorted(errors, reverse=True)
    assert angles[-1] < 5.0 < angles[0]


def test_piecewise_linear_detection():
    cnn = _seeded(lambda: SmallCNN(1, 10)).eval()
    assert is_piecewise_linear(cnn)
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    assert is_piecewise_linear(bn.eval())
    assert non_piecewise_linear_modules(bn.train()) == ["1 (BatchNorm1d in train mode)"]
    smooth = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    assert non_piecewise_linear_modules(smooth) == ["1 (Sigmoid)"]
    with pytest.raises(ValueError, match=r"1 \(Sigmoid\).*hessian='autograd'"):
        closed_form_hessian(smooth, torch.randn(2, 4))
    assert not is_piecewise_linear(lambda x: x)


def test_logit_loss_has_zero_hessian_on_relu_net(gen):
    model = _seeded(lambda: SmallMLP(6, (8,), 3)).to(F64).eval()
    x = torch.randn(2, 6, generator=gen, dtype=F64)
    factored = closed_form_hessian(model, x, target=1, loss="logit")
    assert torch.equal(factored.hvp(torch.ones(2, 6, dtype=F64)), torch.zeros(2, 6, dtype=F64))
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xx)[:, 1].sum(), xx)
    torch.testing.assert_close(factored.gradient, grad)


def test_tuple_inputs_and_additional_args(gen):
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 5), nn.Linear(2, 5)

        def forward(self, x, y, shift):
            return torch.tanh(self.a(x) + self.b(y)) * shift

    model = _seeded(TwoInputs).to(F64)
    x = torch.randn(2, 3, generator=gen, dtype=F64)
    y = torch.randn(2, 2, generator=gen, dtype=F64)
    shift = torch.tensor([[1.0], [2.0]], dtype=F64)
    vx, vy = torch.randn_like(x), torch.randn_like(y)
    hx, hy = hessian_vector_product(
        model, (x, y), (vx, vy), target=0, additional_forward_args=shift
    )
    for b in range(2):

        def loss(z, b=b):
            logits = model(z[None, :3], z[None, 3:], shift[b : b + 1])
            return F.cross_entropy(logits, torch.tensor([0]))

        hess = torch.autograd.functional.hessian(loss, torch.cat([x[b], y[b]]))
        expected = hess @ torch.cat([vx[b], vy[b]])
        torch.testing.assert_close(torch.cat([hx[b], hy[b]]), expected)


def test_models_rng_and_inputs_untouched(gen):
    model = tiny_cnn().float().eval()
    model[0].weight.requires_grad_(False)  # a mixed state must come back as it was
    x = torch.rand(2, 1, 8, 8, generator=gen)
    x_before = x.clone()
    before = ModelSnapshot.of(model)
    rng = torch.random.get_rng_state()
    closed_form_hessian(model, x)
    hessian_vector_product(model, x, torch.ones_like(x))
    rank_one_error(model, x)
    with pytest.raises(ValueError):
        hessian_vector_product(model, x, torch.ones(2, 5))
    assert before.diff(ModelSnapshot.of(model)) == []
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.equal(x, x_before)


def test_no_gradient_path_is_reported():
    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x.detach())

    with pytest.raises(ValueError, match="no gradient path"):
        hessian_vector_product(Detached(), torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="no gradient path"):
        closed_form_hessian(Detached(), torch.randn(2, 3))
    with pytest.raises(ValueError, match="non-finite"):
        closed_form_hessian(nn.Linear(3, 2), torch.tensor([[1.0, float("nan"), 0.0]]))


class _CountingOperator:
    """A symmetric (B, d, d) matrix as an HVP callable that counts its products."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix, self.calls = matrix, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        matrix = self.matrix if v.dim() == 2 else self.matrix[:, None]  # (B, k, d) queries
        return (matrix @ v[..., None])[..., 0]


def test_krylov_cache_is_exact_and_reuses_its_span(gen):
    a = torch.randn(3, 12, 12, generator=gen, dtype=F64)
    operator = _CountingOperator(a @ a.transpose(1, 2))
    cache = KrylovCache(operator, torch.zeros(3, 12, dtype=F64))
    first = torch.randn(3, 2, 12, generator=gen, dtype=F64)
    torch.testing.assert_close(cache(first), operator(first), rtol=1e-12, atol=1e-12)
    calls = operator.calls - 1  # minus the oracle call above
    assert calls == 2  # two independent directions per sample: two batched products
    # any combination of what was seen is answered without a new product
    combo = first[:, 0] * 0.3 - 2.0 * first[:, 1]
    before = operator.calls
    torch.testing.assert_close(cache(combo), operator(combo), rtol=1e-12, atol=1e-12)
    assert operator.calls == before + 1  # only the oracle's product
    # zero vectors are free; flat (B·k, d) rows are sample-major
    zeros = torch.zeros(3 * 4, 12, dtype=F64)
    before = operator.calls
    assert cache(zeros).abs().max() == 0 and operator.calls == before
    rows = torch.randn(3 * 4, 12, generator=gen, dtype=F64)
    expected = operator(rows.reshape(3, 4, 12)).reshape(12, 12)
    torch.testing.assert_close(cache(rows), expected, rtol=1e-12, atol=1e-12)


def test_lanczos_top_eigenvalue_and_exhausted_krylov_space(gen):
    # rank-2 PSD matrices: the Krylov space from any start has dimension ≤ 3
    u = torch.randn(2, 20, 2, generator=gen, dtype=F64)
    operator = _CountingOperator(u @ u.transpose(1, 2))
    cache = KrylovCache(operator, torch.zeros(2, 20, dtype=F64))
    start = torch.randn(2, 20, generator=gen, dtype=F64)
    top = cache.top_eigenvalue(start, n_iter=50, rtol=0.0)
    exact = torch.linalg.eigvalsh(operator.matrix)[:, -1]
    torch.testing.assert_close(top, exact, rtol=1e-12, atol=0)
    assert operator.calls <= 4  # stops once the space is exhausted, not after 50 products


def test_caso_autograd_reuses_lanczos_products_for_lambda1_zero(gen, monkeypatch):
    """λ₁ = 0: FISTA stays in the Krylov space explored for L, so 10 iterations after 10
    Lanczos steps cost at most one more product (20 without the cache)."""
    from captum_ext import CASO

    model = _seeded(lambda: SmallMLP(30, (64, 64), 100)).to(F64).eval()
    x = torch.randn(3, 30, generator=gen, dtype=F64)
    calls = []
    original = AutogradHessian.hvp

    def counting(self, vectors):
        calls.append(1)
        return original(self, vectors)

    monkeypatch.setattr(AutogradHessian, "hvp", counting)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        delta = CASO(model).attribute(x, hessian="autograd", n_iter=10, tol=0.0)
    assert len(calls) <= 11
    # and the answer is the closed form's (exact HVPs, exact L), iterate for iterate
    with pytest.warns(RuntimeWarning, match="did not converge"):
        exact = CASO(model).attribute(x, hessian="closed_form", n_iter=10, tol=0.0)
    torch.testing.assert_close(delta, exact, rtol=1e-8, atol=1e-12)
