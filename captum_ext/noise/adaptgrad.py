"""AdaptGrad: gradient smoothing with data-adapted, per-feature Gaussian noise (seed 003).

SmoothGrad draws isotropic noise ε ~ N(0, σ²), σ = α·(x_max − x_min), and so samples points
outside the data range [x_min, x_max]; seed 003 calls the out-of-bounds probability the
*inherent noise* (eq. 9/10). AdaptGrad (eq. 11–13) gives every feature its own standard deviation

    σ_i = min(|x_i − x_min|, |x_i − x_max|) / κ(c)

so that x_i + ε_i stays inside the data range with confidence c.

Two choices of κ exist and both are offered:

* ``kappa="code"`` (default, the authors' public code): κ = √2·erfinv(c), which makes
  P(|ε_i| ≤ d_i) = c exactly, d_i being the distance to the nearer bound.
* ``kappa="paper"`` (eq. 13 as printed): κ = √2·erfinv((1 + c)/2), a larger κ, hence smaller
  noise (the two-sided quantile applied twice).

In the Figure-3 setting (x uniform on [−2.12, 2.64], c = 0.95) the mean inherent noise is 0.027067
with the code's κ and 0.013353 with eq. 13's; SmoothGrad with α = 0.2 gives 0.159576.

Public pieces: :func:`noise_std`, :func:`smoothgrad_std`, :func:`inherent_noise` (with its
:class:`InherentNoise` result), :class:`SeededNoiseTunnel` (Captum's ``NoiseTunnel`` with
per-feature σ tensors and a private random generator) and :class:`AdaptGrad`.

Reference: seed 003, "AdaptGrad: adaptive gradient smoothing" (eq. 6, 9, 10, 11–14, Figure 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from captum._utils.common import (
    _expand_and_update_additional_forward_args,
    _expand_and_update_baselines,
    _expand_and_update_feature_mask,
    _expand_and_update_target,
    _format_baseline,
    _format_tensor_into_tuples,
    _is_tuple,
)
from captum.attr import NoiseTunnel
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor

from captum_ext.core.isolation import isolated_call
from captum_ext.core.validation import (
    check_finite,
    check_open_unit,
    check_positive,
    check_positive_int,
    check_result_finite,
)

__all__ = [
    "AdaptGrad",
    "broadcast_bounds",
    "InherentNoise",
    "SeededNoiseTunnel",
    "inherent_noise",
    "kappa_value",
    "make_generator",
    "noise_std",
    "smoothgrad_std",
]

BoundValue = float | int | Tensor
Bounds = tuple[BoundValue, BoundValue]
KappaRule = Literal["code", "paper"]


# --------------------------------------------------------------------------------------------
# bounds and σ
# --------------------------------------------------------------------------------------------


def _bound_tensor(value: BoundValue, x: Tensor, name: str) -> Tensor:
    """One bound as a tensor that broadcasts against ``x`` (kept small: no expanded copy).

    Accepted: a scalar, one value per channel (dim 1), one value per feature (``x.shape[1:]``)
    or any tensor with ``x.ndim`` dimensions that broadcasts to ``x``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{name} must be a number or a tensor, got {type(value).__name__}."
            ) from err
    bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    check_finite(bound, name)
    shape = tuple(x.shape)
    if bound.dim() == 1 and x.dim() >= 2 and bound.shape[0] == shape[1]:
        # per-channel bounds, the usual form of normalised-image ranges
        bound = bound.view((1, -1) + (1,) * (x.dim() - 2))
    elif bound.dim() > 0 and tuple(bound.shape) == shape[1:]:
        bound = bound.unsqueeze(0)
    try:
        if bound.dim() in (0, x.dim()) and torch.broadcast_shapes(bound.shape, x.shape) == x.shape:
            return bound
    except RuntimeError:
        pass
    raise ValueError(
        f"{name} has shape {tuple(bound.shape)}, which does not fit inputs of shape {shape}; "
        f"give a scalar, one value per channel ({shape[1] if x.dim() > 1 else '-'}), one value "
        f"per feature {shape[1:]}, or a tensor broadcastable with ndim {x.dim()}."
    )


