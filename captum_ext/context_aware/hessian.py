"""Input Hessians of a classifier's loss: double-backward HVPs and the closed form for ReLU nets.

Singla et al. (2019), "Understanding Impacts of High-Order Loss Approximations and Features in
Deep Learning Interpretation" (ICML), §3.1 and Appendix C: for a network that is piecewise linear
in its input (ReLU, LeakyReLU, max-pool, linear, conv, BN in eval) the logits are locally
``f(x) = Jx + b`` with ``J = ∂f/∂x`` (``c × d``), so the input Hessian of the softmax
cross-entropy is

    H = Jᵀ (diag p − p pᵀ) J,

a PSD matrix of rank ≤ c − 1. :class:`FactoredHessian` keeps it in this factored form (``O(d·c)``
memory per sample, never ``d × d``): Hessian-vector products are two matrix products and the exact
eigenpairs come from a ``c × c`` problem. For any other network :class:`AutogradHessian` gives
Hessian-vector products by double back-propagation (Pearlmutter, 1994).

All operators work on flattened inputs: rows of shape ``(N, d)``; tuple inputs are concatenated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from captum._utils.common import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _format_additional_forward_args,
    _format_tensor_into_tuples,
)
from torch import nn

from captum_ext.core.guard import ModelGuard
from captum_ext.core.krylov import KrylovCache, eigh_any_precision
from captum_ext.core.modules import (
    AVG_POOL_TYPES,
    BATCHNORM_TYPES,
    DROPOUT_TYPES,
    LINEAR_TYPES,
    MAX_POOL_TYPES,
)
from captum_ext.core.validation import check_finite, check_model_output, check_targets

LossName = Literal["cross_entropy", "logit"]
TensorOrTuple = torch.Tensor | tuple[torch.Tensor, ...]

__all__ = [
    "AutogradHessian",
    "FactoredHessian",
    "KrylovCache",
    "RowFunction",
    "closed_form_hessian",
    "hessian_vector_product",
    "is_piecewise_linear",
    "loss_gradient",
    "non_piecewise_linear_modules",
    "rank_one_error",
    "sample_loss",
]

# Leaf modules whose output is piecewise linear in their input (given fixed parameters).
_PIECEWISE_LINEAR = (
    *LINEAR_TYPES,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ReLU6,
    nn.Hardtanh,
    *MAX_POOL_TYPES,
    *AVG_POOL_TYPES,
    nn.Flatten,
    nn.Identity,
)
# Piecewise linear only in eval mode (batch statistics / random masks otherwise).
_EVAL_ONLY = (*BATCHNORM_TYPES, *DROPOUT_TYPES)


def non_piecewise_linear_modules(model: nn.Module) -> list[str]:
    """``"path (Type)"`` of every leaf module that breaks piecewise linearity (empty: PL net).

    Only module types are inspected; non-linear functional calls inside a custom ``forward``
    (``torch.sigmoid(...)``) are invisible, so pass ``hessian="autograd"`` for such models.
    """
    bad = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue  # containers: their leaves decide
        if isinstance(module, _EVAL_ONLY):
            if module.training:
                bad.append(f"{name or '<root>'} ({type(module).__name__} in train mode)")
        elif not isinstance(module, _PIECEWISE_LINEAR):
            bad.append(f"{name or '<root>'} ({type(module).__name__})")
    return bad


def is_piecewise_linear(forward_func: Callable[..., torch.Tensor]) -> bool:
    """True if ``forward_func`` is an ``nn.Module`` made only of piecewise-linear leaf layers."""
    return isinstance(forward_func, nn.Module) and not non_piecewise_linear_modules(forward_func)


def sample_loss(logits: torch.Tensor, target: torch.Tensor, loss: LossName) -> torch.Tensor:
    """Per-sample loss: cross-entropy against ``target`` or the ``target`` logit itself."""
    if logits.dim() != 2:
        raise ValueError(
            f"the model must return logits of shape (batch, classes), got {tuple(logits.shape)}."
        )
    if loss == "cross_entropy":
        # CE = softplus(logsumexp_{j≠t}(z_j − z_t)): the same function as F.cross_entropy, but
        # its derivatives come out as p_j (j ≠ t) and −Σ_{j≠t} p_j instead of p_t − 1, which
        # float32 rounds to garbage for confident predictions (p_t > 1 − 10⁻⁷).
        margins = logits - logits.gather(1, target[:, None])
        margins = margins.scatter(1, target[:, None], -torch.inf)
        return F.softplus(torch.logsumexp(margins, dim=1))
    if loss == "logit":
        return logits.gather(1, target[:, None])[:, 0]
    raise ValueError(f"loss must be 'cross_entropy' or 'logit', got {loss!r}.")


class RowFunction:
    """The model as a function of flattened input rows ``(N, d)``, N = batch × repeats.

    Rows are ordered sample-major (``repeat_interleave``), so tensor ``additional_forward_args``
    with a batch dimension are repeated the same way.
    """

    def __init__(
        self,
        forward_func: Callable[..., torch.Tensor],
        shapes: Sequence[torch.Size],
        additional_forward_args: Any = None,
    ) -> None:
        self.forward_func = forward_func
        self.shapes = [tuple(s[1:]) for s in shapes]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.batch = shapes[0][0]
        self.args = _format_additional_forward_args(additional_forward_args)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def split(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows ``(N, d)`` back to the input tensors ``(N, *shape_i)``."""
        parts = rows.split(self.sizes, dim=-1)
        return tuple(p.reshape(rows.shape[0], *s) for p, s in zip(parts, self.shapes, strict=True))

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        repeats = rows.shape[0] // self.batch
        args = self.args
        if args is not None and repeats > 1:
            args = _expand_additional_forward_args(args, repeats, ExpansionTypes.repeat_interleave)
        return self.forward_func(*self.split(rows), *(args or ()))


