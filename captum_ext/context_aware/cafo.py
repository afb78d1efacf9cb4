"""CAFO: context-aware first-order saliency (Singla et al., ICML 2019, Definition 2).

The attribution is the solution ``Δ`` of

    max_Δ  ∇ₓℓ(f(x), y)ᵀΔ − λ₁‖Δ‖₁ − λ₂‖Δ‖²,

solved by FISTA with backtracking (step 0.1 halved on failure, 10 iterations, Δ₀ = 0); ``λ₁`` can
be chosen per example by the sparsity criterion of §4.1, and Smooth CAFO (eq. 8) averages the
objective over noisy copies of the input. :class:`captum_ext.CASO` adds the Hessian term.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from captum._utils.common import _format_output, _format_tensor_into_tuples, _is_tuple
from captum.attr import GradientAttribution
from captum.log import log_usage

from captum_ext.context_aware.fista import Curvature, FistaResult, fista, search_lambda1
from captum_ext.context_aware.hessian import (
    RowFunction,
    TensorOrTuple,
    _prepare,
    frozen,
    loss_gradient,
)
from captum_ext.context_aware.options import CAFOOptions, resolve_options
from captum_ext.core.isolation import isolated_call
from captum_ext.core.progress import show_progress
from captum_ext.core.reprs import ReprFromInit
from captum_ext.core.validation import check_positive, check_result_finite

__all__ = ["CAFO", "pair_normalize"]


@dataclass
class _Problem:
    """What the solver needs per sample: the (averaged) gradient, ``HΔ`` and λ₂."""

    gradient: torch.Tensor
    curvature: Curvature
    lambda2: torch.Tensor


class CAFO(ReprFromInit, GradientAttribution):
    """Context-Aware First-Order saliency (Singla et al., 2019, Definition 2; Smooth CAFO, eq. 8).

    The loss is the cross-entropy against the target class (the predicted class by default, as in
    the authors' code), so Δ points where the loss grows: the returned map is signed and is
    usually shown as ``|Δ|`` (:func:`pair_normalize`). With ``lambda1 = 0`` CAFO is the gradient
    scaled by ``1/(2λ₂)``; ``λ₁ > 0`` soft-thresholds it into a sparse map.

    After each call the chosen hyper-parameters are kept for inspection:

    - ``last_lambda1``: ``(B,)`` λ₁ used per sample (the search's choice with
      ``lambda1_search=True``),
    - ``last_lambda2``: ``(B,)`` λ₂ per sample,
    - ``last_sparsity``: ``(B,)`` fraction η of exactly-zero entries of Δ,
    - ``last_converged``: ``(B,)`` whether FISTA met ``tol`` (all True after a search).

    Parameters
    ----------
    forward_func : callable
        The model, returning logits ``(B, c)``.

    Examples
    --------
    >>> import torch
    >>> from captum_ext import CAFO
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> delta = CAFO(model).attribute(torch.randn(4, 8), lambda1=1e-3)
    >>> delta.shape
    torch.Size([4, 8])
    """

    default_lambda2 = 10.0
    _target_none_ok = True  # None explains the predicted class

    def __init__(self, forward_func: Callable[..., torch.Tensor]) -> None:
        super().__init__(forward_func)
        self.last_lambda1: torch.Tensor | None = None
        self.last_lambda2: torch.Tensor | None = None
        self.last_sparsity: torch.Tensor | None = None
        self.last_converged: torch.Tensor | None = None

    options_class: type[CAFOOptions] = CAFOOptions

    @log_usage()
    @isolated_call
    def attribute(
        self,
        inputs: TensorOrTuple,
        target: int | Sequence[int] | torch.Tensor | None = None,
        additional_forward_args: Any = None,
        options: CAFOOptions | None = None,
        **overrides: Any,
    ) -> TensorOrTuple:
        """Solve the objective for every sample of the batch.

        Parameters
        ----------
        inputs : tensor or tuple of tensors
            Batch ``(B, ...)``; not modified.
        target : int, list of ints or integer tensor, optional
            Class of the loss per sample; ``None`` = the predicted class.
        additional_forward_args : any, optional
            Extra model arguments (tensors with a batch dimension are expanded alongside).
        options : CAFOOptions (CASOOptions for CASO), optional
            All hyper-parameters in one object (:mod:`captum_ext.context_aware.options`).
        **overrides
            Fields of ``options`` given by name (``lambda1=1e-3``, ``n_iter=50``, ``seed=1``),
            replacing those of ``options`` or of the defaults.

        Returns
        -------
        tensor or tuple of tensors
            Δ (or −Δ with ``sign="target"``), shaped like ``inputs``.
        """
        resolved = resolve_options(self.options_class, options, overrides)
        return self._attribute(inputs, target, additional_forward_args, resolved)

    # -- shared machinery (CASO overrides _problem) -------------------------------------------

    def _problem(
        self,
        function: RowFunction,
        points: torch.Tensor,
        target: torch.Tensor,
        copies: int,
        options: CAFOOptions,
        candidates: int,
    ) -> _Problem:
        lam2 = self.default_lambda2 if options.lambda2 is None else options.lambda2
        gradient = loss_gradient(function, points, target, copies, options.loss)
        batch = gradient.shape[0]
        return _Problem(gradient, None, per_sample("lambda2", lam2, batch, gradient, False))

    def _attribute(
        self,
        inputs: TensorOrTuple,
        target: Any,
        additional_forward_args: Any,
        options: CAFOOptions,
    ) -> TensorOrTuple:
        is_tuple = _is_tuple(inputs)
        tensors = _format_tensor_into_tuples(inputs)
        function, rows, tgt = _prepare(self.forward_func, tensors, target, additional_forward_args)
        batch = rows.shape[0]
        search = options.lambda1_search
        lam1 = (
            None if search else per_sample("lambda1", options.lambda1, batch, rows, allow_zero=True)
        )
        points = _noisy(rows, options.n_samples, options.stdev, options)
        replicas = options.n_lambda1 if search else 1
        name = type(self).__name__
        solver = {
            "n_iter": options.n_iter,
            "step": options.step,
            "backtrack": options.backtrack,
            "tol": options.tol,
            "progress": show_progress(options.progress),
        }
        with frozen(self.forward_func):
            problem = self._problem(
                function,
                points,
                tgt.repeat_interleave(options.n_samples),
                options.n_samples,
                options,
                replicas,
            )
            if search:

                def solve(lams: torch.Tensor) -> FistaResult:
                    return fista(
                        problem.gradient.repeat_interleave(replicas, dim=0),
                        lams.flatten(),
                        problem.lambda2.repeat_interleave(replicas),
                        problem.curvature,
                        name=f"{name} λ₁ search",
                        **solver,
                    )

                found = search_lambda1(
                    solve,
                    batch,
                    n_values=options.n_lambda1,
                    sparsity_range=options.sparsity_range,
                    device=rows.device,
                    dtype=rows.dtype,
                )
                delta, lam1, sparsity = found.delta, found.lambda1, found.sparsity
                converged = torch.ones(batch, dtype=torch.bool, device=rows.device)
            else:
                result = fista(
                    problem.gradient,
                    lam1,
                    problem.lambda2,
                    problem.curvature,
                    name=name,
                    **solver,
                )
                delta, sparsity, converged = result.delta, result.sparsity, result.converged
        if options.sign == "target":
            delta = -delta
        out = function.split(delta.to(rows.dtype))
        check_result_finite(out, name)
        self.last_lambda1, self.last_lambda2 = lam1, problem.lambda2
        self.last_sparsity, self.last_converged = sparsity, converged
        return _format_output(is_tuple, out)


def per_sample(
    name: str, value: Any, batch: int, like: torch.Tensor, allow_zero: bool
) -> torch.Tensor:
    """A hyper-parameter per sample ``(B,)`` from a number or ``B`` values, all finite and
    ≥ 0 (``allow_zero``) or > 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        check_positive(name, float(value), allow_zero=allow_zero)
        return torch.full((batch,), float(value), dtype=like.dtype, device=like.device)
    values = torch.as_tensor(value, dtype=like.dtype).to(like.device).flatten()
    if values.numel() != batch:
        raise ValueError(
            f"{name} needs 1 or {batch} values (one per sample), got {values.numel()}."
        )
    bad = (values < 0) if allow_zero else (values <= 0)
    if not bool(torch.isfinite(values).all()) or bool(bad.any()):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {values.tolist()}.")
    return values


def _noisy(rows: torch.Tensor, n_samples: int, stdev: float, options: CAFOOptions) -> torch.Tensor:
    """``(B·n, d)`` noisy copies (sample-major) from a private generator; ``rows`` if n = 1."""
    if n_samples == 1:
        return rows
    generator = options.noise_generator()
    noise = torch.randn(
        rows.shape[0],
        n_samples,
        rows.shape[1],
        generator=generator,
        device=generator.device,
        dtype=rows.dtype,
    ).to(rows.device)
    return (rows[:, None] + stdev * noise).reshape(-1, rows.shape[1])


def pair_normalize(attribution: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """Grey-scale saliency in [0, 1] as in Singla et al.'s figures (PAIR / SmoothGrad, App. D).

    ``Σ_c |Δ|`` over the channel dimension of ``(B, C, H, W)`` maps, kept as a channel of size
    one: the result is ``(B, 1, H, W)``, the layout every method returns, so it goes straight
    into :mod:`captum_ext.visualization`. ``(B, H, W)`` or ``(B, d)`` maps are used as they are
    (shape kept). Then per sample ``vmin = min``, ``vmax`` = the ``percentile``-th percentile
    (linear interpolation) and ``clip((m − vmin)/(vmax − vmin), 0, 1)``.
    """
    maps = attribution.detach().abs()
    if maps.dim() == 4:
        maps = maps.sum(dim=1, keepdim=True)
    flat = maps.reshape(maps.shape[0], -1).to(torch.float64)
    vmin = flat.amin(dim=1, keepdim=True)
    vmax = torch.quantile(flat, percentile / 100.0, dim=1, keepdim=True)
    span = (vmax - vmin).clamp_min(torch.finfo(torch.float64).tiny)
    out = ((flat - vmin) / span).clamp(0.0, 1.0)
    return out.reshape(maps.shape).to(attribution.dtype)
