"""AdaptGrad: gradient smoothing with data-adapted, per-feature Gaussian noise.

Zhou et al., "Rethinking the Principle of Gradient Smooth Methods in Model
Explanation", 2025. The noise statistics (σ_i, κ,
inherent noise) live in :mod:`captum_ext.noise.statistics`, the seeded tunnel in
:mod:`captum_ext.noise.tunnel`; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from captum._utils.common import _format_tensor_into_tuples, _is_tuple
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor

from captum_ext.core.isolation import isolated_call
from captum_ext.core.randomness import make_generator
from captum_ext.noise.statistics import (
    Bounds,
    InherentNoise,
    KappaRule,
    _adapt,
    broadcast_bounds,
    inherent_noise,
    kappa_value,
    noise_std,
    smoothgrad_std,
)
from captum_ext.noise.tunnel import SeededNoiseTunnel, TunnelOptions

__all__ = [
    "AdaptGrad",
    "Bounds",
    "InherentNoise",
    "SeededNoiseTunnel",
    "broadcast_bounds",
    "inherent_noise",
    "kappa_value",
    "make_generator",
    "noise_std",
    "smoothgrad_std",
]


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
    """AdaptGrad (Zhou et al., 2025): a ``NoiseTunnel`` whose noise σ_i adapts to the data range.

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
    kappa : {"two_sided", "as_printed"}
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
        kappa: KappaRule = "two_sided",
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
            The random stream, at most one of them (:mod:`captum_ext.core.randomness`); with
            neither, a private generator seeded with 0.
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
        options = TunnelOptions(
            nt_type, nt_samples, nt_samples_batch_size, draw_baseline_from_distrib, generator, seed
        )
        return self._run(inputs, formatted, tuple(sigmas), options, kwargs)

    def noise_std(self, inputs: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        """The σ tensors this AdaptGrad would use for ``inputs`` (same structure as inputs)."""
        formatted = _format_tensor_into_tuples(inputs)
        pairs = _bounds_per_input(self.bounds, len(formatted))
        sigmas = tuple(
            noise_std(x, pair, self.confidence, self.kappa, clamp=self.clamp)
            for x, pair in zip(formatted, pairs)
        )
        return sigmas if _is_tuple(inputs) else sigmas[0]