def flatten_inputs(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Concatenate a tuple of ``(B, ...)`` tensors into detached rows ``(B, d)``."""
    return torch.cat([t.detach().reshape(t.shape[0], -1) for t in inputs], dim=1)


def _no_path_error() -> ValueError:
    return ValueError(
        "the model output has no gradient path to the inputs (is the forward detached, run "
        "under torch.no_grad, or are the inputs unused?); CAFO/CASO need ∂loss/∂input."
    )


class _FrozenParameters(ModelGuard):
    """Freeze parameters while differentiating w.r.t. the input only (skips weight gradients).

    ``ModelGuard`` restores the flags on exit, also on errors.
    """

    def __enter__(self) -> nn.Module:
        model = super().__enter__()
        for param in model.parameters():
            param.requires_grad_(False)
        return model


def frozen(forward_func: Callable[..., torch.Tensor]) -> AbstractContextManager[Any]:
    """Context manager: parameters frozen if ``forward_func`` is a module, else nothing to do."""
    if isinstance(forward_func, nn.Module):
        return _FrozenParameters(forward_func)
    return nullcontext()


class AutogradHessian:
    """Input Hessian of the (noise-averaged) loss as a Hessian-vector-product operator.

    Builds one graph on rows ``(B·r, d)`` (``r`` copies per sample, e.g. noisy copies) and keeps
    the first-order gradient with ``create_graph=True``; every :meth:`hvp` is then one double
    backward through that graph.

    Parameters
    ----------
    function : RowFunction
        The model on flattened rows.
    rows : torch.Tensor
        ``(B·r, d)`` points where the Hessian is taken, sample-major.
    target : torch.Tensor
        ``(B·r,)`` class index per row.
    copies : int
        ``r``; gradients and HVPs are averaged over the copies of each sample.
    loss : {"cross_entropy", "logit"}
    """

    def __init__(
        self,
        function: RowFunction,
        rows: torch.Tensor,
        target: torch.Tensor,
        copies: int = 1,
        loss: LossName = "cross_entropy",
    ) -> None:
        self.copies = copies
        self.rows = rows.detach().requires_grad_(True)
        with torch.enable_grad():
            value = sample_loss(function(self.rows), target, loss).sum()
            if not value.requires_grad:
                raise _no_path_error()
            (grad,) = torch.autograd.grad(value, self.rows, create_graph=True, allow_unused=True)
        if grad is None:
            raise _no_path_error()
        self._grad = grad
        self.gradient = self._average(grad.detach())

    def _average(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.reshape(-1, self.copies, rows.shape[-1]).mean(dim=1)

    def hvp(self, vectors: torch.Tensor) -> torch.Tensor:
        """``H v`` for vectors ``(B, d)`` (one per sample); returns ``(B, d)``."""
        expanded = vectors.repeat_interleave(self.copies, dim=0)
        if not self._grad.requires_grad:  # the gradient is constant: H = 0
            return torch.zeros_like(vectors)
        (out,) = torch.autograd.grad(
            self._grad, self.rows, grad_outputs=expanded, retain_graph=True, allow_unused=True
        )
        return torch.zeros_like(vectors) if out is None else self._average(out)

    def top_eigenvalue(self, n_iter: int = 10, rtol: float = 1e-3) -> torch.Tensor:
        """Largest eigenvalue per sample: Lanczos from the gradient (see :class:`KrylovCache`)."""
        return KrylovCache(self.hvp, self.gradient).top_eigenvalue(self.gradient, n_iter, rtol)


class FactoredHessian:
    """Closed-form input Hessian ``H = Jᵀ A J`` with ``A = diag p − p pᵀ`` (Singla et al., 2019,
    eq. 6).

    Stored relative to the most probable class ``k`` so that confident predictions keep their
    precision: since ``A·1 = 0``, ``H = J_kᵀ A_k J_k`` with ``J_k`` the Jacobian rows minus row
    ``k`` (row ``k`` becomes 0) and ``A_k = diag p' − p'p'ᵀ``, ``p'`` = ``p`` with ``p_k`` set to 0.
    Nothing then computes ``1 − p_k`` by cancellation, which in float32 destroys ``A`` once
    ``p_k > 1 − 10⁻⁷`` (exactly the regime of Singla et al. (2019) Theorem 5).

    Parameters
    ----------
    jacobian : torch.Tensor
        ``(B, r, c, d)``: shifted logit Jacobian ``J_k`` per sample and copy (``r`` noisy
        copies, 1 without smoothing).
    probs : torch.Tensor or None
        ``(B, r, c)`` probabilities ``p'`` (``p_k`` zeroed); ``None`` means the logit loss, whose
        Hessian is 0 for a piecewise-linear network.
    top_prob : torch.Tensor or None
        ``(B, r)`` the zeroed ``p_k``.
    gradient : torch.Tensor
        ``(B, d)`` gradient of the loss (averaged over copies).
    """

    def __init__(
        self,
        jacobian: torch.Tensor,
        probs: torch.Tensor | None,
        top_prob: torch.Tensor | None,
        gradient: torch.Tensor,
    ) -> None:
        self.jacobian = jacobian
        self.probs = probs
        self.top_prob = top_prob
        self.gradient = gradient

    @property
    def copies(self) -> int:
        return self.jacobian.shape[1]

    def _weighted(self, u: torch.Tensor) -> torch.Tensor:
        # A u = p ∘ u − p (pᵀu) without forming A; u: (B, r, c, k)
        p = self.probs[..., None]
        return p * u - p * (p * u).sum(dim=-2, keepdim=True)

    def hvp(self, vectors: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``(B, d)`` or ``(B, k, d)`` vectors (k right-hand sides per sample)."""
        if self.probs is None:
            return torch.zeros_like(vectors)
        single = vectors.dim() == 2
        v = vectors[:, None] if single else vectors
        jv = torch.einsum("brcd,bkd->brck", self.jacobian, v)
        out = torch.einsum("brcd,brck->bkd", self.jacobian, self._weighted(jv)) / self.copies
        return out[:, 0] if single else out

    def _factor(self) -> torch.Tensor:
        # A_k = D^½ (I − q qᵀ) D^½ with q = √p', ‖q‖² = 1 − p_k; (I − α q qᵀ)² = I − q qᵀ for
        # α = 1/(1 + √p_k), so A_k = F Fᵀ with F = diag(q) − α p' qᵀ: an exact square-root
        # factor without Cholesky (A is singular) and without computing 1 − p_k.
        q = self.probs.sqrt()
        alpha = 1.0 / (1.0 + self.top_prob.sqrt())
        return (
            torch.diag_embed(q)
            - alpha[..., None, None] * self.probs[..., :, None] * q[..., None, :]
        )

    def eigh(self, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact eigenpairs from the ``c × c`` problem (Singla et al., 2019, Appendix C).

        With ``B = Jᵀ F`` (``H = B Bᵀ``) the Gram matrix ``C = Bᵀ B = Fᵀ J Jᵀ F`` has the same
        non-zero eigenvalues ``σ²`` as ``H``; its eigenvectors ``V`` give ``U = B V / σ``.
        Only supported without smoothing (``r = 1``).

        Returns
        -------
        values : torch.Tensor
            ``(B, k)`` eigenvalues, descending (``k = c`` by default).
        vectors : torch.Tensor
            ``(B, d, k)`` orthonormal eigenvectors (zero columns for zero eigenvalues).
        """
        if self.copies != 1:
            raise ValueError("exact eigenpairs need one Hessian per sample (n_samples=1).")
        jac = self.jacobian[:, 0]
        n_classes = jac.shape[1]
        k = n_classes if k is None else min(k, n_classes)
        if self.probs is None:
            zeros = jac.new_zeros(jac.shape[0], k)
            return zeros, jac.new_zeros(jac.shape[0], jac.shape[2], k)
        factor = self._factor()[:, 0]
        gram = factor.transpose(1, 2) @ (jac @ jac.transpose(1, 2)) @ factor
        values, vecs = eigh_any_precision((gram + gram.transpose(1, 2)) / 2)
        values, vecs = values.flip(-1)[:, :k].clamp_min(0.0), vecs.flip(-1)[:, :, :k]
        sigma = values.sqrt()
        tol = sigma[:, :1] * n_classes * torch.finfo(jac.dtype).eps
        scale = torch.where(sigma > tol, 1.0 / sigma.clamp_min(torch.finfo(jac.dtype).tiny), 0.0)
        u = jac.transpose(1, 2) @ (factor @ vecs) * scale[:, None, :]
        return values, u

    def top_eigenvalue(self, n_iter: int = 50) -> torch.Tensor:
        """Largest eigenvalue ``(B,)``: exact without smoothing, Lanczos otherwise."""
        if self.copies == 1:
            return self.eigh(k=1)[0][:, 0]
        return KrylovCache(self.hvp, self.gradient).top_eigenvalue(self.gradient, n_iter)

    def dense(self) -> torch.Tensor:
        """The full ``(B, d, d)`` matrix: for tests on tiny inputs only."""
        eye = torch.eye(self.jacobian.shape[-1], dtype=self.jacobian.dtype)
        eye = eye.to(self.jacobian.device).expand(self.jacobian.shape[0], -1, -1)
        return self.hvp(eye)


def logit_jacobian(
    function: RowFunction,
    rows: torch.Tensor,
    n_classes: int,
    chunk_size: int | None = None,
    strategy: Literal["expand", "vmap"] = "expand",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobian rows ``(N, c, d)`` of the logits and the logits ``(N, c)`` at ``rows``.

    ``"expand"`` copies each row once per class of a chunk and back-propagates one-hot vectors
    through that batch-expanded graph (one ordinary backward per chunk); ``"vmap"`` reuses a
    single forward and vectorises the backward over the one-hot vectors
    (``is_grads_batched``). The benchmark measures both: ``"vmap"`` is faster for small CNNs and
    few classes but falls back to very slow loops for BatchNorm/1000-class ResNets.
    ``chunk_size`` classes are handled at a time (default ``256 // N``), bounding the graph
    memory; the result itself is ``O(N·c·d)``.
    """
    n_rows, dim = rows.shape
    # default: about 256 expanded rows per backward, so 1000 classes never build a graph on
    # 1000 × batch inputs at once (memory then stays O(N·c·d) for the result itself)
    default = max(1, 256 // max(n_rows, 1))
    chunk = max(1, min(default if chunk_size is None else chunk_size, n_classes))
    jac = rows.new_empty(n_rows, n_classes, dim)
    logits = None
    with torch.enable_grad():
        if strategy == "vmap":
            x = rows.detach().requires_grad_(True)
            logits = function(x)
            if not logits.requires_grad:
                raise _no_path_error()
            for start in range(0, n_classes, chunk):
                stop = min(start + chunk, n_classes)
                eye = torch.eye(n_classes, dtype=logits.dtype, device=logits.device)[start:stop]
                seeds = eye[:, None, :].expand(-1, n_rows, -1)
                (part,) = torch.autograd.grad(
                    logits, x, seeds, retain_graph=True, is_grads_batched=True
                )
                jac[:, start:stop] = part.transpose(0, 1)
        elif strategy == "expand":
            for start in range(0, n_classes, chunk):
                stop = min(start + chunk, n_classes)
                width = stop - start
                # rows sample-major, classes inner: (N·width, d), RowFunction repeats args alike
                x = rows.detach().repeat_interleave(width, dim=0).requires_grad_(True)
                out = function(x)
                if not out.requires_grad:
                    raise _no_path_error()
                if logits is None:
                    logits = out.detach()[::width]
                seeds = torch.zeros_like(out).reshape(n_rows, width, n_classes)
                idx = torch.arange(width, device=out.device)
                seeds[:, idx, start + idx] = 1.0
                (part,) = torch.autograd.grad(out, x, seeds.reshape_as(out))
                jac[:, start:stop] = part.reshape(n_rows, width, dim)
        else:
            raise ValueError(f"strategy must be 'expand' or 'vmap', got {strategy!r}.")
    return jac, logits.detach()


def build_factored(
    function: RowFunction,
    rows: torch.Tensor,
    target: torch.Tensor,
    copies: int = 1,
    loss: LossName = "cross_entropy",
    chunk_size: int | None = None,
    strategy: Literal["expand", "vmap"] = "expand",
) -> FactoredHessian:
    """:class:`FactoredHessian` (and the gradient, for free: ``g = Jᵀ(p − y)``) at ``rows``."""
    with torch.no_grad():
        n_classes = function(rows[: function.batch]).shape[1]
    jac, logits = logit_jacobian(function, rows, n_classes, chunk_size, strategy)
    index = torch.arange(rows.shape[0], device=rows.device)
    batch = rows.shape[0] // copies
    if loss == "logit":
        grad, probs, top_prob = jac[index, target], None, None
    elif loss == "cross_entropy":
        probs = logits.softmax(dim=1)
        top = probs.argmax(dim=1)
        top_prob = probs[index, top]
        jac -= jac[index, top][:, None].clone()  # J_k: relative to the top class (in place)
        residual = probs - F.one_hot(target, n_classes).to(jac.dtype)
        residual[index, top] = 0.0  # its Jacobian row is now 0 anyway
        grad = torch.einsum("ncd,nc->nd", jac, residual)
        probs = probs.clone()
        probs[index, top] = 0.0
        probs, top_prob = probs.reshape(batch, copies, n_classes), top_prob.reshape(batch, copies)
    else:
        raise ValueError(f"loss must be 'cross_entropy' or 'logit', got {loss!r}.")
    gradient = grad.reshape(batch, copies, -1).mean(dim=1)
    return FactoredHessian(jac.reshape(batch, copies, n_classes, -1), probs, top_prob, gradient)


def _prepare(
    forward_func: Callable[..., torch.Tensor],
    inputs: TensorOrTuple,
    target: Any,
    additional_forward_args: Any,
) -> tuple[RowFunction, torch.Tensor, torch.Tensor]:
    """Validate and flatten inputs; resolve ``target`` (None → predicted class)."""
    tensors = _format_tensor_into_tuples(inputs)
    check_finite(tensors)
    function = RowFunction(forward_func, [t.shape for t in tensors], additional_forward_args)
    rows = flatten_inputs(tensors)
    with torch.no_grad():
        logits = function(rows)
    return function, rows, resolve_target(target, logits)


def resolve_target(target: Any, logits: torch.Tensor) -> torch.Tensor:
    """Class index per sample ``(B,)``; ``None`` picks the predicted class."""
    logits = check_model_output(logits, "CAFO/CASO")
    if logits.dim() != 2:
        raise ValueError(
            f"the model must return logits of shape (batch, classes), got {tuple(logits.shape)}."
        )
    batch = logits.shape[0]
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, tuple) or (
        isinstance(target, torch.Tensor) and target.is_floating_point()
    ):
        raise TypeError("target must be an int, a list of ints or an integer tensor of classes.")
    check_targets(target, logits)
    t = torch.as_tensor(target, device=logits.device).long().flatten()
    return (t.expand(batch) if t.numel() == 1 else t) % logits.shape[1]


def hessian_vector_product(
    forward_func: Callable[..., torch.Tensor],
    inputs: TensorOrTuple,
    vectors: TensorOrTuple,
    target: Any = None,
    additional_forward_args: Any = None,
    loss: LossName = "cross_entropy",
) -> TensorOrTuple:
    """Batched ``H v`` of the per-sample loss w.r.t. the input, by double backward.

    Parameters
    ----------
    forward_func : callable
        The model (logits ``(B, c)``).
    inputs, vectors : tensor or tuple of tensors
        Points and directions, same shapes.
    target : int, list or tensor, optional
        Class per sample for the loss; ``None`` = predicted class.
    loss : {"cross_entropy", "logit"}

    Returns
    -------
    tensor or tuple of tensors, shaped like ``inputs``.
    """
    is_tuple = isinstance(inputs, tuple)
    function, rows, tgt = _prepare(forward_func, inputs, target, additional_forward_args)
    v_rows = flatten_inputs(_format_tensor_into_tuples(vectors)).to(rows.dtype)
    if v_rows.shape != rows.shape:
        raise ValueError(f"vectors {tuple(v_rows.shape)} must match inputs {tuple(rows.shape)}.")
    with frozen(forward_func):
        out = AutogradHessian(function, rows, tgt, loss=loss).hvp(v_rows)
    parts = function.split(out)
    return parts if is_tuple else parts[0]


def closed_form_hessian(
    forward_func: Callable[..., torch.Tensor],
    inputs: TensorOrTuple,
    target: Any = None,
    additional_forward_args: Any = None,
    loss: LossName = "cross_entropy",
    chunk_size: int | None = None,
    strategy: Literal["expand", "vmap"] = "expand",
) -> FactoredHessian:
    """The closed-form input Hessian of a piecewise-linear network (Singla et al., 2019,
    Proposition 1).

    Raises ``ValueError`` naming the offending layers when the network is not piecewise linear
    (its Hessian is then not ``Jᵀ A J``; use :func:`hessian_vector_product`). Inputs are
    flattened (tuple inputs concatenated) in the returned operator.
    """
    if isinstance(forward_func, nn.Module):
        bad = non_piecewise_linear_modules(forward_func)
        if bad:
            raise ValueError(
                "the closed-form Hessian needs a piecewise-linear network; not piecewise linear: "
                f"{', '.join(bad[:5])}. Put BatchNorm/Dropout in eval mode or use the "
                "double-backward Hessian (hessian='autograd')."
            )
    function, rows, tgt = _prepare(forward_func, inputs, target, additional_forward_args)
    with frozen(forward_func):
        return build_factored(function, rows, tgt, 1, loss, chunk_size, strategy)


def rank_one_error(
    forward_func: Callable[..., torch.Tensor],
    inputs: TensorOrTuple,
    target: Any = None,
    additional_forward_args: Any = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How far the closed-form Hessian is from rank one (Singla et al., 2019, Theorem 4, Appendix
    F.1).

    Returns
    -------
    relative_error : torch.Tensor
        ``(B,)``: ``‖H − σ₁u₁u₁ᵀ‖_F / ‖H‖_F = √(Σ_{i≥2} σ_i²) / √(Σ σ_i²)`` (0 if H = 0).
    angle : torch.Tensor
        ``(B,)`` angle in degrees (0–90) between the top eigenvector ``u₁`` and the gradient.
    """
    hessian = closed_form_hessian(
        forward_func, inputs, target, additional_forward_args, chunk_size=chunk_size
    )
    values, vectors = hessian.eigh()
    total = values.square().sum(-1)
    rest = values[:, 1:].square().sum(-1)
    error = torch.where(total > 0, (rest / total.clamp_min(torch.finfo(total.dtype).tiny)), 0.0)
    grad = hessian.gradient
    cos = (vectors[:, :, 0] * grad).sum(-1).abs() / (
        grad.norm(dim=-1) * vectors[:, :, 0].norm(dim=-1)
    ).clamp_min(torch.finfo(grad.dtype).tiny)
    return error.sqrt(), torch.rad2deg(torch.arccos(cos.clamp(0.0, 1.0)))


def loss_gradient(
    function: RowFunction,
    rows: torch.Tensor,
    target: torch.Tensor,
    copies: int = 1,
    loss: LossName = "cross_entropy",
) -> torch.Tensor:
    """First-order gradient ``(B, d)`` of the loss at ``rows`` (averaged over ``copies``)."""
    x = rows.detach().requires_grad_(True)
    with torch.enable_grad():
        value = sample_loss(function(x), target, loss).sum()
        if not value.requires_grad:
            raise _no_path_error()
        (grad,) = torch.autograd.grad(value, x, allow_unused=True)
    if grad is None:
        raise _no_path_error()
    return grad.reshape(-1, copies, grad.shape[-1]).mean(dim=1)