def broadcast_bounds(x: Tensor, bounds: Bounds, name: str = "bounds") -> tuple[Tensor, Tensor]:
    """Validated ``(low, high)`` tensors broadcastable to ``x`` with low < high everywhere."""
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"{name} must be a pair (x_min, x_max), got {bounds!r}.")
    if not x.is_floating_point():
        raise TypeError(f"inputs must be floating point, got {x.dtype}; convert with .float().")
    low = _bound_tensor(bounds[0], x, f"{name}[0] (x_min)")
    high = _bound_tensor(bounds[1], x, f"{name}[1] (x_max)")
    bad = low >= high
    if bad.any():
        low, high, bad = torch.broadcast_tensors(low, high, bad)
        raise ValueError(
            f"{name}: x_min must be < x_max everywhere, but {int(bad.sum())} value(s) have "
            f"x_min ≥ x_max (e.g. x_min={low[bad][0].item():g}, x_max={high[bad][0].item():g})."
        )
    return low, high


def _distance(x: Tensor, low: Tensor, high: Tensor, name: str) -> Tensor:
    """d_i = min(x_i − x_min, x_max − x_i), raising if some x_i lies outside the bounds.

    A negative d_i is the excess outside the bounds; up to 16 ulps of the bound is tolerated
    (normalising [0, 1] images lands a few ulps past the normalised bounds) and counts as 0.
    """
    distance = torch.minimum(x - low, high - x)
    slack = 16 * torch.finfo(x.dtype).eps * torch.maximum(low.abs(), high.abs()).clamp_min(1.0)
    outside = distance < -slack
    if outside.any():
        excess, low, high = torch.broadcast_tensors(-distance, low, high)
        index = tuple(int(i) for i in torch.unravel_index(excess.argmax().cpu(), x.shape))
        raise ValueError(
            f"{name}: {int(outside.sum())} of {x.numel()} value(s) lie outside the bounds; the "
            f"worst is {name}{list(index)} = {x[index].item():g}, outside "
            f"[{low[index].item():g}, {high[index].item():g}] by {excess[index].item():g}. "
            "Check the bounds (e.g. normalised vs raw pixel range) or pass clamp=True to project "
            "the inputs onto the bounds."
        )
    return distance.clamp_min_(0)


def kappa_value(confidence: float = 0.95, kappa: KappaRule = "code") -> float:
    """κ(c) of AdaptGrad: ``"code"`` → √2·erfinv(c); ``"paper"`` (eq. 13) → √2·erfinv((1+c)/2)."""
    check_open_unit("confidence", confidence)
    if kappa == "code":
        level = confidence
    elif kappa == "paper":
        level = (1.0 + confidence) / 2.0
    else:
        raise ValueError(f"kappa must be 'code' or 'paper', got {kappa!r}.")
    return math.sqrt(2.0) * torch.special.erfinv(torch.tensor(level, dtype=torch.float64)).item()


