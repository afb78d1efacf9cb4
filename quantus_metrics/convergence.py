"""Convergence constants of averaged attributions (Binder et al., 2025) as a Quantus metric.

Averaged explanations (SmoothGrad, AdaptGrad, NoiseGrad, test-time augmentation) are empirical
means of ``N`` attribution maps of perturbed inputs. Binder, Takmil-Homayouni and Dogan, "Value
bounds and convergence analysis for averages of LRP attributions" (2025; the abstract is public)
state that component-wise bounds on the attribution give the multiplicative constants that
govern how fast such means converge, and that these constants are independent of the weight norms
for LRP-β but not for the gradient or LRP-ε.

What follows the abstract, and what is this project's derivation
(``docs/convergence_bounds.md``):

* **Abstract**: the component-wise bound B is what enters the convergence constant; LRP-αβ's
  bound is weight-norm free, the gradient's and LRP-ε's are not.
* **Project**: the concrete bounds (ReLU chains; ``f_c(x')`` is the explained output of a draw)

  - LRP-αβ (α − β = 1, bias split by sign as in zennit): each layer's relevance ℓ1 norm grows
    at most by (α + β) = 1 + 2β, so ``|R_i| ≤ (1 + 2β)^L · |f_c(x')|`` (L linear/conv layers);
  - gradient: ``|∂f_c/∂x_i| ≤ ‖W_L[c]‖₂ · Π_{l<L} ‖W_l‖₂`` with spectral norms of the layers as
    linear operators on their actual input shapes (power iteration, so conv layers are exact
    operators, not reshaped kernels); ReLU, non-overlapping pooling, flatten, dropout (eval)
    have norm ≤ 1 and BatchNorm (eval) contributes ``max|γ/√(var + ε)|``; bias does not matter;
  - LRP-ε: ``|R_i| = |x_i Σ_j w_ij R_j / stab(z_j)| ≤ (|x_i| Σ_j |w_ij| / ε) ‖R_out‖_∞`` since
    ``|stab(z_j)| ≥ ε``, hence ``|R_i| ≤ Π_l K_l · |f_c(x')|`` with ``K_l = max_i |x_i| Σ_j
    |w_ij| / ε`` over the layer inputs of all draws;
  - Hoeffding: components in [−B, B] ⇒ ``P(|mean_N − E| ≥ t) ≤ 2 exp(−N t² / (2B²))``, so
    ``N = 2B² ln(2/δ) / t²`` draws reach accuracy t with probability 1 − δ;
  - the measured curve: RMS error (over components) of the N-draw mean against a reference mean
    of ``n_reference`` further draws, on a log grid of N (one set of draws, cumulative means), and
    the fitted ``C`` of ``error² ≈ C² (1/N + 1/N_ref)`` (the reference's own variance included).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection
from torch import nn
from tqdm.auto import tqdm

from captum_ext.core.krylov import KrylovCache
from captum_ext.core.modules import BATCHNORM_TYPES, LINEAR_TYPES, model_device_dtype, unwrap_model
from captum_ext.core.randomness import make_generator, sample_generators, sample_seed
from captum_ext.core.validation import check_open_unit, check_positive, check_positive_int
from captum_ext.noise.statistics import Bounds, noise_std
from quantus_metrics._base import QuantusDefaults, ResultPlot

__all__ = [
    "ConvergenceOptions",
    "ConvergenceConstants",
    "ConvergenceResult",
    "Perturbation",
    "adaptgrad_perturbation",
    "chain_layers",
    "fit_convergence_constant",
    "gaussian_perturbation",
    "hoeffding_draws",
    "operator_norm",
    "theoretical_bound",
]

Perturbation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""``perturb(x, generator) -> x'``: a batch of perturbed copies drawn from ``generator``."""

ExplainFunc = Callable[..., np.ndarray]

