"""Batched 2-D SSIM in torch and the map handling of Sixt et al. (2020), "When Explanations Lie".

Sixt et al. (2020, section 5) compare saliency maps with SSIM (Wang et al., 2004) after three steps
that
this module provides as separate functions:

1. :func:`reduce_channels` turns an ``(N, C, H, W)`` attribution into ``(N, H, W)`` maps (max of
   the absolute value for gradient-like methods, channel sum for LRP/DTD/Pattern/DeepLIFT);
2. :func:`percentile_normalise` maps each map's 99.5th percentile to 0 and its 0.5th percentile
   to 1 and clips to [0, 1] (the authors' normalisation);
3. :func:`flip_invariant_ssim` takes ``max(SSIM(n(a), n(b)), SSIM(n(a), n(-b)))`` because LRP and
   DTD maps sometimes flip their sign when the last layer is randomised.

:func:`ssim_batch` is the SSIM itself: the same formula as
``skimage.metrics.structural_similarity`` on 2-D images (mean over the valid window positions),
for a whole batch at once, on the tensors' device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from captum_ext.core.channels import channel_reduction, reduce_over_channels
from captum_ext.core.validation import check_finite, check_positive, check_positive_int

__all__ = [
    "SSIMOptions",
    "ReferenceSSIM",
    "flip_invariant_ssim",
    "percentile_normalise",
    "reduce_channels",
    "ssim_batch",
    "ssim_window",
]


def ssim_window(
    win_size: int = 5,
    gaussian: bool = False,
    sigma: float = 1.5,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The normalised 1-D SSIM window (the 2-D window is its outer product).

    A uniform window of ``win_size`` taps, or a Gaussian with standard deviation ``sigma``
    truncated to ``win_size`` taps. The Gaussian equals scikit-image's (``gaussian_weights=True``)
    when ``win_size == 2 * int(3.5 * sigma + 0.5) + 1``, e.g. 11 for ``sigma=1.5`` (Wang et al.).
    """
    check_positive_int("win_size", win_size, minimum=1)
    if win_size % 2 == 0:
        raise ValueError(f"win_size must be odd, got {win_size}.")
    if not gaussian:
        return torch.full((win_size,), 1.0 / win_size, dtype=dtype, device=device)
    check_positive("sigma", sigma)
    offsets = torch.arange(win_size, dtype=dtype, device=device) - (win_size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


@dataclass(frozen=True)
class SSIMOptions:
    """The options of SSIM (Wang et al., 2004), defined once for every function of this module.

    Parameters
    ----------
    data_range : float
        The dynamic range ``R`` in ``C1 = (k1 R)^2`` and ``C2 = (k2 R)^2``. Maps normalised to
        [0, 1] have range 1; 2.0 reproduces the numbers of Sixt et al. (2020).
    win_size : int
        Odd window width (5 as in Sixt et al. (2020); scikit-image's uniform default is 7).
    gaussian : bool
        Gaussian window (see :func:`ssim_window`) instead of a uniform one.
    sigma : float
        Standard deviation of the Gaussian window.
    use_sample_covariance : bool
        Normalise (co)variances by ``N - 1`` instead of ``N`` (``N = win_size**2``), as
        scikit-image does by default.
    k1, k2 : float
        The stabilising constants of Wang et al. (2004).
    """

    data_range: float = 2.0
    win_size: int = 5
    gaussian: bool = False
    sigma: float = 1.5
    use_sample_covariance: bool = True
    k1: float = 0.01
    k2: float = 0.03

    def __post_init__(self) -> None:
        check_positive("data_range", self.data_range)
        check_positive_int("win_size", self.win_size)
        if self.win_size % 2 == 0:
            raise ValueError(f"win_size must be odd, got {self.win_size}.")
        check_positive("sigma", self.sigma)

    @classmethod
    def of(cls, options: SSIMOptions | None = None, **overrides: Any) -> SSIMOptions:
        """``options`` (or the defaults) with fields replaced by ``overrides``."""
        base = cls() if options is None else options
        return dataclasses.replace(base, **overrides) if overrides else base

    def constants(self) -> tuple[int, bool, float, float, float]:
        return self.win_size, self.use_sample_covariance, self.data_range, self.k1, self.k2


def ssim_batch(
    a: torch.Tensor,
    b: torch.Tensor,
    options: SSIMOptions | None = None,
    *,
    full: bool = False,
    **overrides: Any,
) -> torch.Tensor:
    """Structural similarity of 2-D maps, batched over all leading dimensions.

    Parameters
    ----------
    a, b : torch.Tensor
        Maps of shape ``(..., H, W)`` with identical shapes, dtype and device.
    options : SSIMOptions, optional
        Window and constants; fields can also be given by name (``data_range=1.0``).
    full : bool
        Also return the SSIM map over the valid window positions.

    Returns
    -------
    torch.Tensor
        Mean SSIM of shape ``a.shape[:-2]`` (and the ``(..., H - w + 1, W - w + 1)`` map when
        ``full``). Constant maps are fine: both variance terms reduce to ``C2 / C2``, so the score
        is the luminance term alone (1 for two equal constant maps).

    References
    ----------
    Wang, Bovik, Sheikh, Simoncelli (2004), "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 13(4).
    """
    opts = SSIMOptions.of(options, **overrides)
    _check_maps(a, b, opts.win_size)
    height, width = a.shape[-2:]
    dtype = a.dtype if a.is_floating_point() else torch.float64
    window = ssim_window(opts.win_size, opts.gaussian, opts.sigma, dtype=dtype, device=a.device)
    lead = a.shape[:-2]
    a2 = a.reshape(-1, 1, height, width).to(dtype)
    b2 = b.reshape(-1, 1, height, width).to(dtype)
    # All five local moments in one separable, valid (unpadded) filter: the valid positions are
    # exactly the pixels scikit-image keeps after cropping its border.
    stack = torch.cat([a2, b2, a2 * a2, b2 * b2, a2 * b2], dim=1)
    ux, uy, uxx, uyy, uxy = _local_means(stack, window).unbind(dim=1)
    ssim_map = _ssim_map(ux, uy, uxx, uyy, uxy, *opts.constants())
    score = ssim_map.mean(dim=(-2, -1)).reshape(lead)
    if full:
        return score, ssim_map.reshape(*lead, *ssim_map.shape[-2:])
    return score


def _check_maps(a: torch.Tensor, b: torch.Tensor, win_size: int) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError("ssim_batch expects two torch.Tensor maps.")
    if a.shape != b.shape:
        raise ValueError(
            f"SSIM needs maps of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if a.dim() < 2:
        raise ValueError(f"SSIM needs maps of shape (..., H, W), got {tuple(a.shape)}.")
    height, width = a.shape[-2:]
    if min(height, width) == 1:
        raise ValueError(
            f"SSIM compares 2-D maps, but these maps have shape {tuple(a.shape)} with a length-1 "
            "spatial axis: 1-D data (time series, tabular features) is not supported by SSIM."
        )
    if win_size > min(height, width):
        raise ValueError(
            f"win_size={win_size} exceeds the map size {height}×{width}; pass a smaller odd "
            "win_size."
        )
    check_finite((a, b) if b is not a else (a,), name="SSIM maps")


def _local_means(stack: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable valid filtering of ``(..., H, W)`` by ``window`` along both image axes.

    Shifted slices accumulated in place (``add_`` with ``alpha``) instead of a grouped
    ``conv2d`` with the outer-product window: the same sums (bit-identical for float32 maps in
    our checks, within 1e-15 in float64), several times faster on CPUs for these thin kernels,
    and free of the multi-millisecond stalls that small convolutions show under thread
    contention.
    """
    taps = window.tolist()
    win_size = len(taps)
    height = stack.shape[-2] - win_size + 1
    rows = stack[..., 0:height, :] * taps[0]
    for k in range(1, win_size):
        rows.add_(stack[..., k : k + height, :], alpha=taps[k])
    width = stack.shape[-1] - win_size + 1
    out = rows[..., 0:width] * taps[0]
    for k in range(1, win_size):
        out.add_(rows[..., k : k + width], alpha=taps[k])
    return out


def _ssim_map(
    ux: torch.Tensor,
    uy: torch.Tensor,
    uxx: torch.Tensor,
    uyy: torch.Tensor,
    uxy: torch.Tensor,
    win_size: int,
    use_sample_covariance: bool,
    data_range: float,
    k1: float,
    k2: float,
) -> torch.Tensor:
    """The SSIM map of Wang et al. (2004) from the local means of x, y, x², y² and xy."""
    n_taps = win_size * win_size
    cov_norm = n_taps / (n_taps - 1) if use_sample_covariance and n_taps > 1 else 1.0
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
    denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return numerator / denominator


def reduce_channels(attribution: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """Reduce ``(N, C, H, W)`` attributions to ``(N, H, W)`` maps (``(N, H, W)`` passes through).

    ``how="max_abs"``: maximum absolute value over channels (gradient-like methods in Sixt et al.,
    2020); ``how="sum"``: signed channel sum (LRP, DTD, PatternAttribution, DeepLIFT); also
    ``"abs_sum"`` and ``"l2"`` (:data:`captum_ext.core.channels.CHANNEL_REDUCTIONS`). The old
    spelling ``"maxabs"`` works with a ``DeprecationWarning``.
    """
    how = channel_reduction(how, argument="how")
    if attribution.dim() == 3:
        return attribution
    if attribution.dim() != 4:
        raise ValueError(
            "Expected image attributions of shape (N, C, H, W) or maps (N, H, W), got "
            f"{tuple(attribution.shape)}; SSIM metrics only support 2-D images (1-D "
            "attributions of tabular data or time series are not supported)."
        )
    return reduce_over_channels(attribution, how)


def percentile_normalise(
    maps: torch.Tensor, low: float = 0.5, high: float = 99.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sixt et al.'s normalisation: the ``high`` percentile → 0, the ``low`` percentile → 1,
    clipped.

    Parameters
    ----------
    maps : torch.Tensor
        ``(N, H, W)`` maps.
    low, high : float
        Percentiles in [0, 100] with ``low < high``.

    Returns
    -------
    normalised : torch.Tensor
        ``(N, H, W)`` maps in [0, 1].
    constant : torch.Tensor
        ``(N,)`` bool: maps whose two percentiles coincide (constant or almost constant maps,
        e.g. all zeros). They normalise to a constant 0.5 map, so SSIM stays defined (see
        :func:`ssim_batch`) instead of dividing by zero.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"need 0 ≤ low < high ≤ 100, got low={low}, high={high}.")
    flat = maps.reshape(maps.shape[0], -1)
    q = torch.tensor([low / 100.0, high / 100.0], dtype=flat.dtype, device=flat.device)
    p_low, p_high = torch.quantile(flat, q, dim=1, keepdim=True).unbind(0)
    spread = p_high - p_low
    constant = spread.squeeze(1) <= torch.finfo(flat.dtype).tiny
    safe = torch.where(constant.unsqueeze(1), torch.ones_like(spread), spread)
    normalised = ((p_high - flat) / safe).clamp(0.0, 1.0)
    normalised = torch.where(constant.unsqueeze(1), torch.full_like(flat, 0.5), normalised)
    return normalised.reshape(maps.shape), constant


def flip_invariant_ssim(
    a: torch.Tensor, b: torch.Tensor, sign_invariant: bool = True, **ssim_kwargs: object
) -> torch.Tensor:
    """``max(SSIM(a, b), SSIM(a, flip(b)))`` for maps already normalised into [0, 1].

    For Sixt et al.'s normalisation, normalising ``-b`` gives exactly ``1 - n(b)`` (the percentile
    mapping is reversed and clipping is symmetric), so the flip is taken on normalised maps.
    The local moments of ``a`` are filtered once for both orientations
    (:class:`ReferenceSSIM`); the scores equal two :func:`ssim_batch` calls.
    """
    return ReferenceSSIM(a, sign_invariant, **ssim_kwargs)(b)  # type: ignore[arg-type]


class ReferenceSSIM:
    """(Sign-invariant) SSIM of many maps against one fixed reference map batch.

    The reference's local means of ``a`` and ``a²`` are filtered once at construction; each
    call filters only ``b``, ``b²`` and ``ab`` (and the flipped ``1 - b`` terms when
    ``sign_invariant``). The scores are those of :func:`ssim_batch` /
    :func:`flip_invariant_ssim`, computed with the same operations.

    Parameters
    ----------
    reference : torch.Tensor
        ``(..., H, W)`` maps, normalised into [0, 1] when ``sign_invariant``.
    sign_invariant : bool
        Score ``max(SSIM(a, b), SSIM(a, 1 - b))`` instead of ``SSIM(a, b)``.
    options, **overrides
        :class:`SSIMOptions`, or its fields by name.
    """

    def __init__(
        self,
        reference: torch.Tensor,
        sign_invariant: bool = True,
        options: SSIMOptions | None = None,
        **overrides: Any,
    ) -> None:
        opts = SSIMOptions.of(options, **overrides)
        _check_maps(reference, reference, opts.win_size)
        self.reference = reference
        self.sign_invariant = sign_invariant
        self._options = opts.constants()
        self.dtype = reference.dtype if reference.is_floating_point() else torch.float64
        self.window = ssim_window(
            opts.win_size, opts.gaussian, opts.sigma, dtype=self.dtype, device=reference.device
        )
        height, width = reference.shape[-2:]
        self._a = reference.reshape(-1, 1, height, width).to(self.dtype)
        self._ux, self._uxx = _local_means(
            torch.cat([self._a, self._a * self._a], dim=1), self.window
        ).unbind(dim=1)

    def _score(self, b: torch.Tensor) -> torch.Tensor:
        b2 = b.reshape(-1, *self._a.shape).to(self.dtype)
        stack = torch.cat([b2, b2 * b2, self._a * b2], dim=-3)
        uy, uyy, uxy = _local_means(stack, self.window).unbind(dim=-3)
        ssim_map = _ssim_map(self._ux, uy, self._uxx, uyy, uxy, *self._options)
        return ssim_map.mean(dim=(-2, -1)).reshape(b.shape[:-2])

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        """SSIM of ``b`` against the reference, per map.

        ``b`` has the reference's shape, optionally with extra leading dimensions (e.g. one per
        randomised layer), which are broadcast against the reference.
        """
        if not isinstance(b, torch.Tensor):
            raise TypeError("ssim_batch expects two torch.Tensor maps.")
        ref_dims = self.reference.dim()
        if b.dim() < ref_dims or b.shape[b.dim() - ref_dims :] != self.reference.shape:
            raise ValueError(
                f"SSIM needs maps of equal shape, got {tuple(self.reference.shape)} and "
                f"{tuple(b.shape)}."
            )
        check_finite((b,), name="SSIM maps")
        score = self._score(b)
        if not self.sign_invariant:
            return score
        return torch.maximum(score, self._score(1.0 - b))
