"""PatternNet and PatternAttribution as Captum gradient attributions (Kindermans et al., 2018).

Kindermans, Schütt, Alber, Müller, Erhan, Kim and Dähne, "Learning how to explain neural
networks: PatternNet and PatternAttribution", ICLR 2018; analysed in Sixt, Granz and Landgraf,
"When Explanations Lie: Why Many Modified BP Attributions Fail", ICML 2020 (eq. 9–11).

For every ``nn.Linear`` and ``nn.Conv2d`` with weights w_j (bias removed, y_j = w_jᵀx) a signal
pattern a_j is estimated from data:

- ``"linear"``: a_j = cov[x, y_j] / (w_jᵀ cov[x, y_j]);
- ``"relu"`` (two-component estimator, the reference code's default): the same with the
  statistics taken over the samples where the unit is active (pre-activation w_jᵀx + b_j > 0):
  cov₊ = E₊[x y_j] − E₊[x] μ_y. **Default μ_y = E₊[y_j]** (the paper's formula,
  ``y_mean="positive"``); ``y_mean="all"`` uses the unconditional E[y_j] like the reference
  implementations (iNNvestigate 1.0.8, TorchLRP).

Conv layers treat every (image, output position) patch as one sample, padding zeros included.
A zero denominator divides by 1. The backward pass replaces each layer's transposed weight:
PatternNet r_in = Aᵀ r_out, PatternAttribution r_in = (W ⊙ A)ᵀ r_out; ReLU gating and max-pool
routing stay those of the gradient; the result is not multiplied by the input. BatchNorm is
folded into the preceding layer (``captum_ext.lrp.canonizers.MergeBatchNorm``) while fitting
and attributing; the pairs are read from the model's traced graph (any names) besides
``nn.Sequential`` neighbours and ``conv<k>``/``bn<k>`` attributes.

ReLU6 (MobileNet, EfficientNet-Lite) is treated as a ReLU: the ``"relu"`` estimator counts a
unit as active where its pre-activation is positive, and the backward gates by ReLU6's own
derivative, which also closes the units saturated above 6. A Conv/Linear subclass whose forward
pads its input and then applies its own map (TensorFlow "same" padding) is handled with the
padded input (see :func:`captum_ext.core.linear_input.input_map`); other overridden forwards
are refused by name.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from captum._utils.common import _format_output
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import nn
from tqdm.auto import tqdm

from captum_ext.core.canonization import MergeBatchNorm, canonized
from captum_ext.core.gradients import modified_gradients
from captum_ext.core.guard import ModelGuard
from captum_ext.core.isolation import isolated_call, model_view
from captum_ext.core.linear_input import input_map
from captum_ext.core.modified_backward import ForwardFn, register_modified_backward
from captum_ext.core.reprs import ReprFromInit
from captum_ext.core.validation import check_finite, check_positive_int
from captum_ext.lrp.tracing import batchnorm_pairs

__all__ = ["PatternNet", "PatternAttribution"]

_LINEAR_TYPES = (nn.Linear, nn.Conv2d)
_FOLDED_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def _pattern_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's Linear/Conv2d layers by name; ``TypeError`` for other parametrised layers."""
    layers: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, _LINEAR_TYPES):
            if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
                raise TypeError(
                    f"layer {name!r} (Conv2d) uses padding_mode={module.padding_mode!r}; "
                    "PatternNet supports zero padding only."
                )
            input_map(module, name)  # refuses an overridden forward it cannot follow
            layers[name] = module
        elif not isinstance(module, _FOLDED_TYPES) and any(
            True for _ in module.parameters(recurse=False)
        ):
            raise TypeError(
                f"layer {name!r} of type {type(module).__name__} has parameters but PatternNet "
                "supports only nn.Linear and nn.Conv2d (BatchNorm is folded). Replace the layer, "
                "or wrap it so its parameters live in supported sub-modules."
            )
    if not layers:
        raise TypeError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer to explain.")
    return layers


@contextmanager
def _folded_batchnorm(model: nn.Module) -> Iterator[None]:
    if not any(isinstance(m, _FOLDED_TYPES) for m in model.modules()):
        yield
        return
    with canonized(model, [MergeBatchNorm(batchnorm_pairs(model))]):
        yield