_THEORIES = ("gradient", "lrp_alphabeta", "lrp_epsilon")
_SCORES = ("relative_bound", "bound", "hoeffding_n", "constant", "relative_constant")
_PASS_THROUGH = (nn.ReLU, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_NORMS = BATCHNORM_TYPES


# --------------------------------------------------------------------------------------------
# perturbations
# --------------------------------------------------------------------------------------------


def gaussian_perturbation(sigma: float) -> Perturbation:
    """``x + σ·ε``, ε ~ N(0, I) from the given generator (SmoothGrad's noise, absolute σ)."""
    check_positive("sigma", sigma)

    def perturb(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device)
        return x + sigma * eps.to(x.device)

    return perturb


def adaptgrad_perturbation(
    bounds: Bounds, confidence: float = 0.95, kappa: str = "two_sided"
) -> Perturbation:
    """AdaptGrad's per-feature noise σ_i (:func:`captum_ext.noise.adaptgrad.noise_std`)."""
    check_open_unit("confidence", confidence)

    def perturb(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sigma = noise_std(x, bounds, confidence, kappa)  # type: ignore[arg-type]
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device)
        return x + sigma * eps.to(x.device)

    return perturb


# --------------------------------------------------------------------------------------------
# theory: the model as a chain of layers, operator norms, bounds
# --------------------------------------------------------------------------------------------


@dataclass
class ChainLayer:
    """One leaf module of a feed-forward chain and the shape of its input (batch of one)."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]


def _unsupported(name: str, module: nn.Module, why: str) -> ValueError:
    return ValueError(
        f"theoretical bound: layer {name!r} ({type(module).__name__}) {why}. Supported chains "
        "hold Linear/Conv, ReLU, Flatten, Dropout, Identity, BatchNorm (gradient only) and "
        "pooling with stride ≥ kernel size; pass theoretical=None to skip the analytic bound."
    )


def chain_layers(model: nn.Module, x: torch.Tensor) -> list[ChainLayer]:
    """Trace ``model`` on ``x`` and return its leaf modules if they form a plain chain.

    The bounds of this module multiply per-layer factors, which is only valid when every leaf
    module consumes the previous one's output (no skip connections, no functional operations
    between modules, each module used once). Anything else raises ``ValueError``.
    """
    records: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        records.append((names[module], module, args[0], out))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            output = model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not records:
        raise ValueError("theoretical bound: the model has no leaf modules to analyse.")
    previous = x[:1]
    layers = []
    for name, module, inp, out in records:
        # Views (flatten/reshape inside forward) share storage; anything else breaks the chain.
        if inp.data_ptr() != previous.data_ptr() or inp.numel() != previous.numel():
            raise _unsupported(name, module, "does not take the previous layer's output")
        layers.append(ChainLayer(name, module, tuple(inp.shape)))
        previous = out
    if output.data_ptr() != previous.data_ptr():
        raise ValueError("theoretical bound: the model's output is not its last layer's output.")
    if len({id(layer.module) for layer in layers}) != len(layers):
        raise ValueError(
            "theoretical bound: a module is used twice; the chain bound needs each once."
        )
    return layers


_NORM_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[Any, float]] = weakref.WeakKeyDictionary()


def _operator(module: nn.Module, weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer's linear map without bias, with ``weight`` in place of the module's own."""
    if isinstance(module, nn.Linear):
        return lambda v: F.linear(v, weight)
    if module.padding_mode != "zeros":  # type: ignore[union-attr]
        raise ValueError(f"operator_norm: padding_mode {module.padding_mode!r} is not supported.")
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[weight.dim() - 2]
    m: Any = module
    return lambda v: conv(v, weight, None, m.stride, m.padding, m.dilation, m.groups)


def operator_norm(
    module: nn.Module,
    input_shape: Sequence[int],
    iterations: int = 64,
    tol: float = 1e-12,
    generator: torch.Generator | None = None,
) -> float:
    """Spectral norm of a Linear/Conv layer (bias dropped) as an operator on ``input_shape``.

    Power iteration on ``AᵀA`` accelerated as a Krylov (Lanczos) iteration: the power iterates
    ``v, AᵀAv, (AᵀA)²v, …`` are orthonormalised and the largest Ritz value of their span is
    taken, which converges far faster than the last iterate alone when the top singular values
    are close (plain power iteration was off by 1e-3 after 1000 steps on a small conv). The
    adjoint comes from autograd, so conv layers are exact operators on their real input shape.
    Float64 throughout (float32 loses orthogonality: 1e-4 errors on a 64→128 conv). Private
    generator (seeded 0 unless given); the global RNG is not used. Results are cached per
    layer, weight version and input shape.
    """
    key = (id(module), module.weight._version, module.weight.data_ptr(), tuple(input_shape))
    cached = _NORM_CACHE.get(module)
    if cached is not None and cached[0] == (key, iterations, tol):
        return cached[1]
    rng = make_generator(generator)
    weight = module.weight.detach().double()
    probe = _operator(module, weight)

    def gram(v: torch.Tensor) -> torch.Tensor:  # AᵀA v
        v = v.view(tuple(input_shape)).requires_grad_(True)
        u = probe(v)
        return torch.autograd.grad(u, v, grad_outputs=u)[0].flatten()

    size = math.prod(input_shape)
    start = torch.randn(1, size, generator=rng, dtype=torch.float64).to(weight.device)
    steps = max(1, min(iterations, size))
    krylov = KrylovCache(lambda v: gram(v[0])[None], start, max_size=steps + 1)
    estimate = float(krylov.top_eigenvalue(start, steps, rtol=tol)[0])
    sigma = math.sqrt(max(estimate, 0.0))
    _NORM_CACHE[module] = ((key, iterations, tol), sigma)
    return sigma