def noise_std(
    x: Tensor,
    bounds: Bounds,
    confidence: float = 0.95,
    kappa: KappaRule = "code",
    *,
    clamp: bool = False,
) -> Tensor:
    """Per-feature AdaptGrad standard deviation σ_i (seed 003, eq. 13).

    Parameters
    ----------
    x : Tensor
        Inputs, batch first, e.g. ``(N, C, H, W)``.
    bounds : (x_min, x_max)
        Data range: scalars, per-channel 1-D tensors (length ``C``, broadcast over ``(N, C, H,
        W)``), per-feature tensors of shape ``x.shape[1:]`` or tensors broadcastable to ``x``.
    confidence : float
        c in (0, 1): the probability that x_i + ε_i stays within ``d_i`` of x_i.
    kappa : {"code", "paper"}
        "code" (default): κ = √2·erfinv(c), the authors' code, P(|ε_i| ≤ d_i) = c exactly.
        "paper": κ = √2·erfinv((1 + c)/2), eq. 13 as printed (smaller σ).
    clamp : bool
        Project ``x`` onto the bounds first instead of raising for values outside them.

    Returns
    -------
    Tensor
        σ of ``x``'s shape, dtype and device. A feature sitting exactly on a bound gets σ = 0
        (no noise at all: the distance to the nearer bound is zero); so does one outside a bound
        by no more than rounding error (16 ulps of the bound), as normalised images often are.

    Raises
    ------
    ValueError
        Non-finite ``x``, x_min ≥ x_max, confidence outside (0, 1), bounds of a wrong shape, or
        values of ``x`` outside the bounds (with the count and the worst offender).
    """
    check_finite(x, "x")
    return _adapt(x, bounds, kappa_value(confidence, kappa), clamp, "x", "bounds")[1]


def _adapt(
    x: Tensor, bounds: Bounds, kappa: float, clamp: bool, name: str, bounds_name: str
) -> tuple[Tensor, Tensor]:
    """``(x, σ)``: ``x`` checked against (``clamp``: projected onto) the bounds; eq. 13 σ."""
    low, high = broadcast_bounds(x, bounds, bounds_name)
    if clamp:
        x = torch.clamp(x, low, high)
    return x, _distance(x, low, high, name).div_(kappa)


def smoothgrad_std(bounds: Bounds, alpha: float = 0.2) -> float | Tensor:
    """SmoothGrad's σ = α·(x_max − x_min) (seed 003, eq. 6; α = 0.2 recommended by SmoothGrad).

    Returns a float for scalar bounds and a tensor (the broadcast of the bounds) otherwise; pass
    it to :func:`inherent_noise` or, if it is a float, to Captum's ``NoiseTunnel(stdevs=...)``.
    """
    check_positive("alpha", alpha)
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (x_min, x_max), got {bounds!r}.")
    low, high = bounds
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        width = torch.as_tensor(high) - torch.as_tensor(low)
        if (width <= 0).any():
            raise ValueError("bounds: x_min must be < x_max everywhere.")
        return alpha * width
    if not high > low:
        raise ValueError(f"bounds: x_min must be < x_max, got ({low!r}, {high!r}).")
    return alpha * float(high - low)


class InherentNoise(NamedTuple):
    """Analytic inherent noise of Gaussian smoothing (seed 003, eq. 9/10).

    Attributes
    ----------
    per_feature : Tensor
        A_i = 1 − P(x_min ≤ x_i + ε_i ≤ x_max), ε_i ~ N(0, σ_i²), shape of ``x``.
    per_sample : Tensor
        Mean of ``per_feature`` over all but the batch dimension, shape ``(N,)``.
    mean : Tensor
        Mean over everything (0-dim tensor): the expected fraction of out-of-bounds features.
    """

    per_feature: Tensor
    per_sample: Tensor
    mean: Tensor