def _samples(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> tuple[Any, Any]:
    """Per-group input samples X (G, n, D) and pre-activations Z (G, n, J) of one forward call.

    Conv layers: every output position is one sample, its unfolded patch (padding zeros
    included) the input. Unfolding once beats computing the sums as conv weight gradients
    (measured on CPU), since float64 convolutions have no fast kernels.
    """
    if isinstance(layer, nn.Linear):
        return x.reshape(1, -1, x.shape[-1]), out.reshape(1, -1, out.shape[-1])
    groups = layer.groups
    patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
    batch, features, positions = patches.shape
    patches = patches.view(batch, groups, features // groups, positions)
    xs = patches.permute(1, 0, 3, 2).reshape(groups, batch * positions, features // groups)
    zs = out.reshape(batch, groups, -1, positions).permute(1, 0, 3, 2)
    return xs, zs.reshape(groups, batch * positions, -1)


class _Statistics:
    """Streaming float64 sums for the pattern of one layer (all groups at once)."""

    def __init__(self, layer: nn.Module, relu: bool) -> None:
        self.layer, self.relu = layer, relu
        self.n: torch.Tensor | None = None
        self.sy = self.sx = self.sxy = self.n
        self.n_all = 0
        self.sy_all: torch.Tensor | None = None

    def update(self, x: torch.Tensor, out: torch.Tensor) -> None:
        xs, zs = _samples(self.layer, x.detach(), out.detach())
        xs, zs = xs.double(), zs.double()
        bias = self.layer.bias
        ys = zs if bias is None else zs - bias.detach().double().view(zs.shape[0], 1, -1)
        if self.relu:
            mask = (zs > 0).double()
            masked_y = mask * ys
            # one matmul for both Σ m·x and Σ m·y·x
            both = xs.transpose(1, 2) @ torch.cat([mask, masked_y], 2)
            sx, sxy = both.split(ys.shape[2], dim=2)
            sums = (mask.sum(1), masked_y.sum(1), sx, sxy)
        else:  # every sample counts: Σx is shared by all units (broadcast later)
            count = torch.full_like(ys[:, 0], ys.shape[1])
            sums = (count, ys.sum(1), xs.sum(1).unsqueeze(2), xs.transpose(1, 2) @ ys)
        if self.n is None:
            self.n, self.sy, self.sx, self.sxy = sums
            self.sy_all = ys.sum(1)
        else:
            self.n, self.sy, self.sx, self.sxy = (a + b for a, b in zip(self._all(), sums))
            self.sy_all = self.sy_all + ys.sum(1)
        self.n_all += ys.shape[1]

    def _all(self) -> tuple[torch.Tensor, ...]:
        return self.n, self.sy, self.sx, self.sxy

    def pattern(self, y_mean: str) -> torch.Tensor:
        if self.n is None:
            raise RuntimeError("layer was never called during fit; check the model and data.")
        count = self.n.clamp(min=1.0)  # units never active get a zero pattern
        mean_x = self.sx / count.unsqueeze(1)
        if y_mean == "positive" or not self.relu:
            mean_y = self.sy / count
        else:
            mean_y = self.sy_all / self.n_all
        cov = self.sxy / count.unsqueeze(1) - mean_x * mean_y.unsqueeze(1)  # (G, D, J)
        weight = self.layer.weight.detach()
        w = weight.double().reshape(cov.shape[0], cov.shape[2], cov.shape[1])  # (G, J, D)
        denominator = (w.transpose(1, 2) * cov).sum(1)  # (G, J)
        denominator = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
        pattern = (cov / denominator.unsqueeze(1)).transpose(1, 2)  # (G, J, D)
        return pattern.reshape(weight.shape).to(weight.dtype)


def _output_layers(model: nn.Module, layers: dict[str, nn.Module], batch: torch.Tensor) -> set[str]:
    """Names of the layers whose output is the model's output (no ReLU follows them)."""
    outputs: dict[str, torch.Tensor] = {}  # kept alive: freed memory could be reused
    handles = [
        layer.register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out))
        for name, layer in layers.items()
    ]
    try:
        output = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name for name, out in outputs.items() if out is output}


