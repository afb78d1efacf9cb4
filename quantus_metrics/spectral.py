"""Spectral complexity of explanations (Mehrpanah, Gamba, Smith and Azizpour, ICCV 2025).

Two conventions live here, behind one metric class, :class:`ExpectedFrequency`:

``convention="integer_rings"`` (the default of :class:`ExpectedFrequency`; formerly ``"paper"``)
    The Expected Frequency (EF) of Mehrpanah et al. (2025) as their public code computes it
    (their eq. 5): channel-summed map, rank-normalised (average ranks ``1..N`` divided by ``N``),
    power spectrum ``|FFT2|²`` shifted so the zero frequency sits at ``(H // 2, W // 2)``,
    averaged over rings of equal *integer* radius ``r = ⌊√(Δy² + Δx²)⌋`` (``K`` rings, DC
    included), ring frequencies ``f_k = k / (K − 1)`` and
    ``EF = (1/K) Σ_k f_k P_k / Σ_j P_j``. See :func:`expected_frequency` and ``docs/spectral.md``.
``convention="normalised_rings"`` (the default of the older name :class:`SpectralComplexity`;
    formerly ``"project"``)
    This package's earlier normalisation, described below.

The normalised-rings convention: an explanation map is reduced over channels, optionally
rank-normalised, transformed with a 2-D FFT (batched, :mod:`torch.fft`) and its power spectrum
is averaged over rings of equal normalised frequency. Two scalars summarise the radial
spectrum ``P_k`` at frequencies ``f_k``:

* the expected normalised frequency ``Σ f_k P_k / Σ P_k`` (white noise ≈ 0.5, smooth blobs ≈ 0),
* the share of spectral mass above a cut-off frequency.

Lower means smoother. The choices of this convention (mean removed, frequency normalised by
the largest radius of the grid, equal-width rings) are this package's own, made before the paper's
code was consulted; they rank maps like the paper's EF but give other numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection

from captum_ext.core.channels import channel_reduction, reduce_over_channels
from captum_ext.core.deprecation import renamed_value
from quantus_metrics._base import QuantusDefaults, ResultPlot

__all__ = [
    "ExpectedFrequency",
    "SpectralComplexity",
    "SpectralResult",
    "expected_frequency",
    "paper_radial_profile",
    "paper_rank_normalise",
    "radial_spectrum",
    "rank_normalise",
    "reduce_channels",
    "spectral_complexity",
]

REDUCTIONS = ("sum", "abs_sum", "max_abs")
"""Channel reductions of the spectral metrics (``"maxabs"`` still works, deprecated)."""


def check_reduction(reduce: str) -> str:
    """The canonical spelling of ``reduce``; ``ValueError`` unless it is in :data:`REDUCTIONS`.

    The deprecated spelling ``"maxabs"`` is accepted with a ``DeprecationWarning``.
    """
    return channel_reduction(reduce, REDUCTIONS, "reduce")


_SCORES = ("expected_frequency", "high_frequency_share")
_CONVENTIONS = ("integer_rings", "normalised_rings")
_OLD_CONVENTIONS = {"paper": "integer_rings", "project": "normalised_rings"}
# quantus.Metric.__call__ has no defaults; quantus.evaluate relies on each metric providing them.


@dataclass
class SpectralResult:
    """Radial power spectra of a batch of maps and their two summary scores.

    Attributes
    ----------
    frequencies : torch.Tensor
        ``(K,)`` mean normalised frequency of each ring, in [0, 1].
    power : torch.Tensor
        ``(B, K)`` ring-averaged power, each row normalised to sum to 1.
    expected_frequency : torch.Tensor
        ``(B,)`` ``Σ f_k P_k``.
    high_frequency_share : torch.Tensor
        ``(B,)`` ``Σ_{f_k > cutoff} P_k``.
    """

    frequencies: torch.Tensor
    power: torch.Tensor
    expected_frequency: torch.Tensor
    high_frequency_share: torch.Tensor


def reduce_channels(maps: torch.Tensor, reduce: str = "sum", min_size: int = 8) -> torch.Tensor:
    """Bring explanations to ``(B, H, W)``.

    Parameters
    ----------
    maps : torch.Tensor
        ``(B, C, H, W)`` or ``(B, H, W)`` explanations.
    reduce : {"sum", "abs_sum", "max_abs"}
        Channel reduction: signed sum (default, as in Mehrpanah et al. 2025), sum of
        magnitudes, or largest magnitude.
    min_size : int
        Smallest height/width accepted; a smaller grid has too few frequencies for a spectrum.

    Raises
    ------
    ValueError
        For non-image explanations (fewer than two spatial axes) or maps smaller than
        ``min_size``.
    """
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}.")
    reduce = check_reduction(reduce)
    if maps.dim() not in (3, 4):
        raise ValueError(
            f"spectral complexity needs image explanations (B, C, H, W) or (B, H, W); got shape "
            f"{tuple(maps.shape)}. Tabular or time-series explanations have no 2-D spectrum."
        )
    height, width = maps.shape[-2:]
    if min(height, width) < min_size:
        raise ValueError(
            f"maps of {height}×{width} pixels are smaller than the FFT needs (min_size="
            f"{min_size}); upsample the explanations or lower min_size."
        )
    if maps.dim() == 3:
        return maps
    return reduce_over_channels(maps, reduce)


def rank_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Replace every value of each ``(H, W)`` map by its rank in [0, 1]; ties share the mean rank.

    Rank normalisation makes spectra comparable across methods whose values have very different
    scales and tails (a few huge gradient entries would otherwise dominate the spectrum).
    """
    flat = maps.flatten(1)
    ordered = flat.sort(dim=1).values
    low = torch.searchsorted(ordered, flat, right=False)
    high = torch.searchsorted(ordered, flat, right=True)
    ranks = (low + high - 1).to(maps.dtype) / 2  # mean 0-based rank of the tie group
    return (ranks / max(flat.shape[1] - 1, 1)).view_as(maps)


