"""Batched FISTA for the CAFO/CASO objectives and the per-example λ₁ search (Singla et al., 2019,
§4, §4.1).

Both solvers work on rows ``(N, d)``: every row is one problem

    max_Δ  F(Δ) = gᵀΔ + ½ΔᵀHΔ − λ₂‖Δ‖² − λ₁‖Δ‖₁,

with its own ``g``, ``λ₁``, ``λ₂`` and step size; ``H`` enters only through ``curvature(Δ) = HΔ``
(``None`` for CAFO). Rows stop independently (masks, no Python loop over rows).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

Curvature = Callable[[torch.Tensor], torch.Tensor] | None


@dataclass
class FistaResult:
    """Solution and diagnostics of :func:`fista`, one entry per row."""

    delta: torch.Tensor
    objective: torch.Tensor
    gain: torch.Tensor  # gᵀΔ + ½ΔᵀHΔ: the Taylor model of the loss increase
    step: torch.Tensor
    converged: torch.Tensor
    change: torch.Tensor  # final ‖Δₖ₊₁ − Δₖ‖ / ‖Δₖ₊₁‖
    objective_change: torch.Tensor  # final |Fₖ₊₁ − Fₖ| / |Fₖ₊₁|
    iterations: int

    @property
    def sparsity(self) -> torch.Tensor:
        """η: fraction of exactly-zero entries per row (Singla et al., 2019, §4.1)."""
        return (self.delta == 0).to(self.delta.dtype).mean(dim=-1)


def soft_threshold(values: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Proximal map of ``threshold·‖·‖₁``: shrink towards 0, exact zeros inside the band."""
    return values.sign() * (values.abs() - threshold).clamp_min(0.0)


