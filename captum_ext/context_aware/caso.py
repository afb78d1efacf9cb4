"""CASO: context-aware second-order saliency (Singla et al., ICML 2019, seed 004, Definition 3).

CAFO's objective plus the curvature of the loss:

    max_Δ  gᵀΔ + ½ΔᵀHΔ − λ₁‖Δ‖₁ − λ₂‖Δ‖²,    g = ∇ₓℓ,  H = ∇²ₓℓ,

strongly concave for ``λ₂ > L/2`` (Theorem 3, L = top eigenvalue of H); by default
``λ₂ = L/2 + c₁`` with ``c₁ = 10``. ``H`` enters only through Hessian-vector products: the closed
form ``Jᵀ(diag p − ppᵀ)J`` for piecewise-linear networks (Proposition 1) or double backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from captum.log import log_usage

from captum_ext.context_aware.cafo import CAFO, _Problem, per_sample
from captum_ext.context_aware.hessian import (
    AutogradHessian,
    KrylovCache,
    RowFunction,
    TensorOrTuple,
    build_factored,
    non_piecewise_linear_modules,
)
from captum_ext.core.validation import check_positive, check_positive_int

__all__ = ["CASO"]


class CASO(CAFO):
    """Context-Aware Second-Order saliency (seed 004, Definition 3; Smooth CASO, eq. 8).

    Same contract and diagnostics (``last_lambda1``, ``last_lambda2``, ``last_sparsity``,
    ``last_converged``) as :class:`~captum_ext.CAFO`; ``last_lambda2`` holds ``L/2 + c₁`` and
    ``last_hessian`` the Hessian used (``"closed_form"`` or ``"autograd"``).
    Theorem 5: with many classes and a confident prediction, CASO ∥ CAFO (for ``λ₁ = 0``);
    they differ when the confidence is low.

    Examples
    --------
    >>> import torch
    >>> from captum_ext import CASO
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> delta = CASO(model).attribute(torch.randn(4, 8), n_iter=50)
    >>> delta.shape
    torch.Size([4, 8])
    """

    @log_usage()
    def attribute(  # type: ignore[override]
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
        hessian: Literal["auto", "closed_form", "autograd"] = "auto",
        c1: float = 10.0,
        power_iterations: int = 10,
        chunk_size: int | None = None,
        jacobian: Literal["expand", "vmap"] = "expand",
        sign: str = "loss",
    ) -> TensorOrTuple:
        """Solve the CASO objective for every sample of the batch.

        Parameters
        ----------
        inputs, target, additional_forward_args, lambda1, n_iter, step, backtrack, tol, \