def inherent_noise(x: Tensor, std: float | Tensor, bounds: Bounds) -> InherentNoise:
    """Probability that ``x + ε``, ε ~ N(0, std²), leaves ``bounds``, per feature (eq. 9/10).

    Parameters
    ----------
    x : Tensor
        Points, batch first (values may lie outside the bounds; they then count as noise).
    std : float or Tensor
        σ: a scalar (SmoothGrad, see :func:`smoothgrad_std`) or a tensor broadcastable to ``x``
        (AdaptGrad, see :func:`noise_std`). Must be ≥ 0; σ = 0 gives A_i = 0 inside the bounds
        (bounds included) and 1 outside.
    bounds : (x_min, x_max)
        As in :func:`noise_std`.

    Returns
    -------
    InherentNoise
        ``(per_feature, per_sample, mean)``; unpack it or use the attributes.
        Computed as Φ((x_min − x)/σ) + Φ((x − x_max)/σ) with ``erfc`` for accuracy in the tails.
    """
    check_finite(x, "x")
    low, high = broadcast_bounds(x, bounds)
    sigma = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    check_finite(sigma, "std")
    if (sigma < 0).any():
        raise ValueError("std must be ≥ 0 everywhere.")
    sigma = sigma.expand(x.shape) if sigma.dim() == 0 else torch.broadcast_to(sigma, x.shape)
    positive = sigma > 0
    scale = torch.where(positive, sigma, torch.ones_like(sigma)) * math.sqrt(2.0)
    # Φ(−t) = erfc(t/√2)/2 keeps tiny tail probabilities exact instead of 1 − (1 − tiny)
    below = 0.5 * torch.special.erfc((x - low) / scale)
    above = 0.5 * torch.special.erfc((high - x) / scale)
    outside = ((x < low) | (x > high)).to(x.dtype)
    per_feature = torch.where(positive, below + above, outside)
    per_sample = per_feature.flatten(1).mean(1) if x.dim() > 1 else per_feature
    return InherentNoise(per_feature, per_sample, per_feature.mean())


# --------------------------------------------------------------------------------------------
# random generators
# --------------------------------------------------------------------------------------------


def make_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A private generator: ``generator`` as given, or a new one seeded with ``seed``.

    With neither, a fresh generator with a non-deterministic seed is returned; the global RNG is
    never read nor advanced.
    """
    if generator is not None and seed is not None:
        raise ValueError("Give either generator= or seed=, not both.")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        return generator
    fresh = torch.Generator(device=device)
    if seed is None:
        fresh.seed()
        return fresh
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    return fresh.manual_seed(seed)


def _normal(shape: torch.Size, like: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal draws of ``shape`` from ``generator``, moved to ``like``'s device."""
    noise = torch.randn(shape, generator=generator, dtype=like.dtype, device=generator.device)
    return noise.to(like.device)


# --------------------------------------------------------------------------------------------
# the tunnel
# --------------------------------------------------------------------------------------------


