"""Spectral complexity of explanations (seed 002, "a unifying spectral framework").

An explanation map is reduced over channels, optionally rank-normalised, transformed with a
2-D FFT (batched, :mod:`torch.fft`) and its power spectrum is averaged over rings of equal
normalised frequency. Two scalars summarise the radial spectrum ``P_k`` at frequencies ``f_k``:

* the expected normalised frequency ``Σ f_k P_k / Σ P_k`` (white noise ≈ 0.5, smooth blobs ≈ 0),
* the share of spectral mass above a cut-off frequency.

Lower means smoother. Seed 002 uses this view to show that smoothing methods (SmoothGrad,
GradCAM) move explanation energy to low frequencies; its exact normalisation is not published
in the material available to this project, so the choices below (mean removed, frequency
normalised by the largest radius of the grid, ring *average*) are this project's and are stated
where they are made.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection

from quantus_metrics._base import QuantusDefaults, finish_plot, plot_axes

__all__ = [
    "SpectralComplexity",
    "SpectralResult",
    "radial_spectrum",
    "rank_normalise",
    "reduce_channels",
    "spectral_complexity",
]

_REDUCTIONS = ("sum", "abs_sum", "maxabs")
_SCORES = ("expected_frequency", "high_frequency_share")
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
    reduce : {"sum", "abs_sum", "maxabs"}
        Channel reduction: signed sum (default, methods.md §9), sum of magnitudes, or largest
        magnitude.
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
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}.")
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
    if reduce == "sum":
        return maps.sum(1)
    if reduce == "abs_sum":
        return maps.abs().sum(1)
    return maps.abs().amax(1)


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
    reduce : {"sum", "abs_sum", "maxabs"}
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


class SpectralComplexity(QuantusDefaults):
    """Quantus metric: expected normalised frequency (or high-frequency share) of each map.

    Implements the spectral view of seed 002 (methods.md §9): channel-reduced, optionally
    rank-normalised map → 2-D power spectrum (``torch.fft``, batched) → ring average → score.
    ``score_direction`` is ``LOWER``: lower means smoother (which seed 002 shows can come at a
    cost in faithfulness, so "better" is in the smoothness sense only).

    Parameters
    ----------
    cutoff : float
        Normalised frequency separating low from high frequencies (default 0.5).
    score : {"expected_frequency", "high_frequency_share"}
        Which summary each sample's score is.
    reduce, rank, n_bins, min_size
        See :func:`spectral_complexity`.
    **kwargs
        The ``quantus.Metric`` base arguments (``abs``, ``normalise``, ``normalise_func``,
        ``normalise_func_kwargs``, ``return_aggregate``, ``aggregate_func``,
        ``default_plot_func``, ``disable_warnings``, ``display_progressbar``).

    Attributes
    ----------
    spectra : list of SpectralResult
        One entry per evaluated batch of the last call (for plotting the radial spectra).

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
    data_applicability = {DataType.IMAGE}
    model_applicability = {ModelType.TORCH, ModelType.TF}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.COMPLEXITY

    def __init__(
        self,
        cutoff: float = 0.5,
        score: str = "expected_frequency",
        reduce: str = "sum",
        rank: bool = True,
        n_bins: int | None = None,
        min_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if score not in _SCORES:
            raise ValueError(f"score must be one of {_SCORES}, got {score!r}.")
        if reduce not in _REDUCTIONS:
            raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}.")
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not 0 < cutoff < 1:
            raise ValueError(f"cutoff must be a normalised frequency in (0, 1), got {cutoff!r}.")
        self.cutoff = float(cutoff)
        self.score = score
        self.reduce = reduce
        self.rank = rank
        self.n_bins = n_bins
        self.min_size = min_size
        self.spectra: list[SpectralResult] = []

    def __call__(self, model: Any, x_batch: np.ndarray, y_batch: np.ndarray, **kwargs: Any) -> Any:
        """Score ``a_batch`` (or the explanations of ``explain_func``); see ``quantus.Metric``."""
        self.spectra = []
        return super().__call__(model, x_batch, y_batch, **kwargs)

    def compute(self, a_batch: np.ndarray | torch.Tensor) -> SpectralResult:
        """The full :class:`SpectralResult` of a batch of explanations (no Quantus plumbing)."""
        maps = torch.as_tensor(a_batch)
        return spectral_complexity(
            maps, self.cutoff, self.reduce, self.rank, self.n_bins, self.min_size
        )

    def evaluate_batch(self, a_batch: np.ndarray, **kwargs: Any) -> list[float]:
        """One score per explanation of the batch."""
        result = self.compute(a_batch)
        self.spectra.append(result)
        values = getattr(result, self.score)
        return [float(v) for v in values.cpu()]

    def plot(
        self,
        ax: Any = None,
        label: str | None = None,
        path_to_save: str | None = None,
        **line_kwargs: Any,
    ) -> Any:
        """Mean radially averaged power spectrum of the last call's maps (log power)."""
        if not self.spectra:
            raise ValueError("Nothing to plot: call the metric first.")
        ax = plot_axes(ax)
        power = torch.cat([r.power for r in self.spectra]).double().cpu()
        frequencies = self.spectra[0].frequencies.double().cpu()
        ax.plot(frequencies.numpy(), power.mean(0).numpy(), marker=".", label=label, **line_kwargs)
        ax.axvline(self.cutoff, color="grey", linestyle=":")
        ax.set_yscale("log")
        ax.set_xlabel("normalised frequency (cut-off dotted)")
        ax.set_ylabel("share of power")
        return finish_plot(ax, label, path_to_save)
