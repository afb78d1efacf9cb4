"""DeepLIFT with the linear rule that keeps positive and negative parts apart, and its ablation.

Shrikumar, Greenside and Kundaje, "Learning Important Features Through Propagating Activation
Differences", ICML 2017 (linear rule and RevealCancel, section 3.5); Sixt, Granz and Landgraf,
"When Explanations Lie: Why Many Modified BP Attributions Fail", ICML 2020 (eq. 13 and the
"DeepLIFT ablation").

Notation: ``h`` is the input of a linear-type layer (``nn.Linear``/``nn.ConvNd``), ``h⁰`` the
same tensor in the reference (baseline) pass, ``Δh = h − h⁰``; ``z = Wh + b`` its output,
``W⁺ = max(W, 0)``, ``W⁻ = min(W, 0)``. The layer splits ``Δz`` into the parts

``Δz⁺ = W⁺(Δh)⁺ + W⁻(Δh)⁻`` and ``Δz⁻ = W⁻(Δh)⁺ + W⁺(Δh)⁻``  (``Δz⁺ + Δz⁻ = Δz``),

and back-propagates the multipliers ``r⁺``, ``r⁻`` of those parts to one multiplier of ``h``
(eq. 13 of Sixt et al., with ``M>0``/``M<0`` the masks of positive/negative ``Δh``)::

    r_h = M>0 ⊙ (W⁺ᵀr⁺ + W⁻ᵀr⁻) + M<0 ⊙ (W⁻ᵀr⁺ + W⁺ᵀr⁻) + M=0 ⊙ ½Wᵀ(r⁺ + r⁻).

(The ``Δh = 0`` term is the ``deeplift`` package's convention; it never changes an attribution,
which multiplies by ``Δh``, but it decides what CSC's random vectors see.) Positive and negative
multipliers mix through the cross terms ``W⁻ᵀr⁻`` and ``W⁻ᵀr⁺``: this is why DeepLIFT does not
converge to a rank-1 chain. A ReLU between two layers turns the multiplier ``g`` of its output
into ``r⁺ = s⁺g`` and ``r⁻ = s⁻g`` with RevealCancel (default)::

    Δy⁺ = ½[f(z⁰+Δz⁺) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁻)],   s⁺ = Δy⁺/Δz⁺,
    Δy⁻ = ½[f(z⁰+Δz⁻) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁺)],   s⁻ = Δy⁻/Δz⁻,

(the limits ``½[f'(z⁰) + f'(z⁰+Δz∓)]`` where a part is below ``eps``), or with the Rescale rule
``s⁺ = s⁻ = Δy/Δz``. At a layer whose output is not consumed by a ReLU (the logits) both
multipliers equal the incoming one. With ``nonlinear_rule="rescale"`` the result therefore
equals Captum's ``DeepLift`` (rescale, plain ``Wᵀ``) exactly; with either rule
``Σ attribution = f(x) − f(x⁰)`` on networks of linear layers and ReLUs (summation to delta).

:class:`DeepLiftAblation` drops the cross terms (our reading of Sixt et al.'s "only W⁺ for the
positive rule and W⁻ for the negative rule"): ``r_h = M>0 ⊙ W⁺ᵀr⁺ + M<0 ⊙ W⁻ᵀr⁻ + M=0 ⊙
½(W⁺ᵀr⁺ + W⁻ᵀr⁻)``, so the positive chain multiplies non-negative and the negative chain
non-positive matrices; the paper reports that it converges. It does not sum to delta.

Max pooling passes its gradient (the ``deeplift`` package's default mode), so summation to
delta holds only approximately on networks with max pooling. Supported leaf modules: linear
layers, ``nn.ReLU`` and ``nn.ReLU6``, max/average pooling, padding, flatten/identity/dropout
and BatchNorm (folded into the preceding layer where the traced graph shows the pair, else
passed by its gradient, the exact multiplier of an affine map); anything else is refused by
name before computing. ReLU6 gets the same rules as ReLU with ``f = relu6`` (Rescale
``Δy/Δz``; RevealCancel's parts; the limits use its derivative, 1 on ``0 < z < 6``). A
Conv/Linear subclass whose forward pads its input before its own map (TensorFlow "same"
padding) is handled with the padded input (:func:`captum_ext.core.linear_input.input_map`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
    _select_targets,
)
from captum.attr import DeepLift
from captum.log import log_usage
from torch import nn

from captum_ext.core.canonization import (
    MergeBatchNorm,
    SumModule,
    canonized,
    default_canonizers,
)
from captum_ext.core.linear_input import PADDING_TYPES, input_map
from captum_ext.core.modified_backward import (
    ForwardFn,
    modified_backward,
    register_modified_backward,
)
from captum_ext.core.modules import (
    AVG_POOL_TYPES,
    BATCHNORM_TYPES,
    DROPOUT_TYPES,
    LINEAR_TYPES,
    MAX_POOL_TYPES,
)
from captum_ext.core.validation import (
    baseline_args,
    check_finite,
    check_result_finite,
    check_targets,
)
from captum_ext.lrp.tracing import batchnorm_pairs

__all__ = ["DeepLiftAblation", "DeepLiftLinear"]

_CONV_INPUT = {
    nn.Conv1d: torch.nn.grad.conv1d_input,
    nn.Conv2d: torch.nn.grad.conv2d_input,
    nn.Conv3d: torch.nn.grad.conv3d_input,
}
# Leaf modules whose ordinary gradient is the DeepLIFT multiplier (linear maps, routing) or
# the rule this module documents (max pooling: gradient, as the deeplift package's default).
_PASS = (
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    *DROPOUT_TYPES,
    *AVG_POOL_TYPES,
    *MAX_POOL_TYPES,
    *BATCHNORM_TYPES,
    SumModule,
    *PADDING_TYPES,
)
# The ReLU-type non-linearities and (function, derivative) of each.
_RELUS = (nn.ReLU, nn.ReLU6)


def _apply(module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``weight · x`` with the module's geometry and no bias."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight)
    return module._conv_forward(x, weight, None)


def _transpose(module: nn.Module, shape: torch.Size, weight: torch.Tensor, r: torch.Tensor):
    """``weightᵀ r`` (vector–Jacobian product of the bias-free map)."""
    if isinstance(module, nn.Linear):
        return r.matmul(weight)
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        with torch.enable_grad():
            probe = torch.zeros(shape, dtype=r.dtype, device=r.device, requires_grad=True)
            return torch.autograd.grad(_apply(module, probe, weight), probe, r)[0]
    conv_input = next(f for t, f in _CONV_INPUT.items() if isinstance(module, t))
    return conv_input(
        shape, weight, r, module.stride, module.padding, module.dilation, module.groups
    )


class _LinearRule(torch.autograd.Function):
    """Forward: the layer output plus two zero "part" tensors a following ReLU routes ``r⁺``
    and ``r⁻`` into. Backward: eq. 13 (or the ablation) from ``(g + g⁺, g + g⁻)``."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, z: torch.Tensor, info: dict) -> Any:
        ctx.info = info
        ctx.set_materialize_grads(False)
        part = z.new_zeros(()).expand_as(z)
        return z.clone(), part.clone(), part.clone()

    @staticmethod
    def backward(ctx: Any, g: Any, g_pos: Any, g_neg: Any) -> tuple[Any, ...]:
        info = ctx.info
        zero = 0.0
        base = zero if g is None else g
        r_pos = base if g_pos is None else base + g_pos
        r_neg = base if g_neg is None else base + g_neg
        if isinstance(r_pos, float) and isinstance(r_neg, float):
            return None, None, None
        template = next(t for t in (g, g_pos, g_neg) if t is not None)
        r_pos = r_pos if isinstance(r_pos, torch.Tensor) else torch.zeros_like(template)
        r_neg = r_neg if isinstance(r_neg, torch.Tensor) else torch.zeros_like(template)
        module, shape, sign = info["module"], info["shape"], info["sign"]
        w_pos, w_neg = info["w_pos"], info["w_neg"]
        a = _transpose(module, shape, w_pos, r_pos)  # W⁺ᵀr⁺
        b = _transpose(module, shape, w_neg, r_neg)  # W⁻ᵀr⁻
        if info["ablation"]:
            m = torch.where(sign > 0, a, torch.where(sign < 0, b, 0.5 * (a + b)))
            return m, None, None
        c = _transpose(module, shape, w_neg, r_pos)  # W⁻ᵀr⁺
        d = _transpose(module, shape, w_pos, r_neg)  # W⁺ᵀr⁻
        m = torch.where(sign > 0, a + b, torch.where(sign < 0, c + d, 0.5 * (a + b + c + d)))
        return m, None, None