def _ring_index(height: int, width: int, n_bins: int, device: torch.device, dtype: torch.dtype):
    fy = torch.fft.fftfreq(height, device=device, dtype=dtype)
    fx = torch.fft.fftfreq(width, device=device, dtype=dtype)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).flatten()
    # Normalise by the largest radius on the grid so f spans [0, 1] and corners are kept.
    freq = radius / radius.max()
    index = torch.clamp((freq * n_bins).long(), max=n_bins - 1)
    return freq, index


def radial_spectrum(
    maps: torch.Tensor, n_bins: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ring-averaged 2-D power spectrum of ``(B, H, W)`` maps.

    Each map's mean is removed first (the DC term says nothing about spatial structure and would
    dominate every positive map). Power is averaged over the grid frequencies falling in each of
    ``n_bins`` equal-width rings of normalised frequency; rings without any grid frequency are
    dropped.

    Returns
    -------
    frequencies : torch.Tensor
        ``(K,)`` mean normalised frequency of the grid points in each ring.
    power : torch.Tensor
        ``(B, K)`` mean power per ring (not normalised).
    """
    batch, height, width = maps.shape
    n_bins = n_bins if n_bins is not None else min(height, width) // 2
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer ≥ 2, got {n_bins!r}.")
    real = maps if maps.is_floating_point() else maps.double()
    centred = real - real.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().square().flatten(1)
    freq, index = _ring_index(height, width, n_bins, maps.device, real.dtype)
    # One matrix product bins the whole batch at once.
    onehot = torch.nn.functional.one_hot(index, n_bins).to(real.dtype)
    counts = onehot.sum(0)
    keep = counts > 0
    ring_power = (power @ onehot)[:, keep] / counts[keep]
    ring_freq = (freq @ onehot)[keep] / counts[keep]
    return ring_freq, ring_power


def spectral_complexity(
    maps: torch.Tensor,
    cutoff: float = 0.5,
    reduce: str = "sum",
    rank: bool = True,
    n_bins: int | None = None,
    min_size: int = 8,
) -> SpectralResult:
    """Spectral complexity of a batch of explanations (lower = smoother).

    Parameters
    ----------
    maps : torch.Tensor
        ``(B, C, H, W)`` or ``(B, H, W)`` explanations.
    cutoff : float
        Normalised frequency in (0, 1) above which energy counts as high-frequency.
    reduce : {"sum", "abs_sum", "max_abs"}
        Channel reduction (see :func:`reduce_channels`).
    rank : bool
        Rank-normalise each map before the FFT (see :func:`rank_normalise`).
    n_bins : int, optional
        Number of frequency rings (default ``min(H, W) // 2``).
    min_size : int
        Smallest accepted height/width.

    Returns
    -------
    SpectralResult
        Radial spectra and the scores; maps without any variation get NaN scores and a warning.
    """
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be a normalised frequency in (0, 1), got {cutoff!r}.")
    if maps.dtype in (torch.float16, torch.bfloat16):
        # Half-precision FFTs are unsupported on CPUs (and limited to powers of two on GPUs);
        # the maps are scored in float32.
        maps = maps.float()
    reduced = reduce_channels(maps, reduce, min_size)
    if not torch.isfinite(reduced).all():
        raise ValueError("maps contain NaN or Inf; spectral complexity needs finite explanations.")
    if rank:
        reduced = rank_normalise(reduced)
    freqs, power = radial_spectrum(reduced, n_bins)
    total = power.sum(1, keepdim=True)
    flat = total.squeeze(1) <= 0
    if flat.any():
        warnings.warn(
            f"{int(flat.sum())} map(s) are constant and have no spectrum; their scores are NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    share = power / total.masked_fill(total <= 0, float("nan"))
    return SpectralResult(
        frequencies=freqs,
        power=share,
        expected_frequency=share @ freqs,
        high_frequency_share=share[:, freqs > cutoff].sum(1),
    )


def paper_rank_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Average ranks ``1..N`` of each ``(H, W)`` map divided by ``N`` (Mehrpanah et al.'s code).

    Unlike :func:`rank_normalise` the values lie in ``(0, 1]`` and are not centred; the constant
    part ends up in the zero-frequency ring, which the paper's EF keeps in its denominator.
    """
    flat = maps.flatten(1)
    ordered = flat.sort(dim=1).values
    low = torch.searchsorted(ordered, flat, right=False)
    high = torch.searchsorted(ordered, flat, right=True)
    ranks = (low + high + 1).to(maps.dtype) / 2  # mean 1-based rank of the tie group
    return (ranks / flat.shape[1]).view_as(maps)


def _integer_rings(height: int, width: int, device: torch.device) -> torch.Tensor:
    # Radius to the shifted zero frequency (H // 2, W // 2), truncated like an int cast.
    yy = torch.arange(height, device=device, dtype=torch.float64) - height // 2
    xx = torch.arange(width, device=device, dtype=torch.float64) - width // 2
    radius = torch.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    return radius.long().flatten()


def paper_radial_profile(maps: torch.Tensor) -> torch.Tensor:
    """Ring-averaged power of ``(B, H, W)`` maps over integer radii (zero frequency included).

    Returns ``(B, K)`` with ``K = ⌊r_max⌋ + 1``; ring ``k`` averages ``|FFT2|²`` over the grid
    frequencies whose shifted distance to the centre truncates to ``k``.
    """
    real = maps if maps.is_floating_point() else maps.double()
    power = torch.fft.fftshift(torch.fft.fft2(real).abs().square(), dim=(-2, -1)).flatten(1)
    ring = _integer_rings(real.shape[-2], real.shape[-1], real.device)
    n_rings = int(ring.max()) + 1
    onehot = torch.nn.functional.one_hot(ring, n_rings).to(real.dtype)
    counts = onehot.sum(0)
    if bool((counts == 0).any()):  # cannot happen on a full grid; guards the division
        raise RuntimeError("an integer ring without grid frequencies; report this as a bug.")
    return (power @ onehot) / counts


def expected_frequency(
    maps: torch.Tensor, rank: bool = True, reduce: str = "sum", min_size: int = 8
) -> torch.Tensor:
    """Expected Frequency (EF) of Mehrpanah et al. (2025), one value per map.

    ``EF = (1/K) Σ_k f_k P_k / Σ_j P_j`` with ``P`` the integer-ring profile of
    :func:`paper_radial_profile` and ``f_k = k / (K − 1)``. The ``1/K`` factor is the mean the
    authors' code takes over rings; it makes EF depend on the grid size, so compare EF values
    only between maps of the same size (the paper does).

    Parameters
    ----------
    maps : torch.Tensor
        ``(B, C, H, W)`` or ``(B, H, W)`` explanations.
    rank : bool
        Rank-normalise each channel-reduced map first (:func:`paper_rank_normalise`), as the
        paper does; ``False`` measures the raw map (used by the sinusoid oracle).
    reduce : {"sum", "abs_sum", "max_abs"}
        Channel reduction; the paper sums channels.
    min_size : int
        Smallest accepted height/width.

    Returns
    -------
    torch.Tensor
        ``(B,)`` EF values; a map with no power at all gets NaN and a warning.
    """
    reduced = reduce_channels(maps, reduce, min_size)
    if not torch.isfinite(reduced).all():
        raise ValueError("maps contain NaN or Inf; the expected frequency needs finite maps.")
    if rank:
        reduced = paper_rank_normalise(reduced)
    profile = paper_radial_profile(reduced)
    n_rings = profile.shape[1]
    freqs = torch.linspace(0, 1, n_rings, dtype=profile.dtype, device=profile.device)
    total = profile.sum(1)
    empty = total <= 0
    if empty.any():
        warnings.warn(
            f"{int(empty.sum())} map(s) are all zero and have no spectrum; their EF is NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    return (profile @ freqs) / (n_rings * total.masked_fill(empty, float("nan")))


class ExpectedFrequency(ResultPlot, QuantusDefaults):
    """Quantus metric: Expected Frequency of each explanation (lower = smoother).

    With ``convention="integer_rings"`` (default) the score is the EF of Mehrpanah et al. (2025),
    see :func:`expected_frequency`; with ``convention="normalised_rings"`` it is this package's
    earlier
    ring-averaged expected normalised frequency or high-frequency share
    (:func:`spectral_complexity`). ``score_direction`` is ``LOWER``: lower means smoother, which
    Mehrpanah et al. show can cost faithfulness, so "better" is meant in the smoothness sense only.

    Parameters
    ----------
    convention : {"integer_rings", "normalised_rings"}
        Which definition (see the module docstring); the older names ``"paper"`` and
        ``"project"`` still work, with a ``DeprecationWarning``.
    rank : bool
        Rank-normalise maps first (both conventions do by default).
    reduce : {"sum", "abs_sum", "max_abs"}
        Channel reduction (sum in the paper).
    cutoff, score, n_bins
        Options of the normalised-rings convention only (see :func:`spectral_complexity`);
        passing a non-default value with ``convention="integer_rings"`` raises.
    min_size : int
        Smallest accepted height/width.
    **kwargs
        The ``quantus.Metric`` base arguments (``abs``, ``normalise``, ``normalise_func``,
        ``normalise_func_kwargs``, ``return_aggregate``, ``aggregate_func``,
        ``default_plot_func``, ``disable_warnings``, ``display_progressbar``).

    Attributes
    ----------
    spectra : list
        Per evaluated batch of the last call: a :class:`SpectralResult` (normalised rings) or
        the ``(B, K)`` integer-ring profiles (integer rings).

    Examples
    --------
    >>> import numpy as np
    >>> metric = ExpectedFrequency(disable_warnings=True)
    >>> noise = np.random.default_rng(0).normal(size=(2, 1, 32, 32))
    >>> scores = metric(model=None, x_batch=noise, y_batch=np.zeros(2, int), a_batch=noise)
    >>> len(scores)
    2
    """

    name = "Expected Frequency"
    data_applicability = {DataType.IMAGE}
    model_applicability = {ModelType.TORCH, ModelType.TF}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.COMPLEXITY
    _default_convention = "integer_rings"

    def __init__(
        self,
        convention: str | None = None,
        cutoff: float = 0.5,
        score: str = "expected_frequency",
        reduce: str = "sum",
        rank: bool = True,
        n_bins: int | None = None,
        min_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        convention = self._default_convention if convention is None else convention
        convention = renamed_value(convention, _OLD_CONVENTIONS, "convention")
        if convention not in _CONVENTIONS:
            raise ValueError(f"convention must be one of {_CONVENTIONS}, got {convention!r}.")
        if score not in _SCORES:
            raise ValueError(f"score must be one of {_SCORES}, got {score!r}.")
        reduce = check_reduction(reduce)
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not 0 < cutoff < 1:
            raise ValueError(f"cutoff must be a normalised frequency in (0, 1), got {cutoff!r}.")
        if convention == "integer_rings" and (
            score != "expected_frequency" or n_bins is not None or cutoff != 0.5
        ):
            raise ValueError(
                "score, cutoff and n_bins belong to convention='normalised_rings' (formerly "
                "convention='project'); the EF of Mehrpanah et al. has integer rings and no "
                "cut-off. Pass convention='normalised_rings' to use them."
            )
        self.convention = convention
        self.cutoff = float(cutoff)
        self.score = score
        self.reduce = reduce
        self.rank = rank
        self.n_bins = n_bins
        self.min_size = min_size
        self.spectra: list[Any] = []

    def __call__(self, model: Any, x_batch: np.ndarray, y_batch: np.ndarray, **kwargs: Any) -> Any:
        """Score ``a_batch`` (or the explanations of ``explain_func``); see ``quantus.Metric``."""
        self.spectra = []
        return super().__call__(model, x_batch, y_batch, **kwargs)

    def compute(self, a_batch: np.ndarray | torch.Tensor) -> SpectralResult:
        """Normalised rings: the full :class:`SpectralResult` of a batch (no Quantus plumbing)."""
        maps = torch.as_tensor(a_batch)
        return spectral_complexity(
            maps, self.cutoff, self.reduce, self.rank, self.n_bins, self.min_size
        )

    def scores(self, a_batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(B,)`` scores of a batch of explanations under the chosen convention."""
        maps = torch.as_tensor(a_batch)
        if self.convention == "integer_rings":
            values = expected_frequency(maps, self.rank, self.reduce, self.min_size)
            reduced = reduce_channels(maps, self.reduce, self.min_size)
            self.spectra.append(
                paper_radial_profile(paper_rank_normalise(reduced) if self.rank else reduced)
            )
            return values
        result = self.compute(maps)
        self.spectra.append(result)
        return getattr(result, self.score)

    def evaluate_batch(self, a_batch: np.ndarray, **kwargs: Any) -> list[float]:
        """One score per explanation of the batch."""
        return [float(v) for v in self.scores(a_batch).cpu()]

    def has_results(self) -> bool:
        return bool(self.spectra)

    def draw(self, ax: Any, label: str | None, **style: Any) -> None:
        """Mean radial power profile of the last call's maps (log power).

        Normalised rings: normalised frequency with the cut-off dotted; integer rings:
        integer frequency rings, each profile normalised to unit total power first.
        """
        if self.convention == "integer_rings":
            power = torch.cat([p.double().cpu() for p in self.spectra])
            power = power / power.sum(1, keepdim=True).clamp_min(1e-300)
            rings = np.arange(power.shape[1])
            ax.plot(rings, power.mean(0).numpy(), marker=".", label=label, **style)
            ax.set_xlabel("frequency ring k")
        else:
            power = torch.cat([r.power for r in self.spectra]).double().cpu()
            frequencies = self.spectra[0].frequencies.double().cpu()
            ax.plot(frequencies.numpy(), power.mean(0).numpy(), marker=".", label=label, **style)
            ax.axvline(self.cutoff, color="grey", linestyle=":")
            ax.set_xlabel("normalised frequency (cut-off dotted)")
        ax.set_yscale("log")
        ax.set_ylabel("share of power")


class SpectralComplexity(ExpectedFrequency):
    """The earlier name of :class:`ExpectedFrequency`, defaulting to the normalised rings.

    Kept so existing code keeps its numbers; new code should use
    ``ExpectedFrequency(convention="integer_rings")`` (Mehrpanah et al. 2025) or
    ``ExpectedFrequency(convention="normalised_rings")``.

    Examples
    --------
    >>> import numpy as np
    >>> metric = SpectralComplexity(disable_warnings=True)
    >>> noise = np.random.default_rng(0).normal(size=(2, 1, 32, 32))
    >>> scores = metric(model=None, x_batch=noise, y_batch=np.zeros(2, int), a_batch=noise)
    >>> bool(0.4 < scores[0] < 0.6)
    True
    """

    name = "Spectral Complexity"
    _default_convention = "normalised_rings"