def _check_pool(name: str, module: nn.Module) -> None:
    kernel, stride = module.kernel_size, module.stride  # type: ignore[union-attr]
    kernel = kernel if isinstance(kernel, tuple) else (kernel,)
    stride = stride if isinstance(stride, tuple) else (stride,) * len(kernel)
    if any(s < k for s, k in zip(stride, kernel)):
        raise _unsupported(name, module, "has overlapping windows (stride < kernel size)")


def _gradient_factors(
    layers: list[ChainLayer], generator: torch.Generator, iterations: int = 64
) -> list[float]:
    factors = []
    for layer in layers:
        module = layer.module
        if isinstance(module, LINEAR_TYPES):
            # dense layers are cheap to iterate (two mat-vecs a step): never skimp on them
            steps = max(iterations, 64) if isinstance(module, nn.Linear) else iterations
            norm = operator_norm(module, layer.input_shape, steps, generator=generator)
            factors.append(norm)
        elif isinstance(module, _NORMS):
            if module.running_var is None or module.training:
                raise _unsupported(layer.name, module, "needs eval mode with running statistics")
            scale = torch.rsqrt(module.running_var.double() + module.eps)
            if module.weight is not None:
                scale = scale * module.weight.detach().double()
            factors.append(float(scale.abs().max()))
        elif isinstance(module, _POOLS):
            _check_pool(layer.name, module)
        elif not isinstance(module, _PASS_THROUGH):
            raise _unsupported(layer.name, module, "has no known gradient norm")
    return factors