class _SplitReLU(torch.autograd.Function):
    """ReLU output whose multiplier ``g`` goes to the layer's parts as ``s⁺g`` and ``s⁻g``."""

    @staticmethod
    def forward(ctx: Any, part_pos, part_neg, y, s_pos, s_neg) -> torch.Tensor:
        ctx.save_for_backward(s_pos, s_neg)
        return y.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        s_pos, s_neg = ctx.saved_tensors
        return g * s_pos, g * s_neg, None, None, None


class _ScaledReLU(torch.autograd.Function):
    """ReLU output with the Rescale multiplier ``Δy/Δz`` (input not from a linear rule)."""

    @staticmethod
    def forward(ctx: Any, z, y, s) -> torch.Tensor:
        ctx.save_for_backward(s)
        return y.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        (s,) = ctx.saved_tensors
        return g * s, None, None


def _relu_step(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def _relu6_step(x: torch.Tensor) -> torch.Tensor:
    return ((x > 0) & (x < 6)).to(x.dtype)


def _activation(module: nn.Module) -> tuple[Any, Any]:
    return (F.relu6, _relu6_step) if isinstance(module, nn.ReLU6) else (torch.relu, _relu_step)


def reveal_cancel_multipliers(
    z0: torch.Tensor,
    dz_pos: torch.Tensor,
    dz_neg: torch.Tensor,
    eps: float,
    relu: Any = torch.relu,
    step: Any = _relu_step,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RevealCancel multipliers ``(s⁺, s⁻)`` of a ReLU (Shrikumar et al. 2017, eq. in §3.5.3).

    ``dz_pos ≥ 0`` and ``dz_neg ≤ 0`` are the positive and negative parts of ``z − z0``;
    ``relu``/``step``: the activation and its derivative (ReLU6: ``F.relu6`` and its step).
    """
    z = z0 + dz_pos + dz_neg
    dy_pos = 0.5 * (relu(z0 + dz_pos) - relu(z0)) + 0.5 * (relu(z) - relu(z0 + dz_neg))
    dy_neg = 0.5 * (relu(z0 + dz_neg) - relu(z0)) + 0.5 * (relu(z) - relu(z0 + dz_pos))
    limit_pos = 0.5 * (step(z0) + step(z0 + dz_neg))
    limit_neg = 0.5 * (step(z0) + step(z0 + dz_pos))
    big_pos, big_neg = dz_pos > eps, dz_neg < -eps
    s_pos = torch.where(big_pos, dy_pos / torch.where(big_pos, dz_pos, 1.0), limit_pos)
    s_neg = torch.where(big_neg, dy_neg / torch.where(big_neg, dz_neg, 1.0), limit_neg)
    return s_pos, s_neg


def rescale_multiplier(
    z0: torch.Tensor, z: torch.Tensor, eps: float, relu: Any = torch.relu, step: Any = _relu_step
) -> torch.Tensor:
    """Rescale multiplier ``Δy/Δz`` of a ReLU (its gradient at ``z`` where ``|Δz| < eps``)."""
    dz = z - z0
    big = dz.abs() >= eps
    ratio = (relu(z) - relu(z0)) / torch.where(big, dz, 1.0)
    return torch.where(big, ratio, step(z))


class _State:
    """Reference activations per module call and the parts handed from layers to ReLUs."""

    def __init__(self, method: DeepLiftLinear) -> None:
        self.method = method
        self.reference = True
        self.records: dict[nn.Module, list[torch.Tensor]] = {}
        self.position: dict[nn.Module, int] = {}
        self.parts: dict[int, tuple[torch.Tensor, ...]] = {}

    def start(self, reference: bool) -> None:
        self.reference = reference
        self.position = {}
        self.parts = {}
        if reference:
            self.records = {}

    def reference_of(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Record (reference pass) or fetch (actual pass) the reference input of this call."""
        if self.reference:
            self.records.setdefault(module, []).append(x.detach().clone())
            return x
        index = self.position.get(module, 0)
        self.position[module] = index + 1
        records = self.records.get(module, [])
        if index >= len(records):
            raise RuntimeError(
                f"{type(module).__name__} ran more often than in the reference pass; the "
                "model's forward must not depend on the input values."
            )
        reference = records[index]
        if reference.shape != x.shape:
            raise ValueError(
                f"baseline activations of {type(module).__name__} have shape "
                f"{tuple(reference.shape)}, the inputs' {tuple(x.shape)}; give one baseline per "
                "sample or one that broadcasts."
            )
        return reference

    def linear_hook(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> Any:
        h = args[0]
        h0 = self.reference_of(module, h)
        if self.reference or not torch.is_grad_enabled():
            return None
        # The input the layer's map really reads (padded by a "same"-padding subclass); its
        # gradient carries the multiplier back to the hook's input.
        pre = input_map(module)
        h, h0 = pre(h), pre(h0)
        weight = module.weight.detach()
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        with torch.no_grad():
            dh = h.detach() - h0
            dh_pos, dh_neg = dh.clamp(min=0), dh.clamp(max=0)
            dz_pos = _apply(module, dh_pos, w_pos) + _apply(module, dh_neg, w_neg)
            dz_neg = _apply(module, dh_pos, w_neg) + _apply(module, dh_neg, w_pos)
        info = {
            "module": module,
            "shape": h.shape,
            "sign": torch.sign(dh).to(torch.int8),
            "w_pos": w_pos,
            "w_neg": w_neg,
            "ablation": self.method._ablation,
        }
        z, part_pos, part_neg = _LinearRule.apply(h, out.detach(), info)
        self.parts[id(z)] = (z, part_pos, part_neg, dz_pos, dz_neg)
        return z

    def relu_hook(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> Any:
        z = args[0]
        z0 = self.reference_of(module, z)
        if self.reference or not torch.is_grad_enabled():
            return None
        eps = self.method.eps
        parts = self.parts.get(id(z))
        y = out.detach()
        if parts is not None and parts[0] is z and self.method.nonlinear_rule == "reveal_cancel":
            _, part_pos, part_neg, dz_pos, dz_neg = parts
            s_pos, s_neg = reveal_cancel_multipliers(z0, dz_pos, dz_neg, eps, *_activation(module))
            return _SplitReLU.apply(part_pos, part_neg, y, s_pos, s_neg)
        # Rescale: one multiplier for both parts (also when the input's parts are unknown,
        # e.g. after a residual addition: with one part zero RevealCancel reduces to Rescale).
        s = rescale_multiplier(z0, z.detach(), eps, *_activation(module))
        return _ScaledReLU.apply(z, y, s)


def _check_modules(model: nn.Module, name: str) -> None:
    # Children of a linear layer (a "same"-padding subclass's padding) run inside its forward,
    # which input_map checks as a whole.
    inside = tuple(f"{path}." for path, m in model.named_modules() if isinstance(m, LINEAR_TYPES))
    for path, module in model.named_modules():
        if next(module.children(), None) is not None and not isinstance(module, SumModule):
            continue
        if path.startswith(inside):
            continue
        if isinstance(module, (*LINEAR_TYPES, *_RELUS, *_PASS)):
            continue
        raise TypeError(
            f"{name} has no rule for module {path or '<root>'!r} of type "
            f"{type(module).__name__}; it supports linear layers, nn.ReLU/ReLU6, pooling, "
            "padding, reshapes, dropout and BatchNorm. Use captum.attr.DeepLift for other "
            "non-linearities."
        )
    for path, module in model.named_modules():
        if isinstance(module, LINEAR_TYPES):
            input_map(module, path)  # refuses an overridden forward it cannot follow


class DeepLiftLinear(DeepLift):
    """DeepLIFT with the separating linear rule (eq. 13 of Sixt et al. 2020) and RevealCancel.

    Shrikumar et al. (2017) split every difference-from-reference into a positive and a negative
    part and propagate their multipliers separately; Captum's ``DeepLift`` implements only the
    Rescale rule with a plain ``Wᵀ``. The module docstring gives the rules.

    Parameters
    ----------
    model : nn.Module
        Network of linear layers, ReLU modules, pooling and reshapes (``nn.ReLU`` modules, not
        ``F.relu``; in-place ReLUs and BatchNorm are handled by canonizers for the call).
    nonlinear_rule : {"reveal_cancel", "rescale"}
        Rule at the ReLUs. ``"rescale"`` reproduces Captum's ``DeepLift``.
    multiply_by_inputs : bool
        Return ``(x − baseline) ⊙ multipliers`` (the attribution) or the multipliers.
    eps : float
        Parts smaller than ``eps`` use the rule's limit (the derivative).

    Examples
    --------
    >>> from captum_ext import DeepLiftLinear
    >>> attribution = DeepLiftLinear(model).attribute(images, target=labels)  # doctest: +SKIP
    """

    _ablation = False

    def __init__(
        self,
        model: nn.Module,
        nonlinear_rule: Literal["reveal_cancel", "rescale"] = "reveal_cancel",
        multiply_by_inputs: bool = True,
        eps: float = 1e-10,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__} explains an nn.Module, got {type(model)}.")
        if nonlinear_rule not in ("reveal_cancel", "rescale"):
            raise ValueError(
                f"nonlinear_rule must be 'reveal_cancel' or 'rescale', got {nonlinear_rule!r}."
            )
        super().__init__(model, multiply_by_inputs=multiply_by_inputs, eps=eps)
        self.nonlinear_rule = nonlinear_rule

    @log_usage()
    def attribute(  # type: ignore[override]
        self,
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
    ) -> Any:
        """Attributions of ``target`` relative to ``baselines`` (zeros by default).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Batched inputs; never modified.
        baselines : scalar, Tensor or tuple, optional
            Reference input(s), broadcast to the inputs; zeros by default.
        target : int, tuple, Tensor or list, optional
            Output index per Captum's convention.
        additional_forward_args : Any, optional
            Extra forward arguments (not attributed).
        return_convergence_delta : bool
            Also return ``Σ attribution − (f(x) − f(baseline))`` per sample.

        Returns
        -------
        Tensor or tuple of Tensor (and the delta)
        """
        is_tuple = _is_tuple(inputs)
        input_tuple = _format_tensor_into_tuples(inputs)
        check_finite(input_tuple)
        extra = _format_additional_forward_args(additional_forward_args) or ()
        base_tuple = baseline_args(input_tuple, baselines)[: len(input_tuple)]
        leaves = tuple(x.detach().requires_grad_() for x in input_tuple)
        with modified_backward(self) as forward, torch.enable_grad():
            output = forward(*leaves, *extra, baselines=base_tuple)
            check_targets(target, output)
            selected = _select_targets(output, target)
            grads = torch.autograd.grad(
                selected, leaves, grad_outputs=torch.ones_like(selected), allow_unused=True
            )
        grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads))
        if self.multiplies_by_inputs:
            grads = tuple(g * (x - b) for g, x, b in zip(grads, input_tuple, base_tuple))
        check_result_finite(grads, type(self).__name__)
        result = _format_output(is_tuple, grads)
        if not return_convergence_delta:
            return result
        with torch.no_grad():
            start = _select_targets(self.model(*base_tuple, *extra), target)
            end = selected.detach()
        total = sum(g.reshape(len(g), -1).sum(1) for g in grads)
        return result, total - (end - start)


class DeepLiftAblation(DeepLiftLinear):
    """Sixt et al.'s (2020) "DeepLIFT ablation": eq. 13 without the cross terms.

    The positive multipliers travel only through ``W⁺`` and the negative ones only through
    ``W⁻`` (see the module docstring), which decouples the two chains; Sixt et al. show it
    converges to a rank-1 chain like the z⁺ rule. Parameters as :class:`DeepLiftLinear`.
    """

    _ablation = True


@register_modified_backward(DeepLiftLinear)
@contextmanager
def _deeplift_linear_backward(method: DeepLiftLinear) -> Iterator[ForwardFn]:
    model = method.model
    state = _State(method)
    with ExitStack() as stack:
        pairs = batchnorm_pairs(model)  # BatchNorm pairs of any naming, from the traced graph
        canonizers = [
            MergeBatchNorm(pairs) if isinstance(c, MergeBatchNorm) else c
            for c in default_canonizers()
        ]
        stack.enter_context(canonized(model, canonizers))
        _check_modules(model, type(method).__name__)
        for module in model.modules():
            hook = None
            if isinstance(module, LINEAR_TYPES):
                hook = state.linear_hook
            elif isinstance(module, _RELUS):
                hook = state.relu_hook
            if hook is not None:
                # prepended, so the caller's own hooks see the rule-routed output
                stack.callback(module.register_forward_hook(hook, prepend=True).remove)

        def forward(*args: Any, baselines: Any = None) -> torch.Tensor:
            if not args:
                raise ValueError("forward needs the model inputs.")
            reference = baseline_args(args, baselines)
            state.start(reference=True)
            with torch.no_grad():
                model(*reference)
            state.start(reference=False)
            with torch.enable_grad():
                return model(*args)

        yield forward
