"""CAFO: context-aware first-order saliency (Singla et al., ICML 2019, seed 004, Definition 2).

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
from captum_ext.core.validation import (
    check_open_unit,
    check_positive,
    check_positive_int,
    check_result_finite,
)

__all__ = ["CAFO", "pair_normalize"]


@dataclass
class _Problem:
    """What the solver needs per sample: the (averaged) gradient, ``HΔ`` and λ₂."""

    gradient: torch.Tensor
    curvature: Curvature
    lambda2: torch.Tensor


class CAFO(GradientAttribution):
    """Context-Aware First-Order saliency (seed 004, Definition 2; Smooth CAFO, eq. 8).

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

    def __init__(self, forward_func: Callable[..., torch.Tensor]) -> None:
        super().__init__(forward_func)
        self.last_lambda1: torch.Tensor | None = None
        self.last_lambda2: torch.Tensor | None = None
        self.last_sparsity: torch.Tensor | None = None
        self.last_converged: torch.Tensor | None = None

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTuple,
        target: int | Sequence[int] | torch.Tensor | None = None,
        additional_forward_args: Any = None,
        lambda1: float | Sequence[float] | torch.Tensor = 0.0,
        lambda2: float | Sequence[float] | torch.Tensor | None = None,
        n_iter: int = 10,
        step: float = 0.1,
        backtrack: float = 0.5,
        tol: float = 1e-4,
        lambda1_search: bool = False,
        sparsity_range: tuple[float, float] = (0.75, 1.0),
        n_lambda1: int = 8,
        n_samples: int = 1,
        stdev: float = 0.15,
        generator: torch.Generator | int | None = None,
        loss: str = "cross_entropy",
        progress: bool = False,
        sign: str = "loss",
    ) -> TensorOrTuple:
        """Solve the CAFO objective for every sample of the batch.

        Parameters
        ----------
        inputs : tensor or tuple of tensors
            Batch ``(B, ...)``; not modified.
        target : int, list of ints or integer tensor, optional
            Class of the loss per sample; ``None`` = the predicted class.
        additional_forward_args : any, optional
            Extra model arguments (tensors with a batch dimension are expanded alongside).
        lambda1 : float or sequence/tensor of ``B`` floats
            L1 weight (≥ 0); ignored with ``lambda1_search``.
        lambda2 : float or sequence/tensor of ``B`` floats, optional
            L2 weight (> 0); default 10 (seed 004 §3.1).
        n_iter, step, backtrack : int, float, float
            FISTA iterations, initial step and the step's shrink factor on a failed
            sufficient-decrease test (seed 004: 10, 0.1, 0.5).
        tol : float
            A sample stops when its relative objective change is ≤ ``tol``; samples still moving
            after ``n_iter`` iterations raise a ``RuntimeWarning``.
        lambda1_search : bool
            Choose λ₁ per example (seed 004 §4.1): ``n_lambda1`` values from 1e-5 by ×10,
            solved together; the sparsity η must fall in ``sparsity_range`` (η = 1 never
            qualifies); the highest Taylor-model loss gain wins; otherwise refine (halving).
        n_samples, stdev : int, float
            Smooth variant (eq. 8): the objective averaged over ``n_samples`` copies
            ``x + N(0, stdev²)`` (absolute ``stdev``; paper n = 50, σ = 0.15), solved once.
        generator : torch.Generator or int, optional
            Source (or seed) of the noise; default seed 0. The global RNG is never used.
        loss : {"cross_entropy", "logit"}
            Cross-entropy against the target (paper) or the target logit itself.
        progress : bool
            tqdm bar over the FISTA iterations.
        sign : {"loss", "target"}
            ``"loss"`` (default, Singla et al.'s Definition 2): Δ, the perturbation that
            increases the loss, so the map points *against* the target class. ``"target"``:
            −Δ, evidence *for* the target, signed like Captum's gradient methods
            (see ``docs/cafo_sign.md``).

        Returns
        -------
        tensor or tuple of tensors
            Δ (or −Δ with ``sign="target"``), shaped like ``inputs``.
        """
        return self._attribute(
            inputs,
            target,
            additional_forward_args,
            lambda1=lambda1,
            lambda2=lambda2,
            n_iter=n_iter,
            step=step,
            backtrack=backtrack,
            tol=tol,
            lambda1_search=lambda1_search,
            sparsity_range=sparsity_range,
            n_lambda1=n_lambda1,
            n_samples=n_samples,
            stdev=stdev,
            generator=generator,
            loss=loss,
            progress=progress,
            sign=sign,
        )

    # -- shared machinery (CASO overrides _problem) -------------------------------------------

    def _problem(
        self,
        function: RowFunction,
        points: torch.Tensor,
        target: torch.Tensor,
        copies: int,
        lambda2: Any,
        loss: str,
        **options: Any,
    ) -> _Problem:
        lam2 = self.default_lambda2 if lambda2 is None else lambda2
        gradient = loss_gradient(function, points, target, copies, loss)
        batch = gradient.shape[0]
        return _Problem(gradient, None, per_sample("lambda2", lam2, batch, gradient, False))

    def _attribute(
        self,
        inputs: TensorOrTuple,
        target: Any,
        additional_forward_args: Any,
        *,
        lambda1: Any,
        lambda2: Any,
        n_iter: int,
        step: float,
        backtrack: float,
        tol: float,
        lambda1_search: bool,
        sparsity_range: tuple[float, float],
        n_lambda1: int,
        n_samples: int,
        stdev: float,
        generator: torch.Generator | int | None,
        loss: str,
        progress: bool,
        sign: str = "loss",
        **options: Any,
    ) -> TensorOrTuple:
        if sign not in ("loss", "target"):
            raise ValueError(
                f"sign must be 'loss' (Δ raises the loss, the paper's map) or 'target' (−Δ, "
                f"evidence for the target class), got {sign!r}."
            )
        _check_options(n_iter, step, backtrack, tol, sparsity_range, n_lambda1, n_samples, stdev)
        if loss not in ("cross_entropy", "logit"):
            raise ValueError(f"loss must be 'cross_entropy' or 'logit', got {loss!r}.")
        is_tuple = _is_tuple(inputs)
        tensors = _format_tensor_into_tuples(inputs)
        function, rows, tgt = _prepare(self.forward_func, tensors, target, additional_forward_args)
        batch = rows.shape[0]
        lam1 = (
            None if lambda1_search else per_sample("lambda1", lambda1, batch, rows, allow_zero=True)
        )
        points = _noisy(rows, n_samples, stdev, generator)
        replicas = n_lambda1 if lambda1_search else 1
        name = type(self).__name__
        solver = {"n_iter": n_iter, "step": step, "backtrack": backtrack, "tol": tol}
        with frozen(self.forward_func):
            problem = self._problem(
                function,
                points,
                tgt.repeat_interleave(n_samples),
                n_samples,
                lambda2,
                loss,
                n_iter=n_iter,
                candidates=replicas,
                **options,
            )
            if lambda1_search:

                def solve(lams: torch.Tensor) -> FistaResult:
                    return fista(
                        problem.gradient.repeat_interleave(replicas, dim=0),
                        lams.flatten(),
                        problem.lambda2.repeat_interleave(replicas),
                        problem.curvature,
                        progress=progress,
                        name=f"{name} λ₁ search",
                        **solver,
                    )

                found = search_lambda1(
                    solve,
                    batch,
                    n_values=n_lambda1,
                    sparsity_range=sparsity_range,
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
                    progress=progress,
                    name=name,
                    **solver,
                )
                delta, sparsity, converged = result.delta, result.sparsity, result.converged
        if sign == "target":
            delta = -delta
        out = function.split(delta.to(rows.dtype))
        check_result_finite(out, name)
        self.last_lambda1, self.last_lambda2 = lam1, problem.lambda2
        self.last_sparsity, self.last_converged = sparsity, converged
        return _format_output(is_tuple, out)