def _lrp_layers(layers: list[ChainLayer]) -> list[ChainLayer]:
    weighted = []
    for layer in layers:
        if isinstance(layer.module, LINEAR_TYPES):
            weighted.append(layer)
        elif isinstance(layer.module, _POOLS):
            _check_pool(layer.name, layer.module)
            if isinstance(layer.module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
                weighted.append(layer)  # a positive-weight layer; its factor is ≤ 1 + 2β
        elif not isinstance(layer.module, _PASS_THROUGH):
            raise _unsupported(layer.name, layer.module, "has no LRP relevance bound (fold it?)")
    return weighted


def _epsilon_column_sums(module: nn.Module) -> torch.Tensor:
    """Σ_j |w_ij| per input channel/feature i (an upper bound for conv: all kernel taps)."""
    if isinstance(module, nn.Linear):
        return module.weight.detach().abs().sum(0)
    if isinstance(module, LINEAR_TYPES):
        sums = module.weight.detach().abs().sum(dim=[0, *range(2, module.weight.dim())])
        # grouped convs: channel c only meets its group's filters; the largest sum bounds all
        return sums.max().reshape(1) if module.groups > 1 else sums
    # average pooling without overlap: every input sits in one window with weight 1/k ≤ 1
    return torch.ones(1)


def theoretical_bound(
    model: nn.Module,
    x: torch.Tensor,
    kind: str,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[float, int]:
    """The weight-dependent part of a bound and the number of layers it multiplies over.

    ``"gradient"``: ``Π_l ‖W_l‖₂`` (all layers, last one whole; see the module docstring for the
    row-wise refinement used per target); ``"lrp_alphabeta"``: ``(1 + 2β)^L``. ``"lrp_epsilon"``
    depends on the draws and is only available through :class:`ConvergenceConstants`.
    """
    layers = chain_layers(model, x)
    rng = make_generator(generator)
    if kind == "gradient":
        factors = _gradient_factors(layers, rng)
        return math.prod(factors), len(factors)
    if kind == "lrp_alphabeta":
        check_positive("beta", beta, allow_zero=True)
        n = len(_lrp_layers(layers))
        return (1.0 + 2.0 * beta) ** n, n
    raise ValueError(f"theoretical_bound supports 'gradient' and 'lrp_alphabeta', got {kind!r}.")


# --------------------------------------------------------------------------------------------
# Hoeffding and the convergence curve
# --------------------------------------------------------------------------------------------


def hoeffding_draws(bound: torch.Tensor | float, t: float, delta: float) -> torch.Tensor:
    """``N = 2 B² ln(2/δ) / t²``: draws for accuracy ``t`` with probability ``1 − δ`` (Hoeffding).

    Raises ``ValueError`` for ``t ≤ 0`` or ``δ ∉ (0, 1)``.
    """
    check_positive("t", t)
    check_open_unit("delta", delta)
    b = torch.as_tensor(bound, dtype=torch.float64)
    return 2.0 * b.square() * math.log(2.0 / delta) / t**2


def _check_grid(grid: Sequence[int]) -> tuple[int, ...]:
    values = tuple(grid)
    if not values or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in values):
        raise ValueError(f"n_grid must be a non-empty sequence of positive integers, got {grid!r}.")
    if any(b <= a for a, b in zip(values[:-1], values[1:])):
        raise ValueError(f"n_grid must be strictly increasing, got {values}.")
    return values


def fit_convergence_constant(
    grid: Sequence[int], errors: torch.Tensor, n_reference: int
) -> torch.Tensor:
    """Least-squares ``C`` of ``error_N² ≈ C² (1/N + 1/N_ref)`` per sample.

    ``errors`` has shape ``(len(grid), B)``; the ``1/N_ref`` term accounts for the reference
    mean's own sampling error (independent draws), so ``C`` estimates the RMS standard deviation
    of one attribution component and ``C·√(1/N + 1/N_ref)`` predicts the error at any ``N``.
    """
    n = torch.as_tensor(_check_grid(grid), dtype=torch.float64, device=errors.device)
    check_positive_int("n_reference", n_reference)
    design = (1.0 / n + 1.0 / n_reference)[:, None]
    return ((design * errors.double().square()).sum(0) / design.square().sum(0)).sqrt()


# --------------------------------------------------------------------------------------------
# the computation
# --------------------------------------------------------------------------------------------


@dataclass
class ConvergenceResult:
    """Convergence constants of one batch (per-sample tensors have the batch as last axis).

    Attributes
    ----------
    output : torch.Tensor
        ``(B,)`` explained output ``f_c(x)`` of the unperturbed inputs.
    bound : torch.Tensor
        ``(B,)`` empirical component-wise bound ``B = max |a_i|`` over all draws.
    relative_bound : torch.Tensor
        ``(B,)`` ``B / |f_c(x)|``.
    hoeffding_n : torch.Tensor
        ``(B,)`` ``2 B² ln(2/δ) / t²`` (with ``B/|f_c(x)|`` when ``relative_t``).
    grid : tuple of int
        The N of the convergence curve.
    errors : torch.Tensor
        ``(len(grid), B)`` RMS error of the N-draw mean against the reference mean.
    constant : torch.Tensor
        ``(B,)`` fitted C (see :func:`fit_convergence_constant`).
    relative_constant : torch.Tensor
        ``(B,)`` ``C / |f_c(x)|``.
    theoretical : torch.Tensor or None
        ``(B,)`` analytic bound on ``max |a_i|`` over the same draws (None if not requested).
    theoretical_relative : torch.Tensor or None
        ``(B,)`` the analytic bound divided by ``|f_c(x)|``.
    theoretical_hoeffding_n : torch.Tensor or None
        ``(B,)`` Hoeffding's N with the analytic bound in place of B.
    kind : str or None
        Which analytic bound (``"gradient"``, ``"lrp_alphabeta"``, ``"lrp_epsilon"``).
    """

    output: torch.Tensor
    bound: torch.Tensor
    relative_bound: torch.Tensor
    hoeffding_n: torch.Tensor
    grid: tuple[int, ...]
    errors: torch.Tensor
    constant: torch.Tensor
    relative_constant: torch.Tensor
    theoretical: torch.Tensor | None = None
    theoretical_relative: torch.Tensor | None = None
    theoretical_hoeffding_n: torch.Tensor | None = None
    kind: str | None = None

    def sample(self, index: int) -> dict[str, Any]:
        """Plain-Python summary of one sample (what ``evaluate_batch`` keeps per sample)."""
        out: dict[str, Any] = {
            key: float(getattr(self, key)[index])
            for key in ("output", "bound", "relative_bound", "hoeffding_n", "constant")
        }
        out["relative_constant"] = float(self.relative_constant[index])
        out["errors"] = [float(e) for e in self.errors[:, index]]
        out["grid"] = list(self.grid)
        if self.theoretical is not None:
            out["kind"] = self.kind
            out["theoretical"] = float(self.theoretical[index])
            out["theoretical_relative"] = float(self.theoretical_relative[index])  # type: ignore[index]
            out["theoretical_hoeffding_n"] = float(self.theoretical_hoeffding_n[index])  # type: ignore[index]
        return out


class _LayerInputMax:
    """Forward hooks recording ``max |x_i|`` per input channel of every LRP-ε layer."""

    def __init__(self, layers: list[ChainLayer]) -> None:
        self.layers = layers
        self.maxima: dict[str, torch.Tensor] = {}

    def __enter__(self) -> _LayerInputMax:
        self.handles = []
        for layer in self.layers:
            self.handles.append(layer.module.register_forward_hook(self._hook(layer.name)))
        return self

    def _hook(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0].detach().abs()
            # per input feature for Linear, per channel for conv/pooling (matches the sums)
            per = x.flatten(0, -2).amax(0) if isinstance(module, nn.Linear) else None
            if per is None:
                per = x.transpose(0, 1).flatten(1).amax(1) if x.dim() > 2 else x.amax()
                if not isinstance(module, LINEAR_TYPES):
                    per = per.amax()
            old = self.maxima.get(name)
            self.maxima[name] = per if old is None else torch.maximum(old, per)

        return record

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()

    def factor(self, epsilon: float) -> float:
        product = 1.0
        for layer in self.layers:
            sums = _epsilon_column_sums(layer.module).to(self.maxima[layer.name].device)
            product *= float((self.maxima[layer.name] * sums).max()) / epsilon
        return product


def _explain(
    explain_func: ExplainFunc,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    a = explain_func(
        model=model, inputs=x.detach().cpu().numpy(), targets=y.cpu().numpy(), **kwargs
    )
    a = torch.as_tensor(np.asarray(a), device=x.device)
    if a.shape[0] != x.shape[0]:
        raise ValueError(
            f"explain_func returned {a.shape[0]} attributions for {x.shape[0]} inputs; it must "
            "return one attribution per input row."
        )
    return a.flatten(1).to(torch.float64)


def _explained_output(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out.gather(1, y.view(-1, 1)).squeeze(1).double()


@dataclass(frozen=True)
class ConvergenceOptions:
    """Settings of one convergence measurement (:func:`convergence_constants`).

    Parameters
    ----------
    n_grid : sequence of int
        Strictly increasing N of the convergence curve; ``max(n_grid)`` draws feed it.
    n_reference : int
        Further, independent draws whose mean is the reference ("the expectation").
    t, delta : float
        Hoeffding accuracy (> 0) and failure probability (in (0, 1)).
    relative_t : bool
        ``t`` is relative to ``|f_c(x)|`` (default) or absolute.
    theoretical : {"gradient", "lrp_alphabeta", "lrp_epsilon"}, optional
        Which analytic bound to report next to the empirical one.
    beta, epsilon : float
        Parameters of the LRP-αβ and LRP-ε bounds (match the explainer's).
    draws_per_call : int
        How many draws are stacked into one ``explain_func`` call.
    norm_iterations : int
        Krylov steps per layer norm of the gradient bound (see :func:`operator_norm`).
    """

    n_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    n_reference: int = 64
    t: float = 0.05
    delta: float = 0.05
    relative_t: bool = True
    theoretical: str | None = None
    beta: float = 1.0
    epsilon: float = 1e-6
    draws_per_call: int = 8
    norm_iterations: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_grid", _check_grid(self.n_grid))
        check_positive_int("n_reference", self.n_reference)
        check_positive("t", self.t)
        check_open_unit("delta", self.delta)
        check_positive_int("draws_per_call", self.draws_per_call)
        check_positive("epsilon", self.epsilon)
        check_positive_int("norm_iterations", self.norm_iterations)
        if self.theoretical is not None and self.theoretical not in _THEORIES:
            raise ValueError(
                f"theoretical must be None or one of {_THEORIES}, got {self.theoretical!r}."
            )

    @classmethod
    def of(cls, options: ConvergenceOptions | None = None, **overrides: Any) -> ConvergenceOptions:
        """``options`` (or the defaults) with fields replaced by ``overrides``."""
        base = cls() if options is None else options
        return dataclasses.replace(base, **overrides) if overrides else base


def convergence_constants(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    explain_func: ExplainFunc,
    perturbation: Perturbation,
    explain_func_kwargs: dict[str, Any] | None = None,
    options: ConvergenceOptions | None = None,
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    sample_seeds: tuple[int, Sequence[int]] | None = None,
    **overrides: Any,
) -> ConvergenceResult:
    """Convergence constants of ``explain_func`` under ``perturbation`` (see the module docs).

    Parameters
    ----------
    model : nn.Module
        The explained model (never modified; only forward hooks are added and removed for the
        LRP-ε bound).
    x, y : torch.Tensor
        Inputs ``(B, ...)`` and integer targets ``(B,)``.
    explain_func : callable
        Quantus signature ``explain_func(model=, inputs=np.ndarray, targets=np.ndarray,
        **kwargs) -> np.ndarray``; called on ``draws_per_call`` stacked draws at a time.
    perturbation : callable
        ``perturb(x, generator) -> x'`` (see :func:`gaussian_perturbation`,
        :func:`adaptgrad_perturbation`); it receives a stacked batch of copies.
    options : ConvergenceOptions, optional
        The measurement's settings; its fields can also be given by name (``n_grid=(1, 4)``).
    generator : torch.Generator, optional
        Private random stream for the draws (default: seeded 0); the global RNG is untouched.
    progress : bool
        Show a tqdm bar over the explain calls.
    sample_seeds : (int, sequence of int), optional
        ``(seed, indices)``: perturb each sample with its own generator keyed to the seed and
        its index in the data set (:mod:`captum_ext.core.randomness`), so its scores do not
        depend on the batch it is in; the theoretical bounds then use a generator seeded with
        ``seed``. ``generator`` is not used.
    """
    opts = ConvergenceOptions.of(options, **overrides)
    grid, n_reference, theoretical = opts.n_grid, opts.n_reference, opts.theoretical
    t, delta, relative_t, draws_per_call = opts.t, opts.delta, opts.relative_t, opts.draws_per_call
    beta, epsilon, norm_iterations = opts.beta, opts.epsilon, opts.norm_iterations
    if not torch.isfinite(x).all():
        raise ValueError("inputs contain NaN or Inf; clean them before measuring convergence.")
    rng = make_generator(generator)
    keyed = None
    if sample_seeds is not None:
        seed, indices = sample_seeds
        if len(indices) != len(x):
            raise ValueError(f"sample_seeds has {len(indices)} indices for {len(x)} inputs.")
        keyed = sample_generators(seed, indices)
        rng = torch.Generator().manual_seed(sample_seed(seed, -1))
    kwargs = dict(explain_func_kwargs or {})
    output = _explained_output(model, x, y)

    layers = chain_layers(model, x) if theoretical is not None else []
    need_outputs = theoretical in ("lrp_alphabeta", "lrp_epsilon")
    recorder = _LayerInputMax(_lrp_layers(layers) if theoretical == "lrp_epsilon" else [])

    n_curve, n_total = grid[-1], grid[-1] + n_reference
    running = torch.zeros(len(x), 1, dtype=torch.float64, device=x.device)
    curve_means: list[torch.Tensor] = []
    reference = None
    bound = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    top = torch.zeros_like(bound)
    done = 0
    with tqdm(total=n_total, disable=not progress, desc="convergence draws") as bar:
        while done < n_total:
            # never mix curve and reference draws in one chunk, so the bookkeeping stays simple
            limit = n_curve if done < n_curve else n_total
            k = min(draws_per_call, limit - done)
            if keyed is None:
                noisy = perturbation(x.repeat(k, *([1] * (x.dim() - 1))), rng)
            else:  # the same draw-major layout, each sample's k copies from its own stream
                copies = [
                    perturbation(x[i : i + 1].repeat(k, *([1] * (x.dim() - 1))), g)
                    for i, g in enumerate(keyed)
                ]
                noisy = torch.stack(copies, 1).reshape(k * len(x), *x.shape[1:])
            targets = y.repeat(k)
            a = _explain(explain_func, model, noisy, targets, kwargs).view(k, len(x), -1)
            chunk_max = a.abs().amax((0, 2))  # NaN/Inf anywhere show up here: one pass, not two
            if not torch.isfinite(chunk_max).all():
                raise FloatingPointError(
                    "explain_func returned non-finite attributions on perturbed inputs; check "
                    "the explainer's stabiliser or the perturbation's scale."
                )
            bound = torch.maximum(bound, chunk_max)
            if need_outputs:
                with recorder:
                    draw_out = _explained_output(model, noisy, targets).view(k, len(x))
                top = torch.maximum(top, draw_out.abs().amax(0))
            if done < n_curve:
                cumulative = running + a.cumsum(0)
                for n in grid:
                    if done < n <= done + k:
                        curve_means.append(cumulative[n - done - 1] / n)
                running = cumulative[-1]
            else:
                chunk_sum = a.sum(0)
                reference = chunk_sum if reference is None else reference + chunk_sum
            done += k
            bar.update(k)

    assert reference is not None
    reference = reference / n_reference
    errors = torch.stack([(m - reference).square().mean(1).sqrt() for m in curve_means])
    constant = fit_convergence_constant(grid, errors, n_reference)
    scale = output.abs()
    if (scale == 0).any():
        warnings.warn(
            "some explained outputs f_c(x) are exactly 0; their relative values are inf.",
            RuntimeWarning,
            stacklevel=2,
        )
    relative_bound = bound / scale
    hoeffding = hoeffding_draws(relative_bound if relative_t else bound, t, delta)
    result = ConvergenceResult(
        output=output,
        bound=bound,
        relative_bound=relative_bound,
        hoeffding_n=hoeffding,
        grid=grid,
        errors=errors,
        constant=constant,
        relative_constant=constant / scale,
    )
    if theoretical is not None:
        absolute = _theory_values(
            theoretical, layers, y, top, (beta, epsilon, norm_iterations), recorder, rng
        )
        result.kind = theoretical
        result.theoretical = absolute
        result.theoretical_relative = absolute / scale
        result.theoretical_hoeffding_n = hoeffding_draws(
            result.theoretical_relative if relative_t else absolute, t, delta
        )
    return result


def _theory_values(
    kind: str,
    layers: list[ChainLayer],
    y: torch.Tensor,
    top: torch.Tensor,
    params: tuple[float, float, int],
    recorder: _LayerInputMax,
    rng: torch.Generator,
) -> torch.Tensor:
    beta, epsilon, iterations = params
    if kind == "lrp_alphabeta":
        check_positive("beta", beta, allow_zero=True)
        return (1.0 + 2.0 * beta) ** len(_lrp_layers(layers)) * top
    if kind == "lrp_epsilon":
        return recorder.factor(epsilon) * top
    factors = _gradient_factors(layers, rng, iterations)
    last = layers[-1].module
    if isinstance(last, nn.Linear):
        # ∂f_c/∂x = W_L[c] D … : the target row's norm replaces the last layer's spectral norm
        rows = last.weight.detach().double().norm(dim=1)[y.to(last.weight.device)]
        return math.prod(factors[:-1]) * rows.to(y.device)
    return torch.full(y.shape, math.prod(factors), dtype=torch.float64, device=y.device)


class ConvergenceConstants(ResultPlot, QuantusDefaults):
    """Quantus metric: convergence constants of an averaged explanation (Binder et al., 2025).

    For an explain function and a perturbation (Gaussian noise of absolute σ, AdaptGrad noise,
    or any callable ``(x, generator) -> x'``), each sample gets the empirical component-wise
    bound ``B = max |a_i|`` over the draws, ``B / |f_c(x)|``, Hoeffding's
    ``N = 2B² ln(2/δ)/t²``, the measured convergence curve with its fitted ``C`` of
    ``error ≈ C/√N``, and, on request, the analytic bound of ``docs/convergence_bounds.md`` next to
    B. Which parts come from the paper's abstract and which are this project's derivation is set
    out in the module docstring.

    Parameters
    ----------
    perturbation : {"gaussian", "adaptgrad"} or callable
        The noise of the averaged explainer.
    sigma : float
        Absolute σ of ``"gaussian"``.
    bounds : (x_min, x_max)
        Data range for ``"adaptgrad"``.
    confidence : float
        AdaptGrad's c.
    options : ConvergenceOptions, optional
        The measurement's settings (:class:`ConvergenceOptions`); its fields can also be given
        by name (``n_grid=(1, 4)``, ``theoretical="gradient"``).
    score : str
        The per-sample score returned to Quantus: ``"relative_bound"`` (default), ``"bound"``,
        ``"hoeffding_n"``, ``"constant"`` or ``"relative_constant"``. Everything else of a call
        is kept in :attr:`results`.
    seed : int, optional
        Seed of the private generator (or pass ``generator``).
    generator : torch.Generator, optional
        Private random stream; the global RNG is never used.
    **kwargs
        The ``quantus.Metric`` base arguments (``abs``, ``normalise``, ``normalise_func``,
        ``normalise_func_kwargs``, ``return_aggregate``, ``aggregate_func``,
        ``default_plot_func``, ``disable_warnings``, ``display_progressbar``).

    Attributes
    ----------
    results : list of ConvergenceResult
        One entry per evaluated batch of the last call.

    Examples
    --------
    >>> from captum.attr import Saliency
    >>> from quantus_metrics.explain import explain_func_from
    >>> metric = ConvergenceConstants(sigma=0.1, theoretical="gradient", disable_warnings=True)
    >>> scores = metric(model=model, x_batch=x, y_batch=y,  # doctest: +SKIP
    ...                 explain_func=explain_func_from(Saliency, abs=False))
    >>> metric.results[0].theoretical  # doctest: +SKIP
    """

    name = "Convergence Constants"
    data_applicability = {DataType.IMAGE, DataType.TIMESERIES, DataType.TABULAR}
    model_applicability = {ModelType.TORCH}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.ROBUSTNESS

    def __init__(
        self,
        perturbation: str | Perturbation = "gaussian",
        sigma: float = 0.1,
        bounds: Bounds = (0.0, 1.0),
        confidence: float = 0.95,
        options: ConvergenceOptions | None = None,
        score: str = "relative_bound",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        fields = {f.name for f in dataclasses.fields(ConvergenceOptions)}
        self.options = ConvergenceOptions.of(
            options, **{k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        )
        super().__init__(**kwargs)
        if perturbation == "gaussian":
            self.perturbation: Perturbation = gaussian_perturbation(sigma)
        elif perturbation == "adaptgrad":
            self.perturbation = adaptgrad_perturbation(bounds, confidence)
        elif callable(perturbation):
            self.perturbation = perturbation
        else:
            raise ValueError(
                "perturbation must be 'gaussian', 'adaptgrad' or a callable (x, generator) -> "
                f"x', got {perturbation!r}."
            )
        if score not in _SCORES:
            raise ValueError(f"score must be one of {_SCORES}, got {score!r}.")
        self.score = score
        self.generator = make_generator(generator, seed)
        # Draws are keyed to (this seed, sample index), so scores do not depend on batch_size.
        self.seed = self.generator.initial_seed() if seed is None or generator else seed
        self._offset = 0
        self.results: list[ConvergenceResult] = []

    def __call__(self, model: Any, x_batch: np.ndarray, y_batch: np.ndarray, **kwargs: Any) -> Any:
        """Evaluate with ``explain_func`` (required: the metric needs fresh draws)."""
        self.results = []
        self._offset = 0
        if kwargs.get("explain_func") is None:
            raise ValueError("ConvergenceConstants needs explain_func to explain perturbed inputs.")
        return super().__call__(model, x_batch, y_batch, **kwargs)

    def compute(
        self,
        model: nn.Module,
        x: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        explain_func: ExplainFunc,
        explain_func_kwargs: dict[str, Any] | None = None,
        first_index: int = 0,
    ) -> ConvergenceResult:
        """The full :class:`ConvergenceResult` for one batch (no Quantus plumbing).

        ``first_index`` is the data-set index of ``x[0]``: the draws of each sample are keyed
        to its index and the metric's seed.
        """
        device, dtype = model_device_dtype(model)
        inputs = torch.as_tensor(x, device=device, dtype=dtype)
        targets = torch.as_tensor(y, device=device).long().view(-1)
        if len(targets) != len(inputs):
            raise ValueError(f"got {len(targets)} targets for {len(inputs)} inputs.")
        return convergence_constants(
            model,
            inputs,
            targets,
            explain_func,
            self.perturbation,
            explain_func_kwargs,
            self.options,
            progress=self.display_progressbar,
            sample_seeds=(self.seed, range(first_index, first_index + len(inputs))),
        )

    def evaluate_batch(
        self, model: Any, x_batch: np.ndarray, y_batch: np.ndarray, **kwargs: Any
    ) -> list[float]:
        """One score per sample (see ``score``); full results go to :attr:`results`."""
        torch_model = unwrap_model(model)
        result = self.compute(
            torch_model,
            x_batch,
            y_batch,
            self.explain_func,
            self.explain_func_kwargs,
            first_index=self._offset,
        )
        self._offset += len(x_batch)
        self.results.append(result)
        return [float(v) for v in getattr(result, self.score).cpu()]

    def has_results(self) -> bool:
        return bool(self.results)

    def draw(self, ax: Any, label: str | None, **style: Any) -> None:
        """Measured error of the N-draw mean vs N with the fitted ``C·√(1/N + 1/N_ref)``.

        Both relative to ``|f_c(x)|`` and averaged over the samples of the last call, on log
        axes (a slope of −1/2 is the Monte-Carlo rate).
        """
        grid = np.asarray(self.results[0].grid, dtype=np.float64)
        scale = [r.output.detach().abs().double().cpu().clamp_min(1e-300) for r in self.results]
        errors = torch.cat(
            [r.errors.detach().double().cpu() / s for r, s in zip(self.results, scale)], dim=1
        )
        constant = torch.cat([r.relative_constant.detach().double().cpu() for r in self.results])
        reference = float(self.options.n_reference)
        (line,) = ax.plot(grid, errors.mean(1).numpy(), marker="o", label=label, **style)
        fitted = float(constant.mean()) * np.sqrt(1.0 / grid + 1.0 / reference)
        ax.plot(grid, fitted, color=line.get_color(), linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("draws N (dashed: fitted C·√(1/N + 1/N_ref))")
        ax.set_ylabel("RMS error / |f_c(x)|")
