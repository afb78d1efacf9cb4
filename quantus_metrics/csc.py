"""Cosine similarity convergence (CSC) of Sixt et al. (2020), "When Explanations Lie", section 5.

Modified back-propagation methods multiply the relevance by a chain of layer matrices; for the
z⁺ rule and its relatives that chain converges to rank 1, so whatever relevance enters at a high
layer, the same direction comes out at the bottom: the explanation ignores the later layers. CSC
measures this directly: inject ``n_vectors`` random relevances ``v ~ N(0, I)`` at one layer,
back-propagate each with the method's rule, and at every lower layer take the absolute cosine
similarity of all pairs (per spatial location across channels for convolutional maps). A median
near 1 means the method has converged; random vectors in ``C`` dimensions give about
``sqrt(Beta(1/2, (C-1)/2).median)`` (:func:`random_baseline`).

The propagation runs on the shared core :func:`captum_ext.core.modified_backward`, so every
method registered there (gradient, Captum LRP and captum_ext rule sets, Guided Backprop,
Deconvolution, RectGrad, PatternNet/-Attribution, DeepLIFT, ...) is supported without special
cases. All vectors travel in one batched backward: the batch is repeated ``n_vectors`` times.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import Attribution
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection
from torch import nn
from tqdm.auto import tqdm

from captum_ext.core import has_modified_backward, modified_backward
from captum_ext.core.modified_backward import supported_methods
from captum_ext.core.modules import model_device_dtype, model_of, unwrap_model
from captum_ext.core.randomness import DEFAULT_SEED, keyed_normal, make_generator, sample_generators
from captum_ext.core.validation import check_finite, check_positive_int
from captum_ext.lrp.tracing import hook_points
from quantus_metrics._base import (
    NORM_TYPES,
    QuantusDefaults,
    mean_per_layer,
    metric_defaults,
    plot_axes,
)
from quantus_metrics.explain import (
    MethodFactory,
    explain_func_from,
)

__all__ = ["CSC", "CSCResult", "cosine_similarity_convergence", "random_baseline"]

INPUT = "input"


@functools.lru_cache(maxsize=64)
def _median_abs_cosine(channels: int, steps: int = 1 << 20) -> float:
    """Median ``|cos|`` of random directions in ``R^C`` by quadrature (float64, no SciPy).

    With ``cos = sin θ``, ``θ ∈ [0, π/2]`` has density ∝ ``cos^{C-2} θ`` (smooth, unlike the
    density of ``cos`` itself at ±1 for C = 2); the median θ solves ``F(θ) = F(π/2) / 2`` for
    the cumulative trapezoid ``F`` on ``steps`` intervals. Relative error below 1e-7 for
    C ≤ 10⁵ against the Beta quantile.
    """
    theta = torch.linspace(0.0, math.pi / 2, steps + 1, dtype=torch.float64)
    log_density = (channels - 2) * torch.log(torch.cos(theta).clamp_min(1e-300))
    density = torch.exp(log_density - log_density.max())
    cumulative = torch.cat([density.new_zeros(1), torch.cumulative_trapezoid(density, theta)])
    half = cumulative[-1] / 2
    i = int(torch.searchsorted(cumulative, half).clamp(1, steps))
    step = (half - cumulative[i - 1]) / (cumulative[i] - cumulative[i - 1])
    return float(torch.sin(theta[i - 1] + step * (theta[i] - theta[i - 1])))


def random_baseline(
    channels: int, n_samples: int | None = None, generator: torch.Generator | None = None
) -> float:
    """Median ``|cos|`` of two independent ``N(0, I_C)`` vectors (CSC's chance level).

    Without ``n_samples`` the exact value: ``cos²`` of random directions in ``R^C`` follows
    ``Beta(1/2, (C-1)/2)``, so the median ``|cos|`` is the square root of that median.
    With ``n_samples`` a Monte-Carlo estimate from that many pairs drawn with ``generator``.
    Sixt et al. (2020) reports C = 10 → 0.228, 64 → 0.085, 1024 → 0.021.
    """
    check_positive_int("channels", channels)
    if channels == 1:
        return 1.0
    if n_samples is None:
        return _median_abs_cosine(channels)
    check_positive_int("n_samples", n_samples)
    a = torch.randn(n_samples, channels, generator=generator, dtype=torch.float64)
    b = torch.randn(n_samples, channels, generator=generator, dtype=torch.float64)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).abs().median())


@dataclass
class CSCResult:
    """Per-layer absolute cosine similarities of one batch.

    Attributes
    ----------
    values : dict of str to torch.Tensor
        ``(B, n_pairs * locations)`` float64 ``|cos|`` per sample, NaN where a propagated vector
        was zero; ordered from the model input up to the injection layer.
    channels : dict of str to int
        The channel count the cosine was taken over (the baseline's ``C``).
    """

    values: dict[str, torch.Tensor] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)

    def medians(self) -> dict[str, torch.Tensor]:
        """Per-sample median ``|cos|`` for each layer (NaNs from zero vectors dropped)."""
        return {name: _row_nanmedian(v) for name, v in self.values.items()}


def _row_nanmedian(values: torch.Tensor) -> torch.Tensor:
    """NaN-ignoring median of each row, averaging the middle pair like ``np.nanmedian``.

    (``torch.nanmedian`` returns the lower middle value; ``torch.nanquantile`` refuses rows of
    more than 2^24 elements, which pooled conv locations of large inputs exceed.)
    """
    n = values.shape[1]
    if n > 0 and bool(torch.isfinite(values).all()):
        # Fast path (no zero vectors): one selection instead of a full sort. The upper middle
        # value is the lower one if it occurs beyond rank k, else the smallest value above it.
        k = (n + 1) // 2
        low = values.kthvalue(k, dim=1, keepdim=True).values
        if n % 2:
            return low.squeeze(1)
        above = values > low
        next_up = torch.where(above, values, torch.full_like(values, float("inf"))).amin(dim=1)
        high = torch.where(n - above.sum(dim=1) > k, low.squeeze(1), next_up)
        return (low.squeeze(1) + high) / 2
    finite = torch.isfinite(values)
    ordered = torch.where(finite, values, torch.full_like(values, float("inf"))).sort(dim=1).values
    count = finite.sum(dim=1, keepdim=True)
    low = ordered.gather(1, ((count - 1) // 2).clamp(min=0)).squeeze(1)
    high = ordered.gather(1, (count // 2).clamp(max=values.shape[1] - 1)).squeeze(1)
    median = (low + high) / 2
    return torch.where(count.squeeze(1) > 0, median, torch.full_like(median, float("nan")))


def _default_traced(model: nn.Module) -> list[str]:
    # Layers of the paper's plots: every leaf with its own weights, norm layers excepted.
    return [
        name
        for name, module in model.named_modules()
        if name
        and next(module.parameters(recurse=False), None) is not None
        and not isinstance(module, NORM_TYPES)
    ]


def _check_names(model: nn.Module, names: Sequence[str], what: str) -> None:
    valid = [name for name, _ in model.named_modules() if name]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(
            f"Unknown {what} {unknown}; valid module names of {type(model).__name__}: "
            f"{', '.join(valid)}."
        )


def _abs_cosines(grad: torch.Tensor, n_vectors: int) -> torch.Tensor:
    """``(n·B, C, *spatial)`` back-propagated vectors → ``(B, pairs · locations)`` ``|cos|``.

    One float64 Gram matrix of the ``n`` vectors per sample and location; zero vectors have no
    direction, so their cosines are NaN (dropped by the median).
    """
    batch = grad.shape[0] // n_vectors
    channels = grad.shape[1] if grad.dim() > 1 else 1
    vectors = grad.detach().reshape(n_vectors, batch, channels, -1)
    first, second = (list(i) for i in zip(*itertools.combinations(range(n_vectors), 2)))
    if channels == 1:  # |cos| of scalars: 1 unless one of them is zero (or not finite)
        v = vectors[:, :, 0]  # (n, B, L)
        valid = (v != 0) & torch.isfinite(v)
        valid = valid[first] & valid[second]  # (pairs, B, L)
        ones = torch.ones((), dtype=torch.float64, device=grad.device)
        cosines = torch.where(valid, ones, torch.full_like(ones, float("nan")))
        return cosines.permute(1, 0, 2).reshape(batch, -1)
    # (B, L, n, C) in float64 in one copy, then one batched Gram (B, L, n, n).
    v = vectors.permute(1, 3, 0, 2).to(torch.float64, memory_format=torch.contiguous_format)
    gram = torch.matmul(v, v.transpose(-1, -2))
    norms = gram.diagonal(dim1=-2, dim2=-1).sqrt()  # (B, L, n)
    norms = torch.where(norms > 0, norms, torch.full_like(norms, float("nan")))
    cosines = gram[..., first, second] / (norms[..., first] * norms[..., second])  # (B, L, pairs)
    return cosines.abs_().transpose(1, 2).reshape(batch, -1)


def cosine_similarity_convergence(
    method: Attribution,
    inputs: torch.Tensor,
    layer: str | None = None,
    n_vectors: int = 5,
    generator: torch.Generator | None = None,
    trace_layers: Sequence[str] | None = None,
    additional_forward_args: Any = None,
    batched: bool | None = None,
    sample_seeds: tuple[int, Sequence[int]] | None = None,
) -> CSCResult:
    """Inject random relevances at ``layer`` and measure their alignment below it.

    Parameters
    ----------
    method : captum.attr.Attribution
        An attribution instance with a registered modified backward
        (:func:`captum_ext.core.supported_methods`).
    inputs : torch.Tensor
        ``(B, ...)`` model inputs (not modified).
    layer : str, optional
        Name of the module whose output receives the random relevance; the logits by default.
    n_vectors : int
        Random vectors per sample (≥ 2); all ``n_vectors (n_vectors - 1) / 2`` pairs are used.
    generator : torch.Generator, optional
        CPU generator for the vectors (the global RNG is never used; a fixed seed 0 without one).
    trace_layers : sequence of str, optional
        Modules whose *input* is compared; by default every module with its own parameters
        except norm layers. The model input is always included (as ``"input"``).
    additional_forward_args : any
        Extra forward arguments (not repeated; with ``batched`` they must broadcast over the
        repeated batch).
    batched : bool, optional
        ``True``: one forward and one backward over the batch repeated ``n_vectors`` times (best
        on GPUs). ``False``: one forward, then ``n_vectors`` backward passes through its
        retained graph; on CPUs this is cheaper, as the forward is not repeated and the
        activations stay ``n_vectors``× smaller (the repeated batch ran 1.8× slower per row on
        the digits CNN). Default: ``True`` on accelerators, ``False`` on the CPU. Both inject the
        same vectors and give the same scores.
    sample_seeds : (int, sequence of int), optional
        ``(seed, indices)``: draw each sample's vectors from its own generator keyed to the seed
        and the sample's index in the data set (:mod:`captum_ext.core.randomness`), so its
        score does not depend on the batch it is in. ``generator`` is then not used.

    Returns
    -------
    CSCResult
    """
    check_positive_int("n_vectors", n_vectors, minimum=2)
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}.")
    check_finite(inputs)
    model = model_of(method)
    if layer is not None:
        _check_names(model, [layer], "injection layer")
    traced = _default_traced(model) if trace_layers is None else list(trace_layers)
    _check_names(model, traced, "trace layers")
    if generator is None:
        generator = make_generator()
    batched = inputs.device.type != "cpu" if batched is None else batched
    copies = n_vectors if batched else 1
    repeated = inputs.detach().repeat(copies, *([1] * (inputs.dim() - 1)))
    repeated.requires_grad_(True)
    captured: dict[str, torch.Tensor] = {}
    below: list[str] = []  # traced modules executed before the injection point, in order
    injection: dict[str, Any] = {}

    def capture_input(name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
            if not args or not isinstance(args[0], torch.Tensor) or not args[0].requires_grad:
                return None
            # The module receives a copy so that hooks a method puts on its input (e.g. LRP's
            # "multiply by the activation") act between the copy and the tensor we read.
            # The model input itself is reported as "input".
            if args[0] is not repeated:
                captured[name] = args[0]
                if "output" not in injection and name not in below:
                    below.append(name)
            return (args[0].clone(), *args[1:])

        return hook

    def capture_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        injection["output"] = output

    handles = []
    try:
        with modified_backward(method) as forward:
            # The forward runs a private view of the model: hook the view's modules.
            view = forward.module
            for name in traced:
                # a traced-through module (LRP's traced copy) is observed at its boundaries
                for point in hook_points(view, name):
                    handles.append(point.register_forward_pre_hook(capture_input(name)))
            if layer is not None:
                for point in hook_points(view, layer, output=True):
                    handles.append(point.register_forward_hook(capture_output))
            extra = () if additional_forward_args is None else additional_forward_args
            extra = extra if isinstance(extra, tuple) else (extra,)
            output = forward(repeated, *extra)
            target = output if layer is None else injection.get("output")
            if not isinstance(target, torch.Tensor):
                raise ValueError(f"Layer {layer!r} did not produce a tensor output in forward.")
            names = [INPUT, *(name for name in below if name in captured)]
            tensors = [repeated, *(captured[name] for name in names[1:])]
            # (n·B, ...) vectors, vector-major: the same draws in both modes
            shape = (target.shape[0] * n_vectors // copies, *target.shape[1:])
            if sample_seeds is None:
                noise = torch.randn(shape, generator=generator, dtype=torch.float64)
            else:
                seed, indices = sample_seeds
                if len(indices) != len(inputs):
                    raise ValueError(f"sample_seeds has {len(indices)} indices for {len(inputs)}.")
                per_sample = (n_vectors, *target.shape[1:])
                draws = keyed_normal(sample_generators(seed, indices), per_sample)
                noise = draws.transpose(0, 1).reshape(shape)  # vector-major, as above
            noise = noise.to(device=target.device, dtype=target.dtype)
            chunks = (noise,) if batched else noise.chunk(n_vectors)
            parts = [
                torch.autograd.grad(
                    target, tensors, grad_outputs=chunk, retain_graph=True, allow_unused=True
                )
                for chunk in chunks
            ]
            grads = [None if p[0] is None else torch.cat(p) for p in zip(*parts, strict=True)]
    finally:
        for handle in handles:
            handle.remove()
    result = CSCResult()
    for name, grad in zip(names, grads, strict=True):
        if grad is None:  # not on the path to the injection layer (e.g. another branch)
            continue
        result.values[name] = _abs_cosines(grad, n_vectors)
        result.channels[name] = grad.shape[1] if grad.dim() > 1 else 1
    return result


class CSC(QuantusDefaults):
    """Cosine similarity convergence (Sixt et al., 2020) as a ``quantus.Metric``.

    Each sample's score is ``{layer: median |cos|}`` from the model input up to the injection
    layer (see :func:`cosine_similarity_convergence`). Lower is better: a value near the
    random baseline means the explanation still depends on the layers above; a value near 1
    means the method has converged to a rank-1 chain and ignores them.

    Parameters
    ----------
    method : callable, optional
        ``method(model) -> Attribution`` (an attribution class works). If omitted, the
        ``explain_func`` passed at call time must come from
        :func:`quantus_metrics.explain.explain_func_from`, whose factory is used.
    layer : str, optional
        Injection layer (module name); the logits by default.
    n_vectors : int
        Random vectors per sample (≥ 2), 5 as in the paper.
    seed : int
        Seed of the private generators; each sample's vectors are keyed to the seed and its
        index in ``x_batch``, so scores are reproducible, do not depend on ``batch_size`` and
        the global RNG is untouched.
    trace_layers : sequence of str, optional
        Modules whose input is compared (default: all parameterised non-norm modules).
    return_distributions : bool
        Keep every ``|cos|`` in ``self.distributions`` ``{layer: (n_samples, k) array}``.
    **kwargs
        ``quantus.Metric`` options (``abs``, ``normalise``, ``return_aggregate``,
        ``aggregate_func``, ``disable_warnings``, ``display_progressbar``, …). CSC does not use
        explanations, so ``abs``/``normalise`` have no effect; ``aggregate_func`` defaults to
        the per-layer mean and ``disable_warnings`` to True.

    Attributes
    ----------
    baselines : dict of str to float
        Random-vector baseline for each layer's channel count (:func:`random_baseline`).
    channels : dict of str to int
        Channel count per layer.

    References
    ----------
    Sixt, Granz, Landgraf (2020), "When Explanations Lie: Why Many Modified BP Attributions
    Fail", ICML, section 5 and Figure 5.
    """

    name = "Cosine Similarity Convergence"
    data_applicability = {DataType.IMAGE, DataType.TIMESERIES, DataType.TABULAR}
    model_applicability = {ModelType.TORCH}
    score_direction = ScoreDirection.LOWER
    evaluation_category = EvaluationCategory.RANDOMISATION
    explains_itself = True

    def __init__(
        self,
        method: MethodFactory | None = None,
        layer: str | None = None,
        n_vectors: int = 5,
        seed: int | None = None,
        trace_layers: Sequence[str] | None = None,
        return_distributions: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**metric_defaults(kwargs, mean_per_layer))
        check_positive_int("n_vectors", n_vectors, minimum=2)
        if method is not None and not callable(method):
            raise TypeError(
                "method must be an attribution class or a callable model -> Attribution."
            )
        seed = DEFAULT_SEED if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
        self.method = method
        self.layer = layer
        self.n_vectors = n_vectors
        self.seed = seed
        self.trace_layers = None if trace_layers is None else list(trace_layers)
        self.return_distributions = return_distributions
        self.baselines: dict[str, float] = {}
        self.channels: dict[str, int] = {}
        self.distributions: dict[str, np.ndarray] = {}

    def __call__(  # type: ignore[override]
        self,
        model: nn.Module,
        x_batch: np.ndarray,
        y_batch: np.ndarray | None = None,
        explain_func: Callable | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """Score ``x_batch``; ``y_batch`` and ``explain_func`` are optional here.

        CSC injects random relevance, so targets and explanations are not used; they are
        accepted so the metric runs inside ``quantus.evaluate``. Other keyword arguments
        (``batch_size``, ``device``, …) are those of ``quantus.Metric.__call__``.
        """
        factory = self.method or getattr(explain_func, "method_factory", None)
        if factory is None:
            raise ValueError(
                "CSC needs the attribution method itself: pass CSC(method=Saliency) or an "
                "explain_func built with quantus_metrics.explain.explain_func_from(...)."
            )
        self._factory = factory
        if y_batch is None:
            y_batch = np.zeros(len(x_batch), dtype=np.int64)
        module = unwrap_model(model)
        method = factory(module)
        if not has_modified_backward(method):
            return self._untraceable(module, method, x_batch)
        return super().__call__(
            model=model,
            x_batch=x_batch,
            y_batch=y_batch,
            explain_func=explain_func or explain_func_from(factory),
            **kwargs,
        )

    def _untraceable(self, module: nn.Module, method: Any, x_batch: Any) -> list[Any]:
        """NaN scores (one clear warning) for a method CSC cannot propagate through.

        Inside ``quantus.evaluate`` one row of ``xai_methods`` (Integrated Gradients, a
        NoiseTunnel, CASO, ...) must not abort the whole table: the row gets NaN per layer,
        in the same ``{layer: score}`` layout as the traced methods.
        """
        warnings.warn(
            f"CSC: {type(method).__name__} has no modified backward to propagate random "
            f"relevance through (supported: {', '.join(sorted(set(supported_methods())))}); its "
            "CSC scores "
            "are NaN. Register one with captum_ext.core.register_modified_backward.",
            RuntimeWarning,
            stacklevel=3,
        )
        layers = self._reported_layers(module, x_batch)
        self.baselines, self.channels, self.distributions = {}, {}, {}
        scores: list[Any] = [dict.fromkeys(layers, float("nan")) for _ in range(len(x_batch))]
        if self.return_aggregate:
            scores = [self.aggregate_func(scores)]
        self.evaluation_scores = scores
        self.all_evaluation_scores.extend(scores)
        return scores

    def _reported_layers(self, module: nn.Module, x_batch: Any) -> list[str]:
        """The layer keys a traced method's scores would have, from one probe forward pass.

        As in :func:`cosine_similarity_convergence`: ``"input"``, then the traced modules in
        execution order below the injection layer, except those fed the model input itself.
        """
        traced = self.trace_layers or _default_traced(module)
        device, dtype = model_device_dtype(module)
        x = torch.as_tensor(np.asarray(x_batch[:1]), device=device, dtype=dtype)
        seen: list[str] = []
        done: dict[str, bool] = {}

        def pre(name: str) -> Callable[..., None]:
            def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
                first = args[0] if args else None
                fed_input = isinstance(first, torch.Tensor) and (
                    first is x or (first.shape == x.shape and torch.equal(first, x))
                )
                if not done and not fed_input and name not in seen:
                    seen.append(name)

            return hook

        probe = copy.deepcopy(module)  # a forward pass must not touch the user's model
        probe_modules = dict(probe.named_modules())
        handles = [probe_modules[name].register_forward_pre_hook(pre(name)) for name in traced]
        if self.layer is not None:
            handles.append(
                probe_modules[self.layer].register_forward_hook(
                    lambda *_: done.setdefault("x", True)
                )
            )
        try:
            with torch.no_grad():
                probe(x)
        finally:
            for handle in handles:
                handle.remove()
        return [INPUT, *seen]

    def prepare(self, **kwargs: Any) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)
        self._offset = 0  # index of the next sample: its draws are keyed to it
        self._pooled: dict[str, list[np.ndarray]] = {}
        self.baselines, self.channels, self.distributions = {}, {}, {}
        self._bar = tqdm(
            total=len(kwargs["x_batch"]), desc="CSC", disable=not self.display_progressbar
        )

    def evaluate_batch(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray | None = None,
        a_batch: np.ndarray | None = None,
        s_batch: np.ndarray | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """Per-sample ``{layer: median |cos|}`` for one batch."""
        module = unwrap_model(model)
        device, dtype = model_device_dtype(module)
        x = torch.as_tensor(np.asarray(x_batch), device=device, dtype=dtype)
        result = cosine_similarity_convergence(
            self._factory(module),
            x,
            layer=self.layer,
            n_vectors=self.n_vectors,
            trace_layers=self.trace_layers,
            sample_seeds=(self.seed, range(self._offset, self._offset + len(x))),
        )
        self._offset += len(x)
        for name, channels in result.channels.items():
            self.channels[name] = channels
            self.baselines.setdefault(name, random_baseline(channels))
            if self.return_distributions:
                self._pooled.setdefault(name, []).append(result.values[name].cpu().numpy())
        medians = {name: m.cpu().numpy() for name, m in result.medians().items()}
        self._bar.update(len(x))
        return [{name: float(m[i]) for name, m in medians.items()} for i in range(len(x))]

    def custom_postprocess(self, **kwargs: Any) -> None:
        self._bar.close()
        self.distributions = {k: np.concatenate(v) for k, v in self._pooled.items()}

    def layer_medians(self, scores: Sequence[dict[str, float]] | None = None) -> dict[str, float]:
        """Median ``|cos|`` per layer over all samples, as in Figure 5 of Sixt et al. (2020).

        Pooled over all pairs, locations and samples when the distributions were kept
        (``return_distributions=True``, the paper's statistic); otherwise the median of the
        per-sample medians.
        """
        scores = self.evaluation_scores if scores is None else scores
        if not scores or not isinstance(scores[0], dict):
            raise ValueError(
                "No per-sample scores: call the metric first (return_aggregate=False)."
            )
        pooled = scores is self.evaluation_scores and self.distributions
        return {
            name: float(
                np.nanmedian(self.distributions[name])
                if pooled
                else np.nanmedian([s[name] for s in scores])
            )
            for name in scores[0]
        }

    def plot(
        self,
        ax: Any = None,
        label: str | None = None,
        scores: Sequence[dict[str, float]] | None = None,
        baseline: bool = True,
        path_to_save: str | None = None,
        **line_kwargs: Any,
    ) -> Any:
        """Per-layer median CSC as ``1 − CSC`` on a log axis (Figure 5 of Sixt et al. (2020)).

        Layers with a single channel are omitted (their ``|cos|`` is 1 by construction).

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw into this axes (several methods in one figure); a new figure otherwise.
        label : str, optional
            Legend label of the curve.
        scores : list of dict, optional
            Scores to draw; the last call's scores by default.
        baseline : bool
            Also draw the random-vector baseline of each layer's channel count.
        """
        scores = self.evaluation_scores if scores is None else scores
        medians = self.layer_medians(scores)
        # One-channel layers (a grey input) have |cos| = 1 trivially; leave them out.
        layers = [name for name in medians if self.channels.get(name, 2) > 1]
        medians = [medians[name] for name in layers]
        ax = plot_axes(ax)
        floor = 1e-16  # float64 resolution: a perfectly converged layer sits at the floor
        ax.plot(
            layers, [max(1 - m, floor) for m in medians], marker="o", label=label, **line_kwargs
        )
        if baseline and self.baselines:
            chance = [1 - self.baselines.get(name, np.nan) for name in layers]
            ax.plot(layers, chance, color="grey", linestyle=":", label="random baseline")
        ax.set_yscale("log")
        if not ax.yaxis_inverted():  # converged (1 − CSC small) at the top, as in the paper
            ax.invert_yaxis()
        ax.set_xlabel("layer (input → injection)")
        ax.set_ylabel("1 − median |cos|")
        ax.tick_params(axis="x", labelrotation=60)
        if label is not None or baseline:
            ax.legend(fontsize="small")
        if path_to_save is not None:
            ax.figure.savefig(path_to_save, bbox_inches="tight")
        return ax