def _check_options(
    n_iter: int,
    step: float,
    backtrack: float,
    tol: float,
    sparsity_range: tuple[float, float],
    n_lambda1: int,
    n_samples: int,
    stdev: float,
) -> None:
    check_positive_int("n_iter", n_iter)
    check_positive("step", step)
    check_open_unit("backtrack", backtrack)
    check_positive("tol", tol, allow_zero=True)
    check_positive_int("n_lambda1", n_lambda1, minimum=2)
    check_positive_int("n_samples", n_samples)
    check_positive("stdev", stdev, allow_zero=True)
    low, high = sparsity_range
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(
            f"sparsity_range must satisfy 0 ≤ low < high ≤ 1, got {tuple(sparsity_range)}."
        )


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


def _noisy(
    rows: torch.Tensor, n_samples: int, stdev: float, generator: torch.Generator | int | None
) -> torch.Tensor:
    """``(B·n, d)`` noisy copies (sample-major) from a private generator; ``rows`` if n = 1."""
    if n_samples == 1:
        return rows
    if generator is None or isinstance(generator, int):
        generator = torch.Generator().manual_seed(0 if generator is None else generator)
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
    """Grey-scale saliency in [0, 1] as in seed 004's figures (PAIR / SmoothGrad, Appendix D).

    ``Σ_c |Δ|`` over the channel dimension (dim 1 of ``(B, C, H, W)``; ``(B, H, W)`` or
    ``(B, d)`` maps are used as they are), then per sample ``vmin = min``, ``vmax`` = the
    ``percentile``-th percentile (linear interpolation) and
    ``clip((m − vmin)/(vmax − vmin), 0, 1)``.
    """
    maps = attribution.detach().abs()
    if maps.dim() == 4:
        maps = maps.sum(dim=1)
    flat = maps.reshape(maps.shape[0], -1).to(torch.float64)
    vmin = flat.amin(dim=1, keepdim=True)
    vmax = torch.quantile(flat, percentile / 100.0, dim=1, keepdim=True)
    span = (vmax - vmin).clamp_min(torch.finfo(torch.float64).tiny)
    out = ((flat - vmin) / span).clamp(0.0, 1.0)
    return out.reshape(maps.shape).to(attribution.dtype)