class SeededNoiseTunnel(NoiseTunnel):
    """Captum's ``NoiseTunnel`` with per-feature σ tensors and a private random generator.

    ``attribute`` takes everything ``NoiseTunnel.attribute`` takes; ``stdevs`` may additionally
    be a tensor broadcastable to the inputs (one per input tensor for tuple inputs), and
    ``generator=``/``seed=`` choose the random stream. With a float σ and ``seed=s`` the draws
    are bit-identical to Captum's ``NoiseTunnel`` run after ``torch.manual_seed(s)``, but the
    global RNG is left untouched (also for ``draw_baseline_from_distrib=True``).

    Only the noise (``_add_noise_to_inputs``) and the baseline draw (``_expand_partial``) are
    replaced; expansion order (``repeat_interleave``), batching and smoothing are Captum's.
    """

    # Captum runs the forward passes; check the output and the target once before sampling.
    _preflight_forward = True

    def __init__(self, attribution_method: Attribution) -> None:
        if not isinstance(attribution_method, Attribution):
            raise TypeError(
                "attribution_method must be a Captum Attribution instance (e.g. Saliency(model)), "
                f"got {type(attribution_method).__name__}."
            )
        super().__init__(attribution_method)
        self._sigmas: tuple[Tensor, ...] | None = None
        self._generator: torch.Generator | None = None

    @log_usage()
    @isolated_call
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | None = None,
        stdevs: float | Tensor | tuple[float | Tensor, ...] = 1.0,
        draw_baseline_from_distrib: bool = False,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Smoothed attributions; see ``captum.attr.NoiseTunnel.attribute``.

        Parameters
        ----------
        stdevs : float, Tensor or tuple of them
            σ per input tensor; a tensor is broadcast to the input's shape (≥ 0 everywhere).
        generator, seed
            Private random stream (give at most one). Neither: a fresh non-deterministic one.
        """
        formatted = self._check_call(inputs, nt_samples, nt_samples_batch_size)
        if not isinstance(stdevs, tuple):
            stdevs = (stdevs,) * len(formatted)
        if len(stdevs) != len(formatted):
            raise ValueError(
                f"stdevs has {len(stdevs)} entries but there are {len(formatted)} input tensors."
            )
        sigmas = tuple(self._sigma_tensor(s, x) for s, x in zip(stdevs, formatted))
        return self._run(
            inputs, formatted, sigmas, nt_type, nt_samples, nt_samples_batch_size,
            draw_baseline_from_distrib, generator, seed, kwargs,
        )  # fmt: skip

    # -- shared plumbing ---------------------------------------------------------------------

    @staticmethod
    def _check_call(
        inputs: Tensor | tuple[Tensor, ...], nt_samples: int, nt_samples_batch_size: int | None
    ) -> tuple[Tensor, ...]:
        check_positive_int("nt_samples", nt_samples)
        if nt_samples_batch_size is not None:
            check_positive_int("nt_samples_batch_size", nt_samples_batch_size)
        formatted = _format_tensor_into_tuples(inputs)
        check_finite(formatted, "inputs")
        if len({x.shape[0] for x in formatted}) > 1:
            raise ValueError(
                "All input tensors must share the batch size (dim 0), got "
                f"{[tuple(x.shape) for x in formatted]}."
            )
        return formatted

    @staticmethod
    def _sigma_tensor(stdev: float | Tensor, x: Tensor) -> Tensor:
        sigma = torch.as_tensor(stdev, dtype=x.dtype, device=x.device)
        check_finite(sigma, "stdevs")
        if (sigma < 0).any():
            raise ValueError("stdevs must be ≥ 0 everywhere.")
        try:
            return torch.broadcast_to(sigma, x.shape)
        except RuntimeError as err:
            raise ValueError(
                f"stdevs of shape {tuple(sigma.shape)} cannot be broadcast to an input of shape "
                f"{tuple(x.shape)}."
            ) from err

    def _run(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        formatted: tuple[Tensor, ...],
        sigmas: tuple[Tensor, ...],
        nt_type: str,
        nt_samples: int,
        nt_samples_batch_size: int | None,
        draw_baseline_from_distrib: bool,
        generator: torch.Generator | None,
        seed: int | None,
        kwargs: dict[str, Any],
    ) -> Any:
        if "stdevs" in kwargs:
            raise TypeError(f"{type(self).__name__} computes stdevs itself; do not pass stdevs=.")
        self._generator = make_generator(generator, seed, formatted[0].device)
        self._sigmas = sigmas
        try:
            result = NoiseTunnel.attribute.__wrapped__(  # type: ignore[attr-defined]
                self,
                formatted if _is_tuple(inputs) else formatted[0],
                nt_type=nt_type,
                nt_samples=nt_samples,
                nt_samples_batch_size=nt_samples_batch_size,
                draw_baseline_from_distrib=draw_baseline_from_distrib,
                **kwargs,
            )
        finally:
            self._sigmas = None
            self._generator = None
        with_delta = self.is_delta_supported and kwargs.get("return_convergence_delta", False)
        attributions = result[0] if with_delta else result
        check_result_finite(_format_tensor_into_tuples(attributions), type(self).__name__)
        return result

    # -- Captum extension points -------------------------------------------------------------

    def _add_noise_to_inputs(  # type: ignore[override]
        self, nt_samples_partition: int, inputs: tuple[Tensor, ...], stdevs: Any = None
    ) -> tuple[Tensor, ...]:
        if self._sigmas is None or self._generator is None:
            raise RuntimeError("_add_noise_to_inputs is only valid inside attribute().")
        noisy = []
        # same order as Captum (one draw per input tensor, the samples of an example adjacent,
        # i.e. repeat_interleave), but drawn as (N, n, ...) and broadcast: no repeated copies
        for x, sigma in zip(inputs, self._sigmas):
            shape = (x.shape[0], nt_samples_partition, *x.shape[1:])
            noise = _normal(torch.Size(shape), x, self._generator)
            sample = noise.mul_(sigma.unsqueeze(1)).add_(x.unsqueeze(1)).flatten(0, 1)
            noisy.append(sample.requires_grad_() if self.is_gradient_method else sample)
        return tuple(noisy)

    def _expand_partial(  # type: ignore[override]
        self,
        nt_samples_partition: int,
        kwargs_partial: dict[str, Any],
        inputs: tuple[Tensor, ...],
        draw_baseline_from_distrib: bool,
    ) -> None:
        _expand_and_update_additional_forward_args(nt_samples_partition, kwargs_partial)
        _expand_and_update_target(nt_samples_partition, kwargs_partial)
        _expand_and_update_feature_mask(nt_samples_partition, kwargs_partial)
        if not (draw_baseline_from_distrib and "baselines" in kwargs_partial):
            _expand_and_update_baselines(inputs, nt_samples_partition, kwargs_partial, False)
            return
        # Captum draws these indices with np.random; we use the private generator instead
        baselines = _format_baseline(kwargs_partial["baselines"], inputs)
        draws = nt_samples_partition * inputs[0].shape[0]
        assert self._generator is not None
        picked = []
        for baseline in baselines:
            if isinstance(baseline, Tensor):
                index = torch.randint(
                    baseline.shape[0], (draws,), generator=self._generator,
                    device=self._generator.device,
                )  # fmt: skip
                baseline = baseline[index.to(baseline.device)]
            picked.append(baseline)
        kwargs_partial["baselines"] = tuple(picked)


def _bounds_per_input(bounds: Any, n_inputs: int) -> list[Bounds]:
    """One ``(x_min, x_max)`` pair per input tensor; a single pair is shared by all."""
    if not isinstance(bounds, (tuple, list)) or len(bounds) == 0:
        raise ValueError(f"bounds must be a pair (x_min, x_max) or one pair per input: {bounds!r}")
    if all(isinstance(b, (tuple, list)) for b in bounds):
        if len(bounds) != n_inputs:
            raise ValueError(
                f"bounds gives {len(bounds)} (x_min, x_max) pairs but there are {n_inputs} input "
                "tensors; give one pair per input tensor or a single shared pair."
            )
        return [tuple(b) for b in bounds]  # type: ignore[misc]
    return [tuple(bounds)] * n_inputs  # type: ignore[list-item]


def _names(index: int, count: int) -> tuple[str, str]:
    return ("inputs", "bounds") if count == 1 else (f"inputs[{index}]", f"bounds[{index}]")


class AdaptGrad(SeededNoiseTunnel):
    """AdaptGrad (seed 003): a ``NoiseTunnel`` whose noise σ_i adapts to the data range.

    Each feature gets ε_i ~ N(0, σ_i²) with σ_i = min(|x_i − x_min|, |x_i − x_max|) / κ(c)
    (eq. 11–13), so x_i + ε_i stays in [x_min, x_max] with confidence c and the *inherent
    noise* of SmoothGrad (out-of-bounds samples, eq. 9/10) falls from ~16 % to ~3 %.
    It wraps any Captum or captum_ext attribution: ``AdaptGrad(Saliency(model))`` is AG,
    ``InputXGradient`` gives A-GI, ``IntegratedGradients`` with black/white baselines A-IG,
    ``NoiseGrad`` A-NG.

    Parameters
    ----------
    attribution_method : captum.attr.Attribution
        The method to smooth.
    bounds : (x_min, x_max) or sequence of such pairs
        Data range: scalars, per-channel 1-D tensors, per-feature tensors (``x.shape[1:]``) or
        tensors broadcastable to the input; for tuple inputs one pair per input tensor (a
        single pair is shared). Authors' defaults: ImageNet-normalised (−2.117904, 2.64),
        MNIST (0, 1); ``captum_ext.zoo.imagenet_bounds()`` gives per-channel ones.
    confidence : float
        c in (0, 1), default 0.95 (the paper's recommendation).
    kappa : {"code", "paper"}
        κ = √2·erfinv(c) as in the authors' code (default, P(|ε_i| ≤ d_i) = c), or
        √2·erfinv((1 + c)/2) as printed in eq. 13 (half as much inherent noise, smaller σ).
    clamp : bool
        Inputs outside the bounds raise ``ValueError`` (count and worst offender) by default;
        ``clamp=True`` projects them onto the bounds and explains the projected inputs.

    Notes
    -----
    A feature exactly on a bound gets σ_i = 0: it is never perturbed. Noise comes from a
    private ``torch.Generator`` (``attribute(..., generator=g)`` or ``seed=s``); the global RNG
    is never touched. With per-feature bounds ``x ± d`` every σ_i equals ``d/κ`` and AdaptGrad
    reproduces Captum's ``NoiseTunnel(stdevs=d/κ)`` draw for draw under the same seed.

    Examples
    --------
    >>> ag = AdaptGrad(Saliency(model), bounds=(0.0, 1.0))
    >>> maps = ag.attribute(images, nt_samples=20, target=labels, seed=0)
    """

    def __init__(
        self,
        attribution_method: Attribution,
        bounds: Bounds | Sequence[Bounds] = (0.0, 1.0),
        confidence: float = 0.95,
        kappa: KappaRule = "code",
        clamp: bool = False,
    ) -> None:
        super().__init__(attribution_method)
        self.kappa_value = kappa_value(confidence, kappa)
        self.bounds = bounds
        self.confidence = confidence
        self.kappa = kappa
        self.clamp = bool(clamp)

    @log_usage()
    @isolated_call
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | None = None,
        draw_baseline_from_distrib: bool = False,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """AdaptGrad-smoothed attributions of ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Batch-first inputs inside ``bounds``.
        nt_type : {"smoothgrad", "smoothgrad_sq", "vargrad"}
            Mean, mean of squares or variance of the sampled attributions (as ``NoiseTunnel``).
        nt_samples : int
            Noisy samples per input example (N of eq. 11).
        nt_samples_batch_size : int, optional
            Samples per forward/backward batch (memory bound); remainders are handled.
        draw_baseline_from_distrib : bool
            As in ``NoiseTunnel``; the baseline rows are drawn with the private generator.
        generator, seed
            Private random stream (give at most one); neither gives a fresh random stream.
        **kwargs
            Passed to the wrapped method (``target``, ``additional_forward_args``, ``baselines``,
            ``return_convergence_delta``, ...).

        Returns
        -------
        Tensor or tuple of Tensor
            Like the wrapped method (with convergence delta if requested and supported).
        """
        formatted = self._check_call(inputs, nt_samples, nt_samples_batch_size)
        pairs = _bounds_per_input(self.bounds, len(formatted))
        adapted = [
            _adapt(x, pair, self.kappa_value, self.clamp, *_names(index, len(formatted)))
            for index, (x, pair) in enumerate(zip(formatted, pairs))
        ]
        projected, sigmas = zip(*adapted)
        formatted = tuple(projected)
        return self._run(
            inputs, formatted, tuple(sigmas), nt_type, nt_samples, nt_samples_batch_size,
            draw_baseline_from_distrib, generator, seed, kwargs,
        )  # fmt: skip

    def noise_std(self, inputs: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        """The σ tensors this AdaptGrad would use for ``inputs`` (same structure as inputs)."""
        formatted = _format_tensor_into_tuples(inputs)
        pairs = _bounds_per_input(self.bounds, len(formatted))
        sigmas = tuple(
            noise_std(x, pair, self.confidence, self.kappa, clamp=self.clamp)
            for x, pair in zip(formatted, pairs)
        )
        return sigmas if _is_tuple(inputs) else sigmas[0]
