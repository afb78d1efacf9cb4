"""Randomisation sanity checks scored with SSIM, as in Sixt et al. (2020), "When Explanations Lie".

- :class:`ModelRandomisationSSIM`: cascading (Adebayo et al., 2018) or independent randomisation
  of the parameterised layers, from the output to the input in *execution* order, each layer with
  its own seeded generator, always on a deep copy; SSIM between the normalised maps of the
  original and the randomised model per layer and sample (Sixt et al., 2020, Figure 4b).
- :class:`RandomLogitSSIM`: SSIM between the map explaining the target class and the map of a
  uniformly drawn other class (Sixt et al., 2020, Figure 4a).

Both share the map handling of :mod:`quantus_metrics.ssim` (channel reduction, percentile
normalisation, sign-invariant SSIM computed in torch on the batch) and report seeded 99 %
bootstrap confidence intervals (:mod:`quantus_metrics._bootstrap`). Compared with
``quantus.MPRT`` there is no redundant "original" score, no global reseeding, no identical
weights for same-shaped layers, no model mutation and no abort on constant maps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection
from torch import nn
from tqdm.auto import tqdm

from captum_ext.core.channels import channel_reduction as check_channel_reduction
from captum_ext.core.modules import model_device_dtype, unwrap_model
from captum_ext.core.progress import show_progress
from captum_ext.core.randomness import DEFAULT_SEED, derive_seed
from captum_ext.core.validation import check_open_unit, check_positive_int
from quantus_metrics._base import (
    NORM_TYPES,
    QuantusDefaults,
    ResultPlot,
    mean_per_layer,
    metric_defaults,
)
from quantus_metrics._bootstrap import bootstrap_ci
from quantus_metrics.ssim import ReferenceSSIM, SSIMOptions, percentile_normalise, reduce_channels

__all__ = [
    "ModelRandomisationSSIM",
    "RandomLogitSSIM",
    "parameterised_layers",
    "randomise_layer",
]

_INITS = ("default", "truncated_normal")
_CHUNK_ELEMENTS = 2**22  # map elements normalised and scored at once (bounds the SSIM memory)
_ORDERS = ("cascading", "independent")
_LAYOUTS = ("per_sample", "mprt")
ORIGINAL = "original"


def parameterised_layers(
    model: nn.Module, example: torch.Tensor, include_norm: bool = False
) -> list[str]:
    """Names of the modules with their own parameters, in the order a forward pass runs them.

    Registration order (what ``quantus.MPRT`` uses) differs from execution order in many
    models (e.g. ResNet downsample branches); a forward pass on ``example`` under hooks finds
    the real order. Run it on a copy if the model has state that a forward pass changes
    (BatchNorm in train mode).
    """
    order: list[str] = []
    handles = []

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if name not in order:
                order.append(name)

        return hook

    try:
        for name, module in model.named_modules():
            own = next(module.parameters(recurse=False), None) is not None
            if name and own and (include_norm or not isinstance(module, NORM_TYPES)):
                handles.append(module.register_forward_hook(record(name)))
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return order


@torch.no_grad()
def randomise_layer(module: nn.Module, seed: int, init: str = "default") -> None:
    """Re-initialise ``module``'s own parameters in place from a private seed.

    ``init="default"``: the framework's initialiser (``reset_parameters``), run under a forked
    RNG so the global random state is left exactly as it was. ``init="truncated_normal"``:
    N(0, 0.01²) truncated at two standard deviations, as in Adebayo et al. (2018). Norm layers
    draw their affine weight and bias from N(0, 1) (``reset_parameters`` would set constants,
    which is not a randomisation); their running statistics are kept.
    """
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}.")
    params = list(module.parameters(recurse=False))
    generator = torch.Generator().manual_seed(seed)

    def draw(param: torch.Tensor, std: float, truncate: bool) -> torch.Tensor:
        values = torch.randn(param.shape, generator=generator, dtype=torch.float64) * std
        if truncate:  # redraw outside ±2σ (rejection keeps the exact truncated distribution)
            outside = values.abs() > 2 * std
            while outside.any():
                values[outside] = (
                    torch.randn(int(outside.sum()), generator=generator, dtype=torch.float64) * std
                )
                outside = values.abs() > 2 * std
        return values.to(dtype=param.dtype, device=param.device)

    if isinstance(module, NORM_TYPES):
        for param in params:
            param.copy_(draw(param, 1.0, truncate=False))
    elif init == "truncated_normal" or not hasattr(module, "reset_parameters"):
        for param in params:
            param.copy_(draw(param, 0.01, truncate=True))
    else:
        cuda = [p.device.index or 0 for p in params if p.is_cuda]
        with torch.random.fork_rng(devices=sorted(set(cuda))):
            torch.manual_seed(seed)
            module.reset_parameters()


def _aggregate_scores(scores: Any) -> Any:
    """Mean of scores in any of the layouts: per-sample dicts or floats, or MPRT's dict."""
    if isinstance(scores, dict):
        return {name: float(np.nanmean(values)) for name, values in scores.items()}
    if scores and isinstance(scores[0], dict):
        return mean_per_layer(scores)
    return float(np.nanmean(scores))