def _apply(curvature: Curvature, delta: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(delta) if curvature is None else curvature(delta)


def fista(
    gradient: torch.Tensor,
    lambda1: torch.Tensor,
    lambda2: torch.Tensor,
    curvature: Curvature = None,
    n_iter: int = 10,
    step: float = 0.1,
    backtrack: float = 0.5,
    tol: float = 1e-4,
    max_backtracks: int = 40,
    progress: bool = False,
    name: str = "FISTA",
) -> FistaResult:
    """FISTA with backtracking (Beck & Teboulle, 2009) from ``Δ₀ = 0``, batched over rows.

    The smooth part is quadratic, so the sufficient-decrease test for a trial ``Δ⁺`` from the
    extrapolated point ``y`` reduces to ``2λ₂‖u‖² − uᵀHu ≤ ‖u‖²/s`` with ``u = Δ⁺ − y``; ``HΔ⁺``
    from that test is reused for the next gradient, and ``Hy`` follows by linearity, so every
    trial costs exactly one Hessian-vector product. Each row starts from
    ``min(step, 1/(2λ₂))``; its step is shrunk (``backtrack``) only
    while its own test fails and is kept for later iterations. A row stops once its iterate
    moves by at most ``tol`` relative to its norm (``‖Δₖ₊₁ − Δₖ‖ ≤ tol·‖Δₖ₊₁‖``; an objective
    test would stall at √eps because the objective is flat at the optimum); rows still moving
    after ``n_iter`` iterations trigger a ``RuntimeWarning`` giving the final change of the
    iterate and of the objective.
    """
    rows, dtype = gradient.shape[0], gradient.dtype
    col = lambda t: t.to(dtype)[:, None]  # noqa: E731 - per-row scalars as a column
    lam1, lam2 = col(lambda1), col(lambda2)
    delta = torch.zeros_like(gradient)
    h_delta = torch.zeros_like(gradient)
    y, h_y = delta, h_delta
    # Never start above 1/(2λ₂), the smooth part's Lipschitz bound when H is PSD (CAFO, ReLU
    # nets): halving 0.1 would otherwise land up to 2× below it and slow every iteration.
    steps = (0.5 / lam2[:, 0]).clamp_max(float(step))
    active = torch.ones(rows, dtype=torch.bool, device=gradient.device)
    change = torch.full((rows,), math.inf, dtype=dtype, device=gradient.device)
    objective_change = change.clone()
    objective = torch.zeros(rows, dtype=dtype, device=gradient.device)
    momentum = torch.ones(rows, dtype=dtype, device=gradient.device)
    eps = 64 * torch.finfo(dtype).eps
    slack = 1.0 + eps
    done = 0
    for _ in tqdm(range(n_iter), desc=name, disable=not progress, leave=False):
        done += 1
        # ascent direction of the smooth part at y: g + Hy − 2λ₂y
        direction = gradient + h_y - 2 * lam2 * y
        pending = active.clone()
        new, h_new = delta.clone(), h_delta.clone()
        for _ in range(max_backtracks):
            s = col(steps)
            trial = soft_threshold(y + s * direction, s * lam1)
            h_trial = _apply(curvature, torch.where(pending[:, None], trial, 0.0))
            u, h_u = trial - y, h_trial - h_y
            uu = u.square().sum(-1)
            # h_u = HΔ⁺ − Hy cancels near convergence; allow for its rounding error so that
            # round-off alone never shrinks the step
            rounding = eps * u.norm(dim=-1) * (h_trial.norm(dim=-1) + h_y.norm(dim=-1))
            ok = (2 * lam2[:, 0] * uu - (u * h_u).sum(-1) - rounding) * steps <= uu * slack
            accept = pending & ok
            new = torch.where(accept[:, None], trial, new)
            h_new = torch.where(accept[:, None], h_trial, h_new)
            pending &= ~ok
            if not pending.any():
                break
            steps = torch.where(pending, steps * backtrack, steps)
        value = _objective(gradient, new, h_new, lam1, lam2)
        moved = (new - delta).norm(dim=-1)
        size = new.norm(dim=-1)
        change = torch.where(active, torch.where(moved > 0, moved / size, 0.0), change)
        relative = (value - objective).abs() / value.abs().clamp_min(torch.finfo(dtype).tiny)
        objective_change = torch.where(active, relative, objective_change)
        # adaptive restart (O'Donoghue & Candès, 2015): drop a row's momentum when its
        # objective went down or the momentum opposes the proximal step; keeps FISTA linearly
        # convergent on these strongly concave problems instead of oscillating around Δ*.
        opposed = ((y - new) * (new - delta)).sum(-1) > 0
        restart = (value < objective) | opposed
        objective = torch.where(active, value, objective)
        momentum = torch.where(restart, 1.0, momentum)
        following = (1 + (1 + 4 * momentum.square()).sqrt()) / 2
        beta = col((momentum - 1) / following)
        momentum = following
        y = torch.where(active[:, None], new + beta * (new - delta), delta)
        h_y = torch.where(active[:, None], h_new + beta * (h_new - h_delta), h_delta)
        delta, h_delta = new, h_new
        active &= change > tol
        if not active.any():
            break
    gain = (gradient * delta).sum(-1) + 0.5 * (delta * h_delta).sum(-1)
    converged = ~active
    if not bool(converged.all()):
        warnings.warn(
            f"{name}: {int((~converged).sum())} of {rows} problems did not converge in {n_iter} "
            f"iterations (final relative change of Δ up to {float(change.max()):.2e} > "
            f"tol={tol:g}; final relative objective change up to "
            f"{float(objective_change.max()):.2e}); increase n_iter or tol.",
            RuntimeWarning,
            stacklevel=3,
        )
    return FistaResult(delta, objective, gain, steps, converged, change, objective_change, done)


def _objective(g, delta, h_delta, lam1, lam2) -> torch.Tensor:
    return (
        (g * delta).sum(-1)
        + 0.5 * (delta * h_delta).sum(-1)
        - lam2[:, 0] * delta.square().sum(-1)
        - lam1[:, 0] * delta.abs().sum(-1)
    )


Solver = Callable[[torch.Tensor], FistaResult]


@dataclass
class SearchResult:
    """Outcome of :func:`search_lambda1`, one entry per sample."""

    delta: torch.Tensor
    lambda1: torch.Tensor
    sparsity: torch.Tensor
    found: torch.Tensor


def _in_range(eta: torch.Tensor, low: float, high: float) -> torch.Tensor:
    # an all-zero Δ (η = 1) never qualifies: it explains nothing
    return (eta >= low) & (eta <= high) & (eta < 1)


def search_lambda1(
    solve: Solver,
    batch: int,
    n_values: int = 8,
    sparsity_range: tuple[float, float] = (0.75, 1.0),
    start: float = 1e-5,
    factor: float = 10.0,
    max_rounds: int = 3,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> SearchResult:
    """Per-example λ₁ by the sparsity criterion of Singla et al. (2019) §4.1, all candidates
    batched.

    Round 0 sweeps ``start·factor^j`` (j < ``n_values``). Among candidates whose sparsity η
    lies in ``sparsity_range`` (η = 1, an all-zero map, never qualifies) the one with the highest
    Taylor-model loss gain ``gᵀΔ + ½ΔᵀHΔ`` is kept. Samples without a qualifying candidate are
    refined between their largest too-dense λ₁ and their first too-sparse one: by halving from
    the latter (the paper's rule) where ``n_values`` halvings fit, geometrically otherwise, and
    by further decades downwards when even ``start`` was too sparse. ``solve(lams)`` gets a
    ``(batch, n_values)`` λ₁ matrix and solves all ``batch·n_values`` problems in one run (rows
    sample-major). Samples never in range fall back to the nearest-η non-zero candidate with a
    warning.
    """
    low, high = sparsity_range
    kw = {"device": device, "dtype": dtype}
    best_gain = torch.full((batch,), -math.inf, **kw)
    best_lam = torch.zeros(batch, **kw)
    best_eta = torch.full((batch,), math.nan, **kw)
    best_delta: torch.Tensor | None = None
    fallback_gap = torch.full((batch,), math.inf, **kw)
    too_dense = torch.zeros(batch, **kw)  # largest λ₁ with η < low
    too_sparse = torch.full((batch,), math.inf, **kw)  # smallest λ₁ with η > high or Δ = 0
    found = torch.zeros(batch, dtype=torch.bool, device=device)
    exponents = torch.arange(n_values, **kw)
    lams = (start * factor**exponents).expand(batch, -1).clone()
    for _ in range(max_rounds + 1):
        result = solve(lams)
        eta = result.sparsity.reshape(batch, n_values).to(dtype)
        gain = result.gain.reshape(batch, n_values).to(dtype)
        delta = result.delta.reshape(batch, n_values, -1)
        if best_delta is None:
            best_delta = torch.zeros_like(delta[:, 0])
        ok = _in_range(eta, low, high) & ~found[:, None]
        scored = torch.where(ok, gain, -math.inf)
        top, idx = scored.max(dim=1)
        better = top > best_gain
        best_gain = torch.where(better, top, best_gain)
        best_lam = torch.where(better, _take(lams, idx), best_lam)
        best_eta = torch.where(better, _take(eta, idx), best_eta)
        best_delta = torch.where(better[:, None], delta[torch.arange(batch), idx], best_delta)
        # fallback: nearest η to the range among non-zero maps, for samples never in range
        gap = torch.where(eta < 1, (low - eta).clamp_min(0) + (eta - high).clamp_min(0), math.inf)
        gap_min, gap_idx = gap.min(dim=1)
        use_gap = ~found & ~better & (gap_min < fallback_gap) & (best_gain == -math.inf)
        fallback_gap = torch.where(use_gap, gap_min, fallback_gap)
        best_lam = torch.where(use_gap, _take(lams, gap_idx), best_lam)
        best_eta = torch.where(use_gap, _take(eta, gap_idx), best_eta)
        best_delta = torch.where(use_gap[:, None], delta[torch.arange(batch), gap_idx], best_delta)
        found |= ok.any(dim=1)
        if bool(found.all()):
            break
        dense = torch.where(eta < low, lams, 0.0).amax(dim=1)
        sparse = torch.where((eta > high) | (eta >= 1), lams, math.inf).amin(dim=1)
        too_dense = torch.maximum(too_dense, dense)
        too_sparse = torch.minimum(too_sparse, sparse)
        lams = _refine(too_dense, too_sparse, lams, n_values, factor)
    if not bool(found.all()):
        warnings.warn(
            f"λ₁ search: no λ₁ gave a sparsity in {sparsity_range} for {int((~found).sum())} of "
            f"{batch} samples; returning the non-zero solution with the nearest sparsity.",
            RuntimeWarning,
            stacklevel=3,
        )
    return SearchResult(best_delta, best_lam, best_eta, found)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return values.gather(1, index[:, None])[:, 0]


def _refine(
    dense: torch.Tensor, sparse: torch.Tensor, lams: torch.Tensor, n: int, factor: float
) -> torch.Tensor:
    """Next ``n`` candidates per sample strictly between ``dense`` and ``sparse``."""
    j = torch.arange(1, n + 1, dtype=lams.dtype, device=lams.device)
    top = torch.where(torch.isfinite(sparse), sparse, lams.amax(dim=1) * factor**n)
    ratio = torch.where(
        dense > 0,
        torch.maximum(torch.full_like(top, 0.5), (dense / top) ** (1.0 / (n + 1))),
        torch.full_like(top, 1.0 / factor),
    )
    if not torch.isfinite(sparse).all():
        # never sparse enough: keep sweeping upwards from the largest candidate
        up = lams.amax(dim=1, keepdim=True) * factor**j
        return torch.where(torch.isfinite(sparse)[:, None], top[:, None] * ratio[:, None] ** j, up)
    return top[:, None] * ratio[:, None] ** j