lambda1_search, sparsity_range, n_lambda1, n_samples, stdev, generator, loss, progress, sign
            As in :meth:`CAFO.attribute` (``sign="target"`` returns −Δ, evidence for the target).
        lambda2 : float or sequence/tensor of ``B`` floats, optional
            L2 weight; default ``L/2 + c1`` per sample. Explicit values must exceed ``L/2``
            for every sample (else the objective is not concave: ``ValueError``).
        hessian : {"auto", "closed_form", "autograd"}
            ``"closed_form"``: factored ``Jᵀ(diag p − ppᵀ)J`` (piecewise-linear networks only;
            exact top eigenvalue; its Jacobian costs about one gradient per class);
            ``"autograd"``: double-backward HVPs and Lanczos (power iteration with Rayleigh–Ritz),
            cached on the explored Krylov space
            (:class:`~captum_ext.context_aware.hessian.KrylovCache`);
            ``"auto"``: the closed form when every layer is piecewise linear and it is the
            cheaper one, i.e. for at most ``2·(power_iterations + n_iter·k)`` classes, ``k`` =
            ``n_lambda1`` with the λ₁ search and 1 otherwise (40 classes by default); autograd
            otherwise (e.g. 1000-class ImageNet models).
        c1 : float
            Margin in ``λ₂ = L/2 + c1`` (seed 004: 10).
        power_iterations : int
            Most Lanczos steps (Hessian-vector products) for L with autograd HVPs (seed 004
            Table 1: 10 power-iteration steps; Lanczos is at least as accurate after as many).
        chunk_size : int, optional
            Classes per Jacobian chunk of the closed form (bounds graph memory).
        jacobian : {"expand", "vmap"}
            How the closed form gets its Jacobian rows (see ``captum_ext.context_aware.hessian``).

        Returns
        -------
        tensor or tuple of tensors
            Δ (or −Δ with ``sign="target"``), shaped like ``inputs``.
        """
        check_positive("c1", c1)
        check_positive_int("power_iterations", power_iterations)
        if hessian not in ("auto", "closed_form", "autograd"):
            raise ValueError(
                f"hessian must be 'auto', 'closed_form' or 'autograd', got {hessian!r}."
            )
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
            hessian=hessian,
            c1=c1,
            power_iterations=power_iterations,
            chunk_size=chunk_size,
            jacobian=jacobian,
        )

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
        mode = self._hessian_mode(options["hessian"])
        if mode == "closed_form" and options["hessian"] == "auto":
            with torch.no_grad():
                n_classes = function(points[: function.batch]).shape[1]
            products = options["power_iterations"] + options["n_iter"] * options["candidates"]
            if n_classes > 2 * products:  # the Jacobian would cost more than the HVPs
                mode = "autograd"
        self.last_hessian = mode
        if mode == "closed_form":
            factored = build_factored(
                function,
                points,
                target,
                copies,
                loss,
                options["chunk_size"],
                options["jacobian"],
            )
            gradient, top = factored.gradient, factored.top_eigenvalue()
            batch = gradient.shape[0]

            def curvature(v: torch.Tensor) -> torch.Tensor:
                # λ₁ candidates are stacked sample-major: (B·k, d) -> (B, k, d) right-hand sides
                return factored.hvp(v.reshape(batch, -1, v.shape[-1])).reshape(v.shape)

        else:
            # one graph on the B (noisy) points; every λ₁ candidate of a sample shares its
            # cache, so FISTA steps inside the explored Krylov space cost no double backward
            operator = AutogradHessian(function, points, target, copies, loss)
            gradient = operator.gradient
            # remembered directions: enough for Lanczos plus every λ₁ = 0 iterate
            size = options["power_iterations"] + options["n_iter"] + 1
            curvature = KrylovCache(operator.hvp, gradient, size)
            top = curvature.top_eigenvalue(gradient, options["power_iterations"])
        return _Problem(gradient, curvature, self._lambda2(lambda2, top, options["c1"]))

    def _hessian_mode(self, hessian: str) -> str:
        if hessian == "autograd":
            return hessian
        bad = (
            non_piecewise_linear_modules(self.forward_func)
            if isinstance(self.forward_func, torch.nn.Module)
            else ["forward_func (not an nn.Module)"]
        )
        if hessian == "closed_form" and bad:
            raise ValueError(
                "hessian='closed_form' needs a piecewise-linear network; not piecewise linear: "
                f"{', '.join(bad[:5])}. Use hessian='autograd' (or 'auto'), or put BatchNorm/"
                "Dropout in eval mode."
            )
        return "autograd" if bad else "closed_form"

    @staticmethod
    def _lambda2(lambda2: Any, top: torch.Tensor, c1: float) -> torch.Tensor:
        half = top / 2
        if lambda2 is None:
            return half + c1
        lam2 = per_sample("lambda2", lambda2, top.shape[0], top, allow_zero=False)
        low = lam2 <= half
        if bool(low.any()):
            worst = int(torch.where(low, half - lam2, -torch.inf).argmax())
            raise ValueError(
                f"lambda2={float(lam2[worst]):g} makes the CASO objective non-concave for sample "
                f"{worst}: it must exceed L/2, half the Hessian's top eigenvalue, which is "
                f"{float(half[worst]):.6g} there. Use lambda2 > {float(half.max()):.6g} (or "
                "per-sample values above L/2) or lambda2=None (L/2 + c1)."
            )
        return lam2
