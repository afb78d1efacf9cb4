"""Noise statistics of Gaussian smoothing: bounds, σ of SmoothGrad and AdaptGrad, inherent noise.

SmoothGrad draws isotropic noise ε ~ N(0, σ²), σ = α·(x_max − x_min), and so samples points
outside the data range [x_min, x_max]; Zhou et al. (2025) call the out-of-bounds probability the
*inherent noise* (their eq. 9/10). AdaptGrad (eq. 11–13) gives every feature its own standard
deviation

    σ_i = min(|x_i − x_min|, |x_i − x_max|) / κ(c)

so that x_i + ε_i stays inside the data range with confidence c.

Two choices of κ exist and both are offered:

* ``kappa="two_sided"`` (default, the authors' public code): κ = √2·erfinv(c), which makes
  P(|ε_i| ≤ d_i) = c exactly, d_i being the distance to the nearer bound.
* ``kappa="as_printed"`` (eq. 13 as printed): κ = √2·erfinv((1 + c)/2), a larger κ, hence smaller
  noise (the two-sided quantile applied twice).

The earlier names ``"code"`` and ``"paper"`` are accepted as aliases.

In the setting of the paper's Figure 3 (x uniform on [−2.12, 2.64], c = 0.95) the mean inherent
noise is 0.027067 with the two-sided κ and 0.013353 with the printed one; SmoothGrad with α = 0.2
gives 0.159576.

Reference: Zhou et al., "Rethinking the Principle of Gradient Smooth Methods in Model
Explanation", 2025 (eq. 6, 9, 10, 11–14, Figure 3).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from captum_ext.core.validation import check_finite, check_open_unit, check_positive

__all__ = [
    "Bounds",
    "InherentNoise",
    "broadcast_bounds",
    "broadcast_sigma",
    "inherent_noise",
    "kappa_value",
    "noise_std",
    "smoothgrad_std",
]

BoundValue = float | int | Tensor
Bounds = tuple[BoundValue, BoundValue]
KappaRule = Literal["two_sided", "as_printed", "code", "paper"]
_KAPPA_ALIASES = {"code": "two_sided", "paper": "as_printed"}


# --------------------------------------------------------------------------------------------
# bounds and σ
# --------------------------------------------------------------------------------------------


def broadcast_sigma(value: float | Tensor, x: Tensor, name: str = "σ") -> Tensor:
    """A noise scale as a tensor of ``x``'s shape and dtype, finite and ≥ 0 everywhere.

    ``value`` is a number or a tensor that broadcasts to ``x`` (one σ per feature, per channel,
    ...); ``name`` is how error messages call it.
    """
    sigma = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    check_finite(sigma, name)
    if (sigma < 0).any():
        raise ValueError(f"{name} must be ≥ 0 everywhere.")
    try:
        return torch.broadcast_to(sigma, x.shape)
    except RuntimeError as err:
        raise ValueError(
            f"{name} of shape {tuple(sigma.shape)} cannot be broadcast to an input of shape "
            f"{tuple(x.shape)}."
        ) from err


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


def kappa_value(confidence: float = 0.95, kappa: KappaRule = "two_sided") -> float:
    """κ(c) of AdaptGrad: ``"two_sided"`` → √2·erfinv(c); ``"as_printed"`` → √2·erfinv((1+c)/2).

    ``"two_sided"`` is the authors' code (P(|ε_i| ≤ d_i) = c exactly), ``"as_printed"`` eq. 13 of
    the paper; ``"code"`` and ``"paper"`` are accepted as their older names.
    """
    check_open_unit("confidence", confidence)
    rule = _KAPPA_ALIASES.get(kappa, kappa)
    if rule == "two_sided":
        level = confidence
    elif rule == "as_printed":
        level = (1.0 + confidence) / 2.0
    else:
        raise ValueError(f"kappa must be 'two_sided' or 'as_printed', got {kappa!r}.")
    return math.sqrt(2.0) * torch.special.erfinv(torch.tensor(level, dtype=torch.float64)).item()


def noise_std(
    x: Tensor,
    bounds: Bounds,
    confidence: float = 0.95,
    kappa: KappaRule = "two_sided",
    *,
    clamp: bool = False,
) -> Tensor:
    """Per-feature AdaptGrad standard deviation σ_i (Zhou et al., 2025, eq. 13).

    Parameters
    ----------
    x : Tensor
        Inputs, batch first, e.g. ``(N, C, H, W)``.
    bounds : (x_min, x_max)
        Data range: scalars, per-channel 1-D tensors (length ``C``, broadcast over ``(N, C, H,
        W)``), per-feature tensors of shape ``x.shape[1:]`` or tensors broadcastable to ``x``.
    confidence : float
        c in (0, 1): the probability that x_i + ε_i stays within ``d_i`` of x_i.
    kappa : {"two_sided", "as_printed"}
        "two_sided" (default): κ = √2·erfinv(c), the authors' code, P(|ε_i| ≤ d_i) = c exactly.
        "as_printed": κ = √2·erfinv((1 + c)/2), eq. 13 as printed (smaller σ).
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
    """SmoothGrad's σ = α·(x_max − x_min) (Zhou et al., 2025, eq. 6; α = 0.2 recommended by
    SmoothGrad).

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
    """Analytic inherent noise of Gaussian smoothing (Zhou et al., 2025, eq. 9/10).

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
