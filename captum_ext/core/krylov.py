"""Krylov-space machinery: operator products remembered on the span they explored.

Used for input Hessians (CASO's curvature) and for layer operator norms (the analytic
convergence bounds): both need the largest eigenvalue of a symmetric operator that is only
available as products, and both profit from never paying twice for a direction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["KrylovCache", "eigh_any_precision"]


def eigh_any_precision(matrix: torch.Tensor, vectors: bool = True) -> Any:
    """``torch.linalg.eigh``/``eigvalsh`` also for float16/bfloat16 (solved in float32).

    LAPACK and cuSOLVER have no half-precision eigensolvers; the small ``c × c`` (or Krylov)
    problems are solved in float32 and the results cast back.
    """
    work = matrix.float() if matrix.dtype in (torch.float16, torch.bfloat16) else matrix
    if not vectors:
        return torch.linalg.eigvalsh(work).to(matrix.dtype)
    values, vecs = torch.linalg.eigh(work)
    return values.to(matrix.dtype), vecs.to(matrix.dtype)


class KrylovCache:
    """Hessian-vector products that remember ``H`` on the span of every vector seen so far.

    Each sample keeps an orthonormal basis ``Q`` and its images ``HQ`` (computed by ``hvp``).
    A query ``v = Qc + r`` is answered as ``(HQ)c + Hr``, and ``Hr`` costs one real product only
    when the residual ``r`` (after two Gram–Schmidt passes) exceeds ``100·eps·‖v‖``; its
    direction then joins the basis. Answers equal direct products up to rounding.

    Why it pays for CASO (Singla et al., 2019): FISTA from ``Δ₀ = 0`` with ``λ₁ = 0`` never
    leaves the Krylov space ``span{g, Hg, H²g, …}`` that the eigenvalue estimate has already
    explored, so its iterations and backtracking trials need no further double backward;
    candidates with ``Δ = 0`` (``λ₁`` above every ``|gᵢ|``) are free as well. With ``λ₁ > 0``
    the soft threshold leaves that space and each new direction costs one product, as without
    the cache.

    Parameters
    ----------
    hvp : callable
        ``(B, d) -> (B, d)``: one Hessian-vector product per sample.
    like : torch.Tensor
        ``(B, d)``: batch size, dimension, dtype and device.
    max_size : int
        Basis vectors kept per sample (memory ``2·B·max_size·d``); later directions are still
        used within their own query but not remembered.
    """

    def __init__(
        self,
        hvp: Callable[[torch.Tensor], torch.Tensor],
        like: torch.Tensor,
        max_size: int = 64,
    ) -> None:
        self.hvp = hvp
        self.basis = like.new_zeros(like.shape[0], 0, like.shape[-1])
        self.images = self.basis.clone()
        self.max_size = max_size
        self.rtol = 100 * torch.finfo(like.dtype).eps
        self.products = 0  # real Hessian-vector products so far (diagnostics)

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``(B, d)``, ``(B·k, d)`` (sample-major) or ``(B, k, d)`` vectors."""
        batch, dim = self.basis.shape[0], self.basis.shape[-1]
        v = vectors.reshape(batch, -1, dim)
        coef = v.new_zeros(*v.shape[:2], 0)
        residual = v
        for _ in range(2):  # classical Gram–Schmidt twice: orthogonal to working precision
            extra = residual @ self.basis.transpose(1, 2)
            residual = residual - extra @ self.basis
            coef = extra if coef.shape[-1] == 0 else coef + extra
        out = coef @ self.images
        limit = self.rtol * v.norm(dim=-1)
        rows = torch.arange(batch, device=v.device)
        for _ in range(v.shape[1]):
            need = residual.norm(dim=-1) > limit
            if not bool(need.any()):
                break
            # one new direction per sample per product: its first outstanding residual
            has = need.any(dim=1)
            direction = residual[rows, need.to(torch.uint8).argmax(dim=1)][:, None]
            direction = (direction - (direction @ self.basis.transpose(1, 2)) @ self.basis)[:, 0]
            norm = direction.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
            unit = torch.where(has[:, None], direction / norm, 0.0)
            image = self.hvp(unit)
            self.products += 1
            weight = (residual * unit[:, None]).sum(-1, keepdim=True)
            out = out + weight * image[:, None]
            residual = residual - weight * unit[:, None]
            if self.basis.shape[1] < self.max_size:
                self.basis = torch.cat([self.basis, unit[:, None]], dim=1)
                self.images = torch.cat([self.images, image[:, None]], dim=1)
        return out.reshape(vectors.shape)

    def top_eigenvalue(
        self, start: torch.Tensor, n_iter: int = 10, rtol: float = 1e-3
    ) -> torch.Tensor:
        """Largest eigenvalue ``(B,)`` by Lanczos from ``start`` (``n_iter`` products at most).

        The power iterates ``start, Hstart, H²start, …`` span the Krylov space that this cache
        orthonormalises; the top eigenvalue of ``QᵀHQ`` on it (the Ritz value) is never below
        the plain power-iteration estimate after as many products, and never above ``L``. Starts
        from the given vectors (for CASO the gradient, close to the top eigenvector by Theorem 4
        of Singla et al., 2019); stops once every estimate changed by ≤ ``rtol`` (relative).
        Clamped at 0: only positive curvature limits concavity.
        """
        vector = torch.where(start.norm(dim=-1, keepdim=True) > 0, start, 1.0)
        value = torch.zeros(start.shape[0], dtype=start.dtype, device=start.device)
        for _ in range(n_iter):
            size = self.basis.shape[1]
            self(vector)
            if self.basis.shape[1] == size:  # Krylov space exhausted: the value is exact
                break
            projected = self.basis @ self.images.transpose(1, 2)
            previous = value
            value = eigh_any_precision((projected + projected.transpose(1, 2)) / 2, False)[:, -1]
            if bool(((value - previous).abs() <= rtol * value.abs()).all()):
                break
            vector = self.images[:, -1]  # H·(newest basis vector): the next Krylov direction
        return value.clamp_min(0.0)
