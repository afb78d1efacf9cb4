"""The channel reductions that turn ``(N, C, ...)`` attributions into one map per sample.

One spelling for every caller (visualisation, the SSIM metrics, the spectral metrics):
``"sum"`` (signed; relevance of LRP, DeepLift or PatternAttribution adds up over channels),
``"abs_sum"``, ``"max_abs"`` (largest magnitude; gradient maps, Simonyan et al. 2014) and
``"l2"`` (Euclidean norm over channels). The older spelling ``"maxabs"`` is still accepted
with a ``DeprecationWarning``.
"""

from __future__ import annotations

import torch

from captum_ext.core.deprecation import renamed_value

__all__ = ["CHANNEL_REDUCTIONS", "channel_reduction", "reduce_over_channels"]

CHANNEL_REDUCTIONS = ("sum", "abs_sum", "max_abs", "l2")
"""Every channel reduction, by its one accepted spelling."""

_DEPRECATED = {"maxabs": "max_abs"}


def channel_reduction(
    how: str, allowed: tuple[str, ...] = CHANNEL_REDUCTIONS, argument: str = "reduce"
) -> str:
    """The canonical name of the reduction ``how``, refusing names outside ``allowed``.

    Parameters
    ----------
    how : str
        A name from ``allowed`` or a deprecated spelling of one (``"maxabs"``, which warns).
    allowed : tuple of str
        The reductions the caller supports (a subset of :data:`CHANNEL_REDUCTIONS`).
    argument : str
        The caller's parameter name, used in the messages.

    Raises
    ------
    ValueError
        For a name the caller does not support.
    """
    how = renamed_value(how, _DEPRECATED, argument)
    if how not in allowed:
        raise ValueError(f"{argument} must be one of {allowed}, got {how!r}.")
    return how


def reduce_over_channels(
    x: torch.Tensor, how: str = "sum", dim: int = 1, keepdim: bool = False
) -> torch.Tensor:
    """Reduce the channel axis ``dim`` of ``x`` with the reduction ``how`` (validated here)."""
    how = channel_reduction(how)
    if how == "sum":
        return x.sum(dim, keepdim=keepdim)
    if how == "abs_sum":
        return x.abs().sum(dim, keepdim=keepdim)
    if how == "max_abs":
        return x.abs().amax(dim, keepdim=keepdim)
    return x.square().sum(dim, keepdim=keepdim).sqrt()