def _batches(data: Any, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        return data.split(batch_size)
    return (b[0] if isinstance(b, (tuple, list)) else b for b in data)


class _BackwardWith(torch.autograd.Function):
    """Forward: the layer's output unchanged. Backward: the input gradient with ``matrix``."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, out: torch.Tensor, matrix: torch.Tensor, layer: nn.Module
    ) -> torch.Tensor:
        ctx.layer, ctx.matrix, ctx.x_shape = layer, matrix, x.shape
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        layer, matrix = ctx.layer, ctx.matrix
        if isinstance(layer, nn.Linear):
            grad_x = grad @ matrix
        else:
            grad_x = torch.nn.grad.conv2d_input(
                ctx.x_shape, matrix, grad, layer.stride, layer.padding, layer.dilation, layer.groups
            )
        return grad_x, None, None, None


class _PatternBase(ReprFromInit, GradientAttribution):
    """Shared fitting, storage and hooking of PatternNet and PatternAttribution."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
        super().__init__(model)
        self.model = model
        _pattern_layers(model)  # fail early on unsupported layers
        self.patterns: dict[str, torch.Tensor] = {}
        self.pattern_type: str | None = None

    # --- fitting -------------------------------------------------------------------------
    def fit(
        self,
        data: torch.Tensor | Iterable[Any],
        pattern_type: Literal["relu", "linear"] = "relu",
        max_batches: int | None = None,
        progress: bool = True,
        y_mean: Literal["positive", "all"] = "positive",
        batch_size: int = 256,
    ) -> _PatternBase:
        """Estimate the signal pattern of every Linear/Conv2d layer in one pass over ``data``.

        Parameters
        ----------
        data : Tensor or iterable
            A tensor of inputs (split into ``batch_size`` batches) or an iterable such as a
            ``DataLoader`` yielding input tensors or ``(inputs, labels, ...)`` tuples.
        pattern_type : {"relu", "linear"}
            Two-component estimator over active units (default, as the reference code) or the
            linear estimator cov[x, y] / (wᵀ cov[x, y]).
        max_batches : int, optional
            Stop after this many batches.
        progress : bool
            Show a tqdm progress bar.
        y_mean : {"positive", "all"}
            For ``"relu"``: E₊[y] (paper, default) or the unconditional E[y] (reference code).
        batch_size : int
            Batch size when ``data`` is a tensor.

        Returns
        -------
        self
        """
        if pattern_type not in ("relu", "linear"):
            raise ValueError(f"pattern_type must be 'relu' or 'linear', got {pattern_type!r}.")
        if y_mean not in ("positive", "all"):
            raise ValueError(f"y_mean must be 'positive' or 'all', got {y_mean!r}.")
        if max_batches is not None:
            check_positive_int("max_batches", max_batches)
        check_positive_int("batch_size", batch_size)
        parameter = next(self.model.parameters())

        def prepared(batch: torch.Tensor) -> torch.Tensor:
            batch = batch.to(parameter.device, parameter.dtype)
            check_finite(batch, "data")
            return batch

        batches = iter(_batches(data, batch_size))
        first = next(batches, None)
        if first is None:
            raise ValueError("data is empty; pass a non-empty tensor or DataLoader.")
        stats: dict[str, _Statistics] = {}
        handles = []
        # A private eval-mode view: folding and hooks never touch the user's model, so other
        # threads may use it meanwhile (captum_ext.core.isolation).
        model, _ = model_view(self.model)
        try:
            with ModelGuard(model), _folded_batchnorm(model), torch.no_grad():
                layers = _pattern_layers(model)
                outputs = _output_layers(model, layers, prepared(first))
                for name, layer in layers.items():
                    relu = pattern_type == "relu" and name not in outputs
                    stats[name] = _Statistics(layer, relu)
                    handles.append(layer.register_forward_hook(self._fit_hook(stats[name])))
                bar = tqdm(
                    itertools.chain([first], batches), disable=not progress, total=max_batches
                )
                for index, batch in enumerate(bar):
                    if max_batches is not None and index >= max_batches:
                        break
                    model(prepared(batch))  # the hooks update the statistics
                patterns = {name: s.pattern(y_mean) for name, s in stats.items()}
        finally:
            for handle in handles:
                handle.remove()
        for name, pattern in patterns.items():
            if not torch.isfinite(pattern).all():
                raise FloatingPointError(
                    f"pattern of layer {name!r} is not finite; fit in float64 or with more data."
                )
        self.patterns, self.pattern_type = patterns, pattern_type
        return self

    @staticmethod
    def _fit_hook(stats: _Statistics) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            stats.update(input_map(module)(args[0]), output)

        return hook

    # --- storage -------------------------------------------------------------------------
    def patterns_state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted patterns by layer name (same shapes as the weights); save with torch.save."""
        self._require_patterns()
        return {name: p.detach().clone() for name, p in self.patterns.items()}

    def load_patterns(self, state: dict[str, torch.Tensor]) -> _PatternBase:
        """Load patterns from :meth:`patterns_state_dict` (checks names and shapes)."""
        layers = _pattern_layers(self.model)
        missing, unexpected = set(layers) - set(state), set(state) - set(layers)
        if missing or unexpected:
            raise ValueError(
                f"patterns do not match the model: missing {sorted(missing)}, unexpected "
                f"{sorted(unexpected)}."
            )
        for name, layer in layers.items():
            if tuple(state[name].shape) != tuple(layer.weight.shape):
                raise ValueError(
                    f"pattern of {name!r} has shape {tuple(state[name].shape)}, the weight "
                    f"{tuple(layer.weight.shape)}."
                )
            check_finite(state[name], f"patterns[{name!r}]")
        self.patterns = {n: state[n].detach().clone() for n in layers}
        return self

    def _require_patterns(self) -> None:
        if not self.patterns:
            raise RuntimeError(
                f"{type(self).__name__} has no patterns yet: call .fit(training_data) or "
                ".load_patterns(state) before attributing."
            )

    # --- backward ------------------------------------------------------------------------
    def _matrix(self, layer: nn.Module, pattern: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @contextmanager
    def _hooks(self) -> Iterator[ForwardFn]:
        self._require_patterns()
        with ExitStack() as stack:
            stack.enter_context(_folded_batchnorm(self.model))
            layers = _pattern_layers(self.model)
            for name, layer in layers.items():
                pattern = self.patterns[name].to(layer.weight.device, layer.weight.dtype)
                matrix = self._matrix(layer, pattern).detach()
                handle = layer.register_forward_hook(self._backward_hook(matrix))
                stack.callback(handle.remove)
            yield self.model

    @staticmethod
    def _backward_hook(matrix: torch.Tensor) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> Any:
            if not torch.is_grad_enabled():
                return output
            x = input_map(module)(args[0])  # the input the layer's map really reads
            return _BackwardWith.apply(x, output.detach(), matrix, module)

        return hook

    @log_usage()
    @isolated_call
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """Back-propagate the target output with the pattern rule (no final input product).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Batched inputs (first axis = batch).
        target : int, tuple, Tensor or list, optional
            Output index per Captum's convention.
        additional_forward_args : Any, optional
            Extra arguments passed to the model after the inputs.

        Returns
        -------
        Tensor or tuple of Tensor
            The signal estimate (PatternNet) or attribution (PatternAttribution), shaped as
            ``inputs``.
        """
        self._require_patterns()
        is_tuple, grads = modified_gradients(
            self.model, self._hooks, inputs, target, additional_forward_args, type(self).__name__
        )
        return _format_output(is_tuple, grads)


class PatternNet(_PatternBase):
    """PatternNet (Kindermans et al., 2018): r_in = Aᵀ r_out, the estimated signal.

    Fit the patterns first (see :meth:`fit`); the module docstring explains the estimator.

    Examples
    --------
    >>> from captum_ext import PatternNet
    >>> explainer = PatternNet(model).fit(train_loader, max_batches=50)  # doctest: +SKIP
    >>> signal = explainer.attribute(images, target=labels)  # doctest: +SKIP
    """

    def _matrix(self, layer: nn.Module, pattern: torch.Tensor) -> torch.Tensor:
        return pattern


class PatternAttribution(_PatternBase):
    """PatternAttribution (Kindermans et al., 2018): r_in = (W ⊙ A)ᵀ r_out.

    Fit the patterns first (see :meth:`fit`); the module docstring explains the estimator.

    Examples
    --------
    >>> from captum_ext import PatternAttribution
    >>> explainer = PatternAttribution(model).fit(train_images)  # doctest: +SKIP
    >>> relevance = explainer.attribute(images, target=labels)  # doctest: +SKIP
    """

    def _matrix(self, layer: nn.Module, pattern: torch.Tensor) -> torch.Tensor:
        return layer.weight.detach() * pattern


@register_modified_backward(PatternNet, PatternAttribution)
@contextmanager
def _pattern_backward(method: _PatternBase) -> Iterator[ForwardFn]:
    with method._hooks() as forward:
        yield forward
