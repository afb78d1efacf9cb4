"""CASO: context-aware second-order saliency (Singla et al., ICML 2019, Definition 3).

CAFO's objective plus the curvature of the loss:

    max_Δ  gᵀΔ + ½ΔᵀHΔ − λ₁‖Δ‖₁ − λ₂‖Δ‖²,    g = ∇ₓℓ,  H = ∇²ₓℓ,

strongly concave for ``λ₂ > L/2`` (Theorem 3, L = top eigenvalue of H); by default
``λ₂ = L/2 + c₁`` with ``c₁ = 10``. ``H`` enters only through Hessian-vector products: the closed
form ``Jᵀ(diag p − ppᵀ)J`` for piecewise-linear networks (Proposition 1) or double backward.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from captum_ext.context_aware.cafo import CAFO, _Problem, per_sample
from captum_ext.context_aware.hessian import (
    AutogradHessian,
    KrylovCache,
    RowFunction,
    TensorOrTuple,
    build_factored,
    non_piecewise_linear_modules,
)
from captum_ext.context_aware.options import CASOOptions
from captum_ext.context_aware.second_order import double_differentiable
from captum_ext.core.modules import owning_module

__all__ = ["CASO"]


class CASO(CAFO):
    """Context-Aware Second-Order saliency (Singla et al., 2019, Definition 3; Smooth CASO, eq. 8).

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

    options_class = CASOOptions

    def _attribute(
        self,
        inputs: TensorOrTuple,
        target: Any,
        additional_forward_args: Any,
        options: CASOOptions,
    ) -> TensorOrTuple:
        # Hardsigmoid/Hardswish and fused attention kernels have no double backward: run the
        # (private) view with exact, twice-differentiable equivalents.
        model = owning_module(self.forward_func)
        context = double_differentiable(model) if model is not None else nullcontext()
        with context:
            return super()._attribute(inputs, target, additional_forward_args, options)


    def _problem(
        self,
        function: RowFunction,
        points: torch.Tensor,
        target: torch.Tensor,
        copies: int,
        options: CASOOptions,
        candidates: int,
    ) -> _Problem:
        mode = self._hessian_mode(options.hessian)
        if mode == "closed_form" and options.hessian == "auto":
            with torch.no_grad():
                n_classes = function(points[: function.batch]).shape[1]
            products = options.power_iterations + options.n_iter * candidates
            if n_classes > 2 * products:  # the Jacobian would cost more than the HVPs
                mode = "autograd"
        self.last_hessian = mode
        if mode == "closed_form":
            factored = build_factored(
                function,
                points,
                target,
                copies,
                options.loss,
                options.chunk_size,
                options.jacobian,
            )
            gradient, top = factored.gradient, factored.top_eigenvalue()
            batch = gradient.shape[0]

            def curvature(v: torch.Tensor) -> torch.Tensor:
                # λ₁ candidates are stacked sample-major: (B·k, d) -> (B, k, d) right-hand sides
                return factored.hvp(v.reshape(batch, -1, v.shape[-1])).reshape(v.shape)

        else:
            # one graph on the B (noisy) points; every λ₁ candidate of a sample shares its
            # cache, so FISTA steps inside the explored Krylov space cost no double backward
            operator = AutogradHessian(function, points, target, copies, options.loss)
            gradient = operator.gradient
            # remembered directions: enough for Lanczos plus every λ₁ = 0 iterate
            size = options.power_iterations + options.n_iter + 1
            curvature = KrylovCache(operator.hvp, gradient, size)
            top = curvature.top_eigenvalue(gradient, options.power_iterations)
        return _Problem(gradient, curvature, self._lambda2(options.lambda2, top, options.c1))

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