class _SSIMScoring(ResultPlot, QuantusDefaults):
    """Shared configuration, map handling and bootstrap of the two SSIM metrics."""

    data_applicability = {DataType.IMAGE}
    model_applicability = {ModelType.TORCH}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.RANDOMISATION
    explains_itself = True

    _aggregate: Callable = staticmethod(np.mean)  # default aggregate_func

    def __init__(
        self,
        channel_reduction: str = "sum",
        sign_invariant: bool = True,
        win_size: int = 5,
        gaussian: bool = False,
        sigma: float = 1.5,
        data_range: float = 2.0,
        percentiles: tuple[float, float] = (0.5, 99.5),
        seed: int | None = None,
        confidence: float = 0.99,
        n_resamples: int = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**metric_defaults(kwargs, self._aggregate))
        channel_reduction = check_channel_reduction(
            channel_reduction, ("sum", "max_abs"), "channel_reduction"
        )
        ssim_options = SSIMOptions(
            data_range=data_range, win_size=win_size, gaussian=gaussian, sigma=sigma
        )
        low, high = percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {percentiles}.")
        seed = DEFAULT_SEED if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
        check_open_unit("confidence", confidence)
        check_positive_int("n_resamples", n_resamples)
        self.channel_reduction = channel_reduction
        self.sign_invariant = sign_invariant
        self.ssim_options = ssim_options
        self.percentiles = (float(low), float(high))
        self.seed = seed
        self.confidence = confidence
        self.n_resamples = n_resamples
        self.n_constant_maps = 0

    def _explain(
        self, model: nn.Module, x: np.ndarray, y: np.ndarray, a: np.ndarray | None = None
    ) -> torch.Tensor:
        """Normalised ``(N, H, W)`` maps of ``model`` (or of the given attributions ``a``)."""
        return self._normalise(self._raw_maps(model, x, y, a))

    def _raw_maps(
        self, model: nn.Module, x: np.ndarray, y: np.ndarray, a: np.ndarray | None = None
    ) -> torch.Tensor:
        """Checked, channel-reduced ``(N, H, W)`` maps, not yet normalised."""
        if a is None:
            if self.explain_func is None:
                raise ValueError(
                    f"{self.name} needs explain_func also when a_batch is given: a_batch is only "
                    "the explanation of the unchanged model, the other explanations are computed "
                    "by explain_func (e.g. explain_func=explain_func_from(Saliency))."
                )
            a = self.explain_func(model=model, inputs=x, targets=y, **self.explain_func_kwargs)
        device, _ = model_device_dtype(model)
        attribution = torch.as_tensor(np.asarray(a), device=device)
        if not attribution.is_floating_point():
            attribution = attribution.to(torch.float64)
        elif attribution.dtype in (torch.float16, torch.bfloat16):
            # percentiles (torch.quantile) and SSIM are computed in float32 at least
            attribution = attribution.float()
        if attribution.shape[0] != len(x):
            raise ValueError(
                f"explain_func returned {attribution.shape[0]} explanations for {len(x)} inputs."
            )
        if not torch.isfinite(attribution).all():
            raise FloatingPointError(
                f"{self.name}: the explanation contains NaN/Inf; check explain_func (e.g. a "
                "larger LRP epsilon) or use float64."
            )
        return reduce_channels(attribution, self.channel_reduction)

    def _normalise(self, maps: torch.Tensor) -> torch.Tensor:
        """Percentile-normalise ``(..., H, W)`` maps, each on its own; counts constant maps."""
        flat = maps.reshape(-1, *maps.shape[-2:])
        normalised, constant = percentile_normalise(flat, *self.percentiles)
        self.n_constant_maps += int(constant.sum())
        return normalised.reshape(maps.shape)

    def _scorer(self, reference: torch.Tensor) -> ReferenceSSIM:
        """(Sign-invariant) SSIM against ``reference``, its local moments filtered once."""
        return ReferenceSSIM(reference, self.sign_invariant, self.ssim_options)

    def _compare(self, reference: torch.Tensor, other: torch.Tensor) -> np.ndarray:
        scores = self._scorer(reference)(other)
        return scores.detach().cpu().numpy().astype(np.float64)

    def _start(self, total: int, desc: str) -> None:
        self.n_constant_maps = 0
        # display_progressbar=None (ModelRandomisationSSIM's default): on terminals only.
        self._bar = tqdm(
            total=total, desc=desc, disable=not show_progress(self.display_progressbar)
        )

    def _bootstrap(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return bootstrap_ci(values, self.confidence, self.n_resamples, seed=self.seed)


def _ssim_docs(cls: type) -> type:
    # Both metrics take the same SSIM and bootstrap options; document them once.
    cls.__doc__ = (cls.__doc__ or "") + _SSIM_PARAMETERS
    return cls


_SSIM_PARAMETERS = """
    SSIM and bootstrap parameters
    -----------------------------
    channel_reduction : {"sum", "max_abs"}
        How ``(N, C, H, W)`` explanations become 2-D maps: signed channel sum (LRP, DTD, Pattern,
        DeepLIFT in Sixt et al. (2020)) or maximum absolute value (gradient-like methods).
    sign_invariant : bool
        Score ``max(SSIM(n(a), n(b)), SSIM(n(a), n(-b)))`` (Sixt et al., 2020) instead of
        ``SSIM(n(a), n(b))``.
    win_size, gaussian, sigma, data_range : int, bool, float, float
        SSIM window and dynamic range (:func:`quantus_metrics.ssim.ssim_batch`); ``data_range=2``
        reproduces the authors' numbers, 1 is the range of the normalised maps.
    percentiles : (float, float)
        The (0.5, 99.5) percentiles mapped to 1 and 0 (:func:`percentile_normalise`). A
        constant map (e.g. all zeros from a dead randomised network) normalises to a constant
        0.5 map; SSIM then reduces to its luminance term (1 for two constant maps, small
        against a structured map). Such maps are counted in ``n_constant_maps``, never fatal.
    seed : int, optional
        Seed of every random choice (layers, logits, bootstrap; 0 when not given); the global
        RNGs are untouched.
    confidence, n_resamples : float, int
        Bootstrap confidence level (0.99) and resamples (10 000) of the per-layer mean.
    **kwargs
        ``quantus.Metric`` options (``abs``, ``normalise``, ``return_aggregate``,
        ``aggregate_func``, ``disable_warnings``, ``display_progressbar``, …);
        ``abs``/``normalise`` act on given ``a_batch`` only and are off by default because the
        maps are normalised as above.
"""


def _scored_layers(cascade: list[str], evaluate_at: int | list[str] | None) -> list[str]:
    """The layers of ``cascade`` (randomisation order) after which maps are scored."""
    if evaluate_at is None:
        return list(cascade)
    if isinstance(evaluate_at, int):
        if evaluate_at >= len(cascade):
            return list(cascade)
        picks = np.linspace(0, len(cascade) - 1, evaluate_at).round().astype(int)
        return [cascade[i] for i in sorted(set(picks.tolist()))]
    unknown = [name for name in evaluate_at if name not in cascade]
    if unknown:
        raise ValueError(
            f"evaluate_at names layers that are not randomised: {unknown}; randomised layers "
            f"in randomisation order: {', '.join(cascade)}."
        )
    wanted = set(evaluate_at)
    return [name for name in cascade if name in wanted]


@_ssim_docs
class ModelRandomisationSSIM(_SSIMScoring):
    """Model parameter randomisation test scored with sign-invariant SSIM (Sixt et al., 2020, Fig.
    4b).

    For every parameterised layer, from the output to the input in execution order, the
    layer's parameters are re-drawn (cascading: on top of the layers above; independent: only
    this layer) on a deep copy of the model, and each sample's explanation is compared with the
    original one. Each sample's score is ``{layer: SSIM}`` in randomisation order; lower means
    the explanation is more sensitive to the parameters (Adebayo et al., 2018, pass the check).

    Parameters
    ----------
    order : {"cascading", "independent"}
        Cascading randomisation (default) or one layer at a time.
    init : {"default", "truncated_normal"}
        The framework's initialiser (``reset_parameters``) or Adebayo et al.'s truncated normal.
    randomise_norm_layers : bool
        Also randomise BatchNorm/GroupNorm/LayerNorm layers (skipped by default).
    layers : sequence of str, optional
        Restrict to these layer names (still in execution order from the output).
    evaluate_at : int or sequence of str, optional
        Cascading order only: every layer is still randomised, but explanations are computed
        and scored only after these layers (names), or after ``evaluate_at`` layers spread
        evenly over the cascade (the first and the last included). ``None`` (default) scores
        after every layer. A deep network's cascade then costs ``evaluate_at`` explanations per
        sample instead of one per layer.
    layout : {"per_sample", "mprt"}
        ``"per_sample"`` (default): one ``{layer: SSIM}`` dict per sample. ``"mprt"``:
        ``quantus.MPRT``'s layout, ``{"original": [...], layer: [...], ...}`` with one list entry
        per sample, ``"original"`` being the SSIM of each original map with itself (1 up to
        rounding) and the layers in randomisation order, so the scores tabulate next to
        ``quantus.MPRT``'s (use ``randomise_norm_layers=True`` to randomise the same layers).
    return_average_correlation, return_last_correlation : bool
        As in ``quantus.MPRT``: one float per sample, the mean SSIM over the randomised layers
        or the SSIM after the last (input-most) layer; ``agg_func=np.mean`` in
        ``quantus.evaluate`` then gives one number per method.

    Attributes
    ----------
    layer_names : list of str
        The layers after which the maps were scored (all randomised layers unless
        ``evaluate_at`` is given), in randomisation order.
    confidence_intervals : dict of str to (float, float)
        Bootstrap interval of the mean SSIM per layer after a call.

    References
    ----------
    Adebayo et al. (2018), "Sanity Checks for Saliency Maps", NeurIPS.
    Sixt, Granz, Landgraf (2020), "When Explanations Lie", ICML, section 5, Figure 4b.
    """

    name = "Model Randomisation SSIM"
    _aggregate = staticmethod(_aggregate_scores)

    def __init__(
        self,
        order: str = "cascading",
        init: str = "default",
        randomise_norm_layers: bool = False,
        layers: Sequence[str] | None = None,
        evaluate_at: int | Sequence[str] | None = None,
        layout: str = "per_sample",
        return_average_correlation: bool = False,
        return_last_correlation: bool = False,
        **kwargs: Any,
    ) -> None:
        if order not in _ORDERS:
            raise ValueError(f"order must be one of {_ORDERS}, got {order!r}.")
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}.")
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}.")
        if evaluate_at is not None:
            if order != "cascading":
                raise ValueError(
                    "evaluate_at needs order='cascading': with independent randomisation a "
                    "layer whose map is not scored has no effect."
                )
            if isinstance(evaluate_at, int | np.integer) and not isinstance(evaluate_at, bool):
                if evaluate_at < 1:
                    raise ValueError(f"evaluate_at must be ≥ 1, got {evaluate_at}.")
            elif isinstance(evaluate_at, str) or not all(isinstance(n, str) for n in evaluate_at):
                raise TypeError(
                    f"evaluate_at takes an int or a sequence of layer names, got {evaluate_at!r}."
                )
        # A long call (one explanation per layer and batch): a bar on terminals by default.
        kwargs.setdefault("display_progressbar", None)
        if return_average_correlation and return_last_correlation:
            raise ValueError(
                "Set at most one of return_average_correlation and return_last_correlation."
            )
        super().__init__(**kwargs)
        self.layout = layout
        self.return_average_correlation = return_average_correlation
        self.return_last_correlation = return_last_correlation
        self.per_sample_scores: list[dict[str, float]] = []
        self.order = order
        self.init = init
        self.randomise_norm_layers = randomise_norm_layers
        self.layers = None if layers is None else list(layers)
        self.evaluate_at = (
            evaluate_at
            if evaluate_at is None or isinstance(evaluate_at, int)
            else list(evaluate_at)
        )
        self.layer_names: list[str] = []
        self._cascade: list[str] = []
        self.confidence_intervals: dict[str, tuple[float, float]] = {}
        self._spare_copy: nn.Module | None = None

    def prepare(self, *, model: Any, x_batch: np.ndarray, **kwargs: Any) -> None:
        module = unwrap_model(model)
        device, dtype = model_device_dtype(module)
        # Find the execution order on a copy: a forward pass must not touch the user's model.
        probe = copy.deepcopy(module)
        example = torch.as_tensor(np.asarray(x_batch[:1]), device=device, dtype=dtype)
        executed = parameterised_layers(probe, example, self.randomise_norm_layers)
        if self.layers is not None:
            valid = set(executed) | {n for n, _ in module.named_modules() if n}
            unknown = [name for name in self.layers if name not in valid]
            if unknown:
                raise ValueError(
                    f"Unknown layers {unknown}; parameterised layers in execution order: "
                    f"{', '.join(executed)}."
                )
            executed = [name for name in executed if name in self.layers]
        if not executed:
            raise ValueError(f"{type(module).__name__} has no layer with parameters to randomise.")
        self._cascade = executed[::-1]
        self.layer_names = _scored_layers(self._cascade, self.evaluate_at)
        # The probe has only run one forward pass in eval mode, which changes nothing: it can
        # serve as the first batch's working copy (one deep copy fewer). A model with modules
        # in train mode (BatchNorm statistics) gets a fresh copy per batch.
        self._spare_copy = None if any(m.training for m in probe.modules()) else probe
        self._original: list[float] = []
        self._start(len(x_batch) * len(self.layer_names), "randomisation SSIM")

    def evaluate_batch(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        a_batch: np.ndarray | None = None,
        s_batch: np.ndarray | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """Per-sample ``{layer: SSIM}`` for one batch (layers in randomisation order)."""
        module = unwrap_model(model)
        # A deep copy: the user's model is never touched (the first batch reuses the probe).
        randomised = self._spare_copy
        self._spare_copy = None
        if randomised is None:
            randomised = copy.deepcopy(module)
        reference = self._explain(randomised, x_batch, y_batch, a_batch)
        score = self._scorer(reference)
        if self.layout == "mprt":  # MPRT's "original" entry: each map against itself
            self._original.extend(score(reference).detach().cpu().to(torch.float64).tolist())
        independent = self.order == "independent"
        modules = dict(randomised.named_modules())
        # Layers are normalised and scored together, a bounded number at a time: the same
        # numbers as layer by layer, in a few large tensor operations instead of ~40 small ones
        # per layer, and the pending maps never exceed the chunk.
        per_chunk = max(1, _CHUNK_ELEMENTS // max(1, reference.numel()))
        maps: list[torch.Tensor] = []
        scores: list[torch.Tensor] = []
        scored = set(self.layer_names)
        last = self.layer_names[-1]
        for name in self._cascade:
            layer = modules[name]
            if independent:
                saved = [p.detach().clone() for p in layer.parameters(recurse=False)]
            randomise_layer(layer, derive_seed(self.seed, name), self.init)
            if name not in scored:  # randomised, not explained (evaluate_at)
                continue
            maps.append(self._raw_maps(randomised, x_batch, y_batch))
            if independent:
                with torch.no_grad():
                    for param, value in zip(layer.parameters(recurse=False), saved, strict=True):
                        param.copy_(value)
            if len(maps) == per_chunk or name == last:
                scores.append(score(self._normalise(torch.stack(maps))))
                maps.clear()
            self._bar.update(len(x_batch))
        # One transfer for all layers; (N, L) rows of Python floats.
        table = torch.cat(scores).T.detach().cpu().to(torch.float64).tolist()
        return [dict(zip(self.layer_names, row, strict=True)) for row in table]

    def custom_postprocess(self, **kwargs: Any) -> None:
        self._bar.close()
        self._spare_copy = None
        self.per_sample_scores = list(self.evaluation_scores)
        values = np.array([[s[name] for name in self.layer_names] for s in self.evaluation_scores])
        low, high = self._bootstrap(values)
        self.confidence_intervals = {
            name: (float(lo), float(hi))
            for name, lo, hi in zip(self.layer_names, low, high, strict=True)
        }
        # The layouts of quantus.MPRT, applied before Quantus aggregates (return_aggregate).
        if self.return_average_correlation:
            self.evaluation_scores = values.mean(axis=1).tolist()
        elif self.return_last_correlation:
            self.evaluation_scores = values[:, -1].tolist()
        elif self.layout == "mprt":
            self.evaluation_scores = self.scores_by_layer(original=True)

    def scores_by_layer(self, original: bool = False) -> dict[str, list[float]]:
        """The last call's scores as ``{layer: [score per sample]}`` (``quantus.MPRT``'s layout).

        Layers in randomisation order; with ``original=True`` (and ``layout="mprt"``, which
        computes it) ``"original"`` comes first.
        """
        if not self.per_sample_scores:
            raise ValueError("No scores yet: call the metric first.")
        table = {name: [s[name] for s in self.per_sample_scores] for name in self.layer_names}
        if original:
            if len(self._original) != len(self.per_sample_scores):
                raise ValueError('"original" scores are computed with layout="mprt" only.')
            table = {ORIGINAL: list(self._original), **table}
        return table

    _nothing_to_plot = "Nothing to plot: call the metric first (return_aggregate=False)."

    def has_results(self) -> bool:
        return bool(self.confidence_intervals)

    def draw(self, ax: Any, label: str | None, **style: Any) -> None:
        """Mean SSIM per randomised layer with its bootstrap band (Sixt et al., Figure 4b)."""
        names = self.layer_names
        means = mean_per_layer(self.per_sample_scores)
        positions = np.arange(len(names))
        (line,) = ax.plot(positions, [means[n] for n in names], marker="o", label=label, **style)
        ax.fill_between(
            positions,
            [self.confidence_intervals[n][0] for n in names],
            [self.confidence_intervals[n][1] for n in names],
            color=line.get_color(),
            alpha=0.25,
            linewidth=0,
        )
        ax.set_xticks(positions, names, rotation=60, fontsize="small")
        ax.set_xlabel(f"{self.order} randomisation up to layer (output → input)")
        ax.set_ylabel(f"SSIM, {100 * self.confidence:g} % CI")
        ax.set_ylim(-0.05, 1.05)


@_ssim_docs
class RandomLogitSSIM(_SSIMScoring):
    """SSIM between the explanation of the target class and of a random other class.

    The other class is drawn uniformly from the model's own classes minus the target, with a
    private seeded generator (Sixt et al., 2020, Figure 4a; Sixt et al. report ≈ 1 for converging
    methods and 0.4–0.8 for the rest). Each sample's score is one float; lower is better.

    Parameters
    ----------
    n_classes : int, optional
        Number of classes; read from the model's output by default.

    Attributes
    ----------
    confidence_interval : (float, float)
        Bootstrap interval of the mean SSIM after a call.
    other_classes : np.ndarray
        The drawn classes of the last call.
    """

    name = "Random Logit SSIM"

    def __init__(
        self,
        n_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        if n_classes is not None:
            check_positive_int("n_classes", n_classes, minimum=2)
        super().__init__(**kwargs)
        self.n_classes = n_classes
        self.per_sample_scores: list[float] = []
        self.confidence_interval: tuple[float, float] = (float("nan"), float("nan"))
        self.other_classes = np.empty(0, dtype=np.int64)

    def prepare(
        self, *, model: Any, x_batch: np.ndarray, y_batch: np.ndarray, **kwargs: Any
    ) -> dict[str, Any]:
        module = unwrap_model(model)
        n_classes = self.n_classes
        if n_classes is None:
            device, dtype = model_device_dtype(module)
            with torch.no_grad():
                example = torch.as_tensor(np.asarray(x_batch[:1]), device=device, dtype=dtype)
                n_classes = int(copy.deepcopy(module)(example).shape[-1])
            if n_classes < 2:
                raise ValueError("RandomLogitSSIM needs a model with at least two outputs.")
        targets = np.asarray(y_batch).astype(np.int64).reshape(-1)
        if len(targets) != len(x_batch):
            raise ValueError(f"x_batch has {len(x_batch)} samples but y_batch has {len(targets)}.")
        if targets.min() < 0 or targets.max() >= n_classes:
            raise ValueError(
                f"y_batch holds classes outside 0..{n_classes - 1} (the model's outputs)."
            )
        # A uniform draw among the other classes: shift the target by 1..n_classes-1.
        shift = np.random.default_rng(self.seed).integers(1, n_classes, size=len(targets))
        self.other_classes = (targets + shift) % n_classes
        self._start(len(x_batch), "random-logit SSIM")
        return {"y_other_batch": self.other_classes}

    def evaluate_batch(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        a_batch: np.ndarray | None = None,
        s_batch: np.ndarray | None = None,
        y_other_batch: np.ndarray | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Per-sample SSIM between the target-class and the random-class explanation."""
        module = unwrap_model(model)
        reference = self._explain(module, x_batch, y_batch, a_batch)
        other = self._explain(module, x_batch, y_other_batch)
        self._bar.update(len(x_batch))
        return self._compare(reference, other).tolist()

    def custom_postprocess(self, **kwargs: Any) -> None:
        self._bar.close()
        self.per_sample_scores = [float(v) for v in self.evaluation_scores]
        low, high = self._bootstrap(np.asarray(self.evaluation_scores, dtype=np.float64))
        self.confidence_interval = (float(low), float(high))

    def has_results(self) -> bool:
        return bool(self.per_sample_scores)

    def draw(self, ax: Any, label: str | None, **style: Any) -> None:
        """Histogram of the per-sample SSIM, its mean and bootstrap interval (Figure 4a)."""
        values = np.asarray(self.per_sample_scores)
        bins = np.linspace(-0.05, 1.05, 23)
        _, _, patches = ax.hist(values, bins=bins, alpha=0.6, label=label, **style)
        colour = patches[0].get_facecolor() if len(patches) else None
        ax.axvline(float(values.mean()), color=colour, linestyle="--")
        ax.axvspan(*self.confidence_interval, color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel(f"SSIM(target map, random-class map); mean, {100 * self.confidence:g} % CI")
        ax.set_ylabel("samples")
