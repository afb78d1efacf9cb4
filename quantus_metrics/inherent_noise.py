"""Inherent noise of gradient smoothing (Zhou et al., 2025, eq. 9/10, Figure 3) as a Quantus metric.

SmoothGrad-type explainers average gradients at ``x + ε``; every draw that leaves the data range
``[x_min, x_max]`` probes the model where it was never trained. Zhou et al. (2025) call the
probability of
such draws the *inherent noise* ``A_i = 1 − P(x_min ≤ x_i + ε_i ≤ x_max)`` and reports, on
ImageNet-normalised data with SmoothGrad α = 0.2 and N = 50 draws, 12.62 % of pixels and ~100 %
of images affected. This metric reports, per sample, the analytic per-feature probability (from
:func:`captum_ext.noise.inherent_noise`, the project's single implementation of eq. 9/10), its
mean, the image-level probability ``1 − Π_i (1 − A_i)`` that at least one feature leaves the
range in one draw, and the empirical fractions over the draws the explainer actually uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection
from tqdm.auto import tqdm

from captum_ext.core.modules import unwrap_model
from captum_ext.core.randomness import keyed_normal, make_generator, sample_generators
from captum_ext.core.validation import check_positive_int
from captum_ext.noise.statistics import (
    Bounds,
    broadcast_bounds,
    broadcast_sigma,
    inherent_noise,
    noise_std,
    smoothgrad_std,
)
from quantus_metrics._base import QuantusDefaults, ResultPlot

__all__ = ["InherentNoise", "InherentNoiseResult", "MethodNoise", "method_noise", "noise_sigma"]

_SCORES = ("pixel_level", "image_level", "empirical_pixel_level", "empirical_image_level")


@dataclass
class InherentNoiseResult:
    """Inherent noise of one batch (all tensors have the batch as first axis).

    Attributes
    ----------
    per_feature : torch.Tensor
        Analytic A_i (eq. 9/10), shape of the inputs.
    pixel_level : torch.Tensor
        ``(B,)`` mean of A_i over the features of each sample.
    image_level : torch.Tensor
        ``(B,)`` probability that one draw has at least one feature out of bounds,
        ``1 − Π_i (1 − A_i)`` (draws of different features are independent).
    empirical_pixel_level : torch.Tensor
        ``(B,)`` fraction of out-of-bounds features over the ``n_draws`` draws.
    empirical_image_level : torch.Tensor
        ``(B,)`` fraction of draws with at least one out-of-bounds feature.
    n_draws : int
        Number of draws behind the empirical fractions.
    """

    per_feature: torch.Tensor
    pixel_level: torch.Tensor
    image_level: torch.Tensor
    empirical_pixel_level: torch.Tensor
    empirical_image_level: torch.Tensor
    n_draws: int


def noise_sigma(
    x: torch.Tensor,
    bounds: Bounds,
    noise: str | float | torch.Tensor = "smoothgrad",
    alpha: float = 0.2,
    confidence: float = 0.95,
    kappa: str = "two_sided",
) -> torch.Tensor:
    """σ of the explainer's Gaussian noise for ``x``, broadcast to ``x``'s shape.

    ``noise="smoothgrad"``: σ = α·(x_max − x_min) (eq. 6); ``"adaptgrad"``: per-feature σ_i of
    eq. 13 with confidence ``c``; a float or tensor: that σ (absolute, broadcastable to ``x``).

    Raises
    ------
    ValueError
        If any input lies outside ``bounds`` (the metric would be meaningless), σ < 0, or the
        configuration is unknown.
    """
    # noise_std validates the bounds (shape, order) and that they contain every input.
    adapted = noise_std(x, bounds, confidence, kappa)  # type: ignore[arg-type]
    if isinstance(noise, str):
        if noise == "adaptgrad":
            return adapted
        if noise == "smoothgrad":
            low, high = broadcast_bounds(x, bounds)
            sigma = smoothgrad_std((low, high), alpha)
            return torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        raise ValueError(
            f"noise must be 'smoothgrad', 'adaptgrad', a float or a σ tensor, got {noise!r}."
        )
    if isinstance(noise, bool) or not isinstance(noise, (int, float, torch.Tensor)):
        raise TypeError(f"noise σ must be a number or a tensor, got {type(noise).__name__}.")
    return broadcast_sigma(noise, x, "noise σ")


def _empirical(
    x: torch.Tensor,
    sigma: torch.Tensor,
    bounds: Bounds,
    n_draws: int,
    generator: torch.Generator | list[torch.Generator],
    chunk: int,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = broadcast_bounds(x, bounds)
    features = x[0].numel()
    outside_sum = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    any_sum = torch.zeros_like(outside_sum)
    done = 0
    with tqdm(total=n_draws, disable=not progress, desc="inherent noise draws") as bar:
        while done < n_draws:
            k = min(chunk, n_draws - done)
            if isinstance(generator, list):  # one stream per sample: independent of batching
                per_sample = (k, *x.shape[1:])
                eps = keyed_normal(generator, per_sample, x.dtype).transpose(0, 1)
            else:
                eps = torch.randn((k, *x.shape), generator=generator, dtype=x.dtype, device="cpu")
            noisy = x + sigma * eps.to(x.device)
            outside = ((noisy < low) | (noisy > high)).flatten(2)
            outside_sum += outside.sum((0, 2)).double()
            any_sum += outside.any(2).sum(0).double()
            done += k
            bar.update(k)
    return outside_sum / (n_draws * features), any_sum / n_draws


def compute_inherent_noise(
    x: torch.Tensor,
    sigma: torch.Tensor,
    bounds: Bounds,
    n_draws: int = 50,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    chunk: int = 64,
    progress: bool = False,
    sample_seeds: tuple[int, Sequence[int]] | None = None,
) -> InherentNoiseResult:
    """Analytic and empirical inherent noise of ``x + ε``, ε ~ N(0, σ²) (Zhou et al., 2025, eq.
    9/10).

    The empirical part draws ``n_draws`` noisy copies from a private generator (``generator``
    or ``seed``; the global RNG is untouched), ``chunk`` draws at a time. With
    ``sample_seeds=(seed, indices)`` each sample draws from its own generator keyed to the seed
    and its data-set index (:mod:`captum_ext.core.randomness`), so its empirical fractions do
    not depend on the batch it is in.
    """
    check_positive_int("n_draws", n_draws)
    check_positive_int("chunk", chunk)
    analytic = inherent_noise(x, sigma, bounds)
    per_feature = analytic.per_feature
    # log-sum keeps 1 − Π(1 − A_i) accurate when many tiny A_i add up
    log_inside = torch.log1p(-per_feature.clamp(max=1.0)).flatten(1).sum(1)
    image_level = -torch.expm1(log_inside)
    rng: torch.Generator | list[torch.Generator]
    if sample_seeds is not None:
        base, indices = sample_seeds
        if len(indices) != len(x):
            raise ValueError(f"sample_seeds has {len(indices)} indices for {len(x)} inputs.")
        rng = sample_generators(base, indices)
    else:
        rng = make_generator(generator, seed)
    pixel_emp, image_emp = _empirical(x, sigma, bounds, n_draws, rng, chunk, progress)
    return InherentNoiseResult(
        per_feature=per_feature,
        pixel_level=analytic.per_sample,
        image_level=image_level,
        empirical_pixel_level=pixel_emp.to(x.dtype),
        empirical_image_level=image_emp.to(x.dtype),
        n_draws=n_draws,
    )


@dataclass
class MethodNoise:
    """The input noise an attribution method adds, as read off the method itself.

    Attributes
    ----------
    sigma : callable
        ``sigma(x) -> σ`` broadcastable to ``x`` (zeros for a method without input noise).
    n_draws : int or None
        The method's number of noisy samples (``nt_samples``), if it has one.
    source : str
        What the noise was read from (shown in ``InherentNoise.noise_sources``).
    """

    sigma: Any
    n_draws: int | None
    source: str


def method_noise(method: Any, options: dict[str, Any] | None = None) -> MethodNoise | None:
    """The input noise of ``method`` with ``attribute`` options ``options``, if it is known.

    - :class:`captum_ext.AdaptGrad`: its per-feature σ (its own bounds, confidence and κ).
    - ``captum.attr.NoiseTunnel`` and :class:`captum_ext.SeededNoiseTunnel`: ``stdevs`` from
      the options (Captum's default 1.0), ``nt_samples`` draws (default 5).
    - :class:`captum_ext.FusionGrad`: ``input_std``, ``n_samples`` draws.
    - any other Captum ``Attribution`` (Saliency, Integrated Gradients, LRP, NoiseGrad, ...):
      no input noise, σ = 0.

    Returns None for anything that is not a Captum attribution (the metric then falls back to
    its configured ``noise``).
    """
    from captum.attr import Attribution, NoiseTunnel

    from captum_ext.noise import AdaptGrad, FusionGrad

    options = options or {}
    if isinstance(method, AdaptGrad):
        return MethodNoise(
            method.noise_std, options.get("nt_samples", 5), f"AdaptGrad(c={method.confidence})"
        )
    if isinstance(method, NoiseTunnel):
        stdevs = options.get("stdevs", 1.0)
        if isinstance(stdevs, tuple):
            if len(stdevs) != 1:
                raise ValueError("InherentNoise takes one input tensor; got several stdevs.")
            stdevs = stdevs[0]
        return MethodNoise(
            lambda x: torch.as_tensor(stdevs, dtype=x.dtype, device=x.device),
            options.get("nt_samples", 5),
            f"{type(method).__name__}(stdevs={stdevs if isinstance(stdevs, float) else 'tensor'})",
        )
    if isinstance(method, FusionGrad):
        std = method.input_std
        return MethodNoise(
            lambda x: torch.as_tensor(std, dtype=x.dtype, device=x.device),
            method.n_samples,
            f"FusionGrad(input_std={std if isinstance(std, float) else 'tensor'})",
        )
    if isinstance(method, Attribution):
        return MethodNoise(
            lambda x: torch.zeros((), dtype=x.dtype, device=x.device),
            None,
            f"{type(method).__name__} (no input noise)",
        )
    return None


class InherentNoise(ResultPlot, QuantusDefaults):
    """Quantus metric: the inherent noise of a Gaussian-smoothing explainer (Zhou et al., 2025).

    For a SmoothGrad σ (``noise="smoothgrad"``, σ = α·(x_max − x_min)), an AdaptGrad
    configuration (``noise="adaptgrad"``, confidence c) or an explicit σ (float or tensor) and
    the data ``bounds``, each sample gets the analytic out-of-bounds probability per feature
    (eq. 9/10), its mean (pixel level), the image-level probability ``1 − Π(1 − A_i)`` and the
    empirical fractions over the ``n_draws`` draws actually used. The explanations themselves
    are not needed: inherent noise is a property of the noise and the data.

    Parameters
    ----------
    bounds : (x_min, x_max)
        Data range (scalars, per-channel or per-feature tensors, as in
        :func:`captum_ext.noise.adaptgrad.noise_std`). Inputs outside it raise ``ValueError``.
    noise : {"smoothgrad", "adaptgrad"} or float or torch.Tensor
        The explainer's noise.
    alpha : float
        SmoothGrad's relative noise level (eq. 6), default 0.2.
    confidence : float
        AdaptGrad's c, default 0.95.
    kappa : {"two_sided", "as_printed"}
        AdaptGrad's κ rule (see :mod:`captum_ext.noise.adaptgrad`).
    n_draws : int
        Draws for the empirical fractions (the explainer's N; the paper uses 50).
    score : str
        Which per-sample value is the score: ``"pixel_level"`` (default), ``"image_level"``,
        ``"empirical_pixel_level"`` or ``"empirical_image_level"``.
    seed : int, optional
        Seed of the private generator for the empirical draws (or pass ``generator``).
    generator : torch.Generator, optional
        Private generator (the global RNG is never used).
    noise_from_method : bool
        Inside ``quantus.evaluate`` (or with an ``explain_func`` built by
        :func:`quantus_metrics.explain_func_from`), take σ and the number of draws from the
        explained method itself (:func:`method_noise`): AdaptGrad's σ_i, a NoiseTunnel's
        ``stdevs``/``nt_samples``, FusionGrad's ``input_std``; a method without input noise
        (Saliency, Integrated Gradients, LRP, ...) scores 0. Explain functions that do not
        carry their method (plain functions, ``quantus.explain``) use ``noise``. Default True;
        False always uses ``noise``.
    **kwargs
        The ``quantus.Metric`` base arguments (``abs``, ``normalise``, ``normalise_func``,
        ``normalise_func_kwargs``, ``return_aggregate``, ``aggregate_func``,
        ``default_plot_func``, ``disable_warnings``, ``display_progressbar``).

    Attributes
    ----------
    results : list of InherentNoiseResult
        One entry per evaluated batch of the last call.
    noise_source : str
        Where the last call's noise came from (the method, or the configured ``noise``).

    Examples
    --------
    >>> import numpy as np
    >>> metric = InherentNoise(bounds=(0.0, 1.0), noise="smoothgrad", disable_warnings=True)
    >>> x = np.random.default_rng(0).uniform(size=(2, 1, 8, 8))
    >>> scores = metric(model=None, x_batch=x, y_batch=np.zeros(2, int), a_batch=x)
    """

    name = "Inherent Noise"
    data_applicability = {DataType.IMAGE, DataType.TIMESERIES, DataType.TABULAR}
    model_applicability = {ModelType.TORCH, ModelType.TF}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.ROBUSTNESS

    def __init__(
        self,
        bounds: Bounds = (0.0, 1.0),
        noise: str | float | torch.Tensor = "smoothgrad",
        alpha: float = 0.2,
        confidence: float = 0.95,
        kappa: str = "two_sided",
        n_draws: int = 50,
        score: str = "pixel_level",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise_from_method: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if score not in _SCORES:
            raise ValueError(f"score must be one of {_SCORES}, got {score!r}.")
        check_positive_int("n_draws", n_draws)
        if isinstance(noise, str) and noise not in ("smoothgrad", "adaptgrad"):
            raise ValueError(f"noise must be 'smoothgrad', 'adaptgrad' or a σ, got {noise!r}.")
        self.bounds = bounds
        self.noise = noise
        self.alpha = alpha
        self.confidence = confidence
        self.kappa = kappa
        self.n_draws = n_draws
        self.score = score
        self.generator = make_generator(generator, seed)
        self.noise_from_method = bool(noise_from_method)
        # Draws are keyed to (this seed, sample index), so scores do not depend on batch_size.
        self.seed = self.generator.initial_seed() if seed is None or generator else seed
        self._offset = 0
        self.results: list[InherentNoiseResult] = []
        self.noise_source = "configured"
        self._method_noise: MethodNoise | None = None

    def __call__(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        explain_func: Any = None,
        explain_func_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Evaluate ``x_batch``; the explanations themselves are not needed.

        With ``noise_from_method`` and an ``explain_func`` that carries its method
        (``explain_func_from``), σ and the draws are the method's (see :func:`method_noise`).
        """
        self.results = []
        self._method_noise = None
        self._offset = 0
        self.noise_source = f"configured noise={self.noise!r}"
        factory = getattr(explain_func, "method_factory", None)
        if self.noise_from_method and factory is not None:
            module = unwrap_model(model)
            options = {
                **getattr(explain_func, "attribute_kwargs", {}),
                **{k: v for k, v in (explain_func_kwargs or {}).items() if k != "method"},
            }
            self._method_noise = method_noise(factory(module), options)
            if self._method_noise is not None:
                self.noise_source = self._method_noise.source
        return super().__call__(
            model,
            x_batch,
            y_batch,
            explain_func=explain_func,
            explain_func_kwargs=explain_func_kwargs,
            **kwargs,
        )

    def compute(self, x: torch.Tensor | np.ndarray, first_index: int = 0) -> InherentNoiseResult:
        """The full :class:`InherentNoiseResult` for a batch of inputs (no Quantus plumbing).

        ``first_index`` is the data-set index of ``x[0]``: each sample's draws are keyed to its
        index and the metric's seed.
        """
        inputs = torch.as_tensor(x)
        if not inputs.is_floating_point():
            inputs = inputs.double()
        n_draws = self.n_draws
        if self._method_noise is not None:
            sigma = torch.broadcast_to(self._method_noise.sigma(inputs), inputs.shape)
            n_draws = self._method_noise.n_draws or n_draws
        else:
            sigma = noise_sigma(
                inputs, self.bounds, self.noise, self.alpha, self.confidence, self.kappa
            )
        return compute_inherent_noise(
            inputs,
            sigma,
            self.bounds,
            n_draws,
            progress=self.display_progressbar,
            sample_seeds=(self.seed, range(first_index, first_index + len(inputs))),
        )

    def evaluate_batch(self, x_batch: np.ndarray, **kwargs: Any) -> list[float]:
        """One score per sample (see ``score``)."""
        result = self.compute(x_batch, first_index=self._offset)
        self._offset += len(x_batch)
        self.results.append(result)
        return [float(v) for v in getattr(result, self.score).cpu()]

    def has_results(self) -> bool:
        return bool(self.results)

    def draw(self, ax: Any, label: str | None, **style: Any) -> None:
        """Histogram of the per-feature out-of-bounds probability A_i (Zhou et al., Fig. 3)."""
        values = torch.cat([r.per_feature.flatten() for r in self.results]).double().cpu()
        ax.hist(values.numpy(), bins=np.linspace(0.0, 1.0, 41), alpha=0.6, label=label,
                **style)  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel(f"A_i: P(feature leaves the bounds), noise: {self.noise_source}")
        ax.set_ylabel("features")
