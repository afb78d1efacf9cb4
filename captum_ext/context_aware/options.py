"""The options of CAFO and CASO, as one validated object per method.

``CAFO(model).attribute(x, options=CAFOOptions(lambda1=1e-3))`` and
``CAFO(model).attribute(x, lambda1=1e-3)`` are the same call: keyword arguments of ``attribute``
override fields of ``options`` (or of the defaults), so the Captum-style call keeps working and
inside ``NoiseTunnel`` the options travel as keyword arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch

from captum_ext.core.randomness import make_generator
from captum_ext.core.validation import check_open_unit, check_positive, check_positive_int

__all__ = ["CAFOOptions", "CASOOptions", "resolve_options"]

PerSample = float | Sequence[float] | torch.Tensor


@dataclass(frozen=True)
class CAFOOptions:
    """Options of :class:`~captum_ext.CAFO` (Singla et al., 2019).

    Parameters
    ----------
    lambda1 : float or sequence/tensor of ``B`` floats
        L1 weight (≥ 0); ignored with ``lambda1_search``.
    lambda2 : float or sequence/tensor of ``B`` floats, optional
        L2 weight (> 0); CAFO's default 10 (§3.1 of the paper), CASO's ``L/2 + c1``. Explicit
        CASO values must exceed ``L/2`` for every sample (else the objective is not concave).
    n_iter, step, backtrack : int, float, float
        FISTA iterations, initial step and the step's shrink factor on a failed
        sufficient-decrease test (paper: 10, 0.1, 0.5).
    tol : float
        A sample stops when its relative objective change is ≤ ``tol``; samples still moving
        after ``n_iter`` iterations raise a ``RuntimeWarning``.
    lambda1_search : bool
        Choose λ₁ per example (§4.1): ``n_lambda1`` values from 1e-5 by ×10, solved together; the
        sparsity η must fall in ``sparsity_range`` (η = 1 never qualifies); the highest
        Taylor-model loss gain wins; otherwise refine (halving).
    sparsity_range : (float, float)
        Admissible fraction of exactly-zero entries for the search.
    n_lambda1 : int
        λ₁ candidates of the search (≥ 2).
    n_samples, stdev : int, float
        Smooth variant (eq. 8): the objective averaged over ``n_samples`` copies
        ``x + N(0, stdev²)`` (absolute ``stdev``; paper n = 50, σ = 0.15), solved once.
    seed, generator
        The noise's random stream (:mod:`captum_ext.core.randomness`: at most one; seed 0 when
        neither is given). The global RNG is never used.
    loss : {"cross_entropy", "logit"}
        Cross-entropy against the target (paper) or the target logit itself.
    progress : bool, optional
        tqdm bar over the FISTA iterations; ``None`` (default) shows it on interactive terminals
        only (:func:`captum_ext.core.progress.show_progress`).
    sign : {"loss", "target"}
        ``"loss"`` (default, Definition 2 of the paper): Δ, the perturbation that increases the
        loss, so the map points *against* the target class. ``"target"``: −Δ, evidence *for*
        the target, signed like Captum's gradient methods (see ``docs/cafo_sign.md``).
    """

    lambda1: PerSample = 0.0
    lambda2: PerSample | None = None
    n_iter: int = 10
    step: float = 0.1
    backtrack: float = 0.5
    tol: float = 1e-4
    lambda1_search: bool = False
    sparsity_range: tuple[float, float] = (0.75, 1.0)
    n_lambda1: int = 8
    n_samples: int = 1
    stdev: float = 0.15
    seed: int | None = None
    generator: torch.Generator | None = None
    loss: Literal["cross_entropy", "logit"] = "cross_entropy"
    progress: bool | None = None
    sign: Literal["loss", "target"] = "loss"

    def __post_init__(self) -> None:
        if isinstance(self.generator, int) and not isinstance(self.generator, bool):
            # an int used to be accepted as the generator's seed
            if self.seed is not None:
                raise ValueError("Give either generator= or seed=, not both.")
            object.__setattr__(self, "seed", self.generator)
            object.__setattr__(self, "generator", None)
        make_generator(self.generator, self.seed)  # validates the pair without drawing
        check_positive_int("n_iter", self.n_iter)
        check_positive("step", self.step)
        check_open_unit("backtrack", self.backtrack)
        check_positive("tol", self.tol, allow_zero=True)
        check_positive_int("n_lambda1", self.n_lambda1, minimum=2)
        check_positive_int("n_samples", self.n_samples)
        check_positive("stdev", self.stdev, allow_zero=True)
        low, high = self.sparsity_range
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(
                f"sparsity_range must satisfy 0 ≤ low < high ≤ 1, got {tuple(self.sparsity_range)}."
            )
        if self.loss not in ("cross_entropy", "logit"):
            raise ValueError(f"loss must be 'cross_entropy' or 'logit', got {self.loss!r}.")
        if self.sign not in ("loss", "target"):
            raise ValueError(
                f"sign must be 'loss' (Δ raises the loss, the paper's map) or 'target' (−Δ, "
                f"evidence for the target class), got {self.sign!r}."
            )

    def noise_generator(self) -> torch.Generator:
        """A fresh generator for this call's noise, per the package's randomness policy."""
        return make_generator(self.generator, self.seed)


@dataclass(frozen=True)
class CASOOptions(CAFOOptions):
    """Options of :class:`~captum_ext.CASO`: those of :class:`CAFOOptions` and the Hessian's.

    Parameters
    ----------
    hessian : {"auto", "closed_form", "autograd"}
        ``"closed_form"``: factored ``Jᵀ(diag p − ppᵀ)J`` (piecewise-linear networks only; exact
        top eigenvalue; its Jacobian costs about one gradient per class); ``"autograd"``:
        double-backward HVPs and Lanczos (power iteration with Rayleigh–Ritz), cached on the
        explored Krylov space (:class:`~captum_ext.core.krylov.KrylovCache`); ``"auto"``:
        the closed form when every layer is piecewise linear and it is the cheaper one, i.e. for
        at most ``2·(power_iterations + n_iter·k)`` classes, ``k`` = ``n_lambda1`` with the λ₁
        search and 1 otherwise (40 classes by default); autograd otherwise (e.g. 1000-class
        ImageNet models).
    c1 : float
        Margin in ``λ₂ = L/2 + c1`` (paper: 10).
    power_iterations : int
        Most Lanczos steps (Hessian-vector products) for L with autograd HVPs (paper, Table 1: 10
        power-iteration steps; Lanczos is at least as accurate after as many).
    chunk_size : int, optional
        Classes per Jacobian chunk of the closed form (bounds graph memory).
    jacobian : {"expand", "vmap"}
        How the closed form gets its Jacobian rows (see :mod:`captum_ext.context_aware.hessian`).
    """

    hessian: Literal["auto", "closed_form", "autograd"] = "auto"
    c1: float = 10.0
    power_iterations: int = 10
    chunk_size: int | None = None
    jacobian: Literal["expand", "vmap"] = "expand"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("c1", self.c1)
        check_positive_int("power_iterations", self.power_iterations)
        if self.hessian not in ("auto", "closed_form", "autograd"):
            raise ValueError(
                f"hessian must be 'auto', 'closed_form' or 'autograd', got {self.hessian!r}."
            )


OptionsT = TypeVar("OptionsT", bound=CAFOOptions)


def resolve_options(
    kind: type[OptionsT], options: OptionsT | None, overrides: dict[str, Any]
) -> OptionsT:
    """``options`` (or the defaults of ``kind``) with ``overrides`` replacing fields, validated."""
    if options is None:
        options = kind()
    elif not isinstance(options, kind):
        raise TypeError(f"options must be a {kind.__name__}, got {type(options).__name__}.")
    names = {field.name for field in dataclasses.fields(kind)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for {kind.__name__}; valid: "
            f"{', '.join(sorted(names))}."
        )
    return dataclasses.replace(options, **overrides) if overrides else options
