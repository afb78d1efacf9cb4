"""LRP propagation rules as Captum ``PropagationRule`` objects with a direct relevance backward.

Each rule maps the relevance ``R_out`` at a layer's output to the relevance at its input(s)
(Bach et al. 2015; Montavon et al. 2017, 2019; formulas as analysed in Sixt et al. 2020,
"When Explanations Lie", Sixt et al. (2020)). Notation: ``z = Wx + b``, ``W⁺ = max(W, 0)``,
``W⁻ = min(W, 0)``, ``x⁺``/``x⁻`` likewise, ``stab(z) = z + ε·sign(z)`` with ``sign(0) = +1``.

Mechanism
---------
A rule is attached with a forward hook on its module (``rule.forward_hook``, which is also the
hook Captum's own :class:`captum.attr.LRP` registers, so ``module.rule = ZPlusRule()`` works
there too). The hook returns the layer output routed through a custom autograd function whose
input is the *detached* output plus the layer input(s); its backward receives ``R_out`` as the
gradient and returns the input relevance computed from the rule's formula. Relevance therefore
travels as the autograd gradient (Captum's convention), the original layer's backward is never
run and only the modified weights cost anything in the backward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr._utils.lrp_rules import PropagationRule
from torch import nn

from captum_ext.core.validation import check_positive
from captum_ext.lrp._layer import (
    LINEAR_TYPES,
    Layer,
    divide_,
    float_mask,
    nonnegative,
    safe_divide,
    stabilize,
    stabilize_,
)
from captum_ext.lrp.canonizers import SumModule

__all__ = [
    "AlphaBetaRule",
    "EpsilonRule",
    "FlatRule",
    "GammaRule",
    "GradientRule",
    "LRPRule",
    "NormRule",
    "PassRule",
    "WSquareRule",
    "ZBoxRule",
    "ZPlusRule",
]


class _Relevance(torch.autograd.Function):
    """Identity in the forward; the rule's relevance map in the backward."""

    @staticmethod
    def forward(ctx: Any, rule: LRPRule, layer: Any, z: torch.Tensor, *inputs: torch.Tensor):
        ctx.rule, ctx.layer = rule, layer
        saved = inputs if rule._needs_inputs or rule._needs_z else ()
        storage = z.untyped_storage().data_ptr()
        ctx.z = ctx.z_version = None
        if any(x.untyped_storage().data_ptr() == storage for x in inputs):
            # The output is an input (e.g. Dropout in eval mode), which other backward functions
            # may have saved: hand out a copy, so a later in-place op cannot change either.
            ctx.save_for_backward(*((z, *saved) if rule._needs_z else saved))
            ctx.saved_z = rule._needs_z
            return z.clone()
        # Hand out the detached output itself instead of a copy of a possibly large activation
        # (mark_dirty bumps only this output's version). The backward reads z through an alias
        # and recomputes it from the saved inputs if the output was modified in place since.
        ctx.save_for_backward(*saved)
        ctx.saved_z = False
        if rule._needs_z:
            ctx.z = z.detach()
            # autograd bumps a dirty output's version exactly once when forward returns
            ctx.z_version = z._version + 1
        ctx.mark_dirty(z)
        return z

    @staticmethod
    def backward(ctx: Any, r_out: torch.Tensor):
        saved = ctx.saved_tensors
        if ctx.saved_z:
            z, *inputs = saved
        else:
            z, inputs = ctx.z, saved
            if z is not None and z._version != ctx.z_version:
                z = ctx.rule._output(ctx.layer, tuple(inputs))
        r_in = ctx.rule.relevance(ctx.layer, tuple(inputs), z, r_out)
        ctx.rule._record(r_out, r_in)
        return (None, None, None, *r_in)


class LRPRule(PropagationRule):
    """Base class of the rules: subclasses implement :meth:`relevance`.

    Attributes
    ----------
    layer_types : tuple of type
        Module types the rule applies to (checked when a rule set is resolved).
    """

    layer_types: tuple[type, ...] = LINEAR_TYPES
    # What the backward needs: the layer output z and the layer inputs (saved in the forward).
    _needs_z: bool = True
    _needs_inputs: bool = True

    def relevance(
        self,
        layer: Any,
        inputs: tuple[torch.Tensor, ...],
        z: torch.Tensor,
        r_out: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Input relevance of each input, given the output relevance ``r_out``."""
        raise NotImplementedError

    def applies_to(self, module: nn.Module) -> bool:
        return isinstance(module, self.layer_types)

    def refusal(self, module: nn.Module, name: str = "") -> str:
        """Why this rule cannot handle ``module`` (used in the error a rule set raises)."""
        return (
            f"{type(self).__name__} cannot handle module {name!r} of type "
            f"{type(module).__name__}; it supports "
            f"{', '.join(t.__name__ for t in self.layer_types)}."
        )

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        """Route ``outputs`` through this rule's relevance backward (forward hook signature)."""
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        if not isinstance(outputs, torch.Tensor) or not all(
            isinstance(t, torch.Tensor) for t in inputs
        ):
            raise TypeError(
                f"{type(self).__name__} needs tensor inputs and a tensor output, got "
                f"{type(module).__name__} returning {type(outputs).__name__}."
            )
        layer = Layer.of(module) if isinstance(module, LINEAR_TYPES) else module
        return _Relevance.apply(self, layer, outputs.detach(), *inputs)

    @staticmethod
    def _output(layer: Any, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The layer output recomputed from its inputs (when the handed-out one was changed)."""
        if isinstance(layer, Layer):
            return layer.forward(*inputs, layer.weight, layer.bias)
        return layer.forward(*inputs)

    # Captum's LRP calls this in its first pass; our rules never edit the weights in place.
    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        return None

    def _record(self, r_out: torch.Tensor, r_in: tuple[torch.Tensor, ...]) -> None:
        # Captum's LayerLRP reads these per-instance dicts when it set them up (never the
        # class-level defaults, which are shared by every rule).
        if "relevance_output" in vars(self):
            self.relevance_output[r_out.device] = r_out.detach()
        if "relevance_input" in vars(self):
            values = [r.detach() for r in r_in]
            self.relevance_input[r_out.device] = values[0] if len(values) == 1 else values

    def __repr__(self) -> str:
        # Captum's LayerLRP adds relevance_input/relevance_output dicts to the rule at run time
        params = ", ".join(
            f"{key}={value!r}"
            for key, value in vars(self).items()
            if not key.startswith(("_", "relevance_"))
        )
        return f"{type(self).__name__}({params})"


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x⁺, x⁻)``, with ``x⁻ = None`` when ``x`` has no negative entry (post-ReLU inputs)."""
    if nonnegative(x):
        return x, None
    return x.clamp(min=0), x.clamp(max=0)


def _check_stabilizer(value: float) -> float:
    check_positive("stabilizer", value)
    return float(value)


class EpsilonRule(LRPRule):
    """LRP-ε: ``R_i = x_i Σ_j w_ij R_j / stab_ε(z_j)`` with the bias inside ``z``.

    ``epsilon=0`` is LRP-0 (gradient × input on bias-free ReLU networks; a zero ``z`` then passes
    nothing instead of dividing by zero).

    Parameters
    ----------
    epsilon : float
        Stabiliser ε ≥ 0 added with the sign of ``z``.

    Examples
    --------
    >>> layer.rule = EpsilonRule(0.25)  # usable with captum.attr.LRP as well
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        check_positive("epsilon", epsilon, allow_zero=True)
        self.epsilon = float(epsilon)

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        s = safe_divide(r_out, stabilize(z, self.epsilon))
        return (x * layer.transpose(x.shape, layer.weight, s),)


class AlphaBetaRule(LRPRule):
    """LRP-αβ, generalised to signed inputs (as zennit): α − β = 1, α, β ≥ 0.

    Positive part: denominator ``W⁺x⁺ + W⁻x⁻ + b⁺``, relevance ``x⁺⊙W⁺ᵀs_α + x⁻⊙W⁻ᵀs_α``;
    negative part: denominator ``W⁻x⁺ + W⁺x⁻ + b⁻``, relevance ``x⁺⊙W⁻ᵀs_β + x⁻⊙W⁺ᵀs_β``;
    ``R = α·positive − β·negative``. Captum's ``Alpha1_Beta0_Rule`` only clamps the weights and
    is wrong for signed inputs; this rule is not.

    Parameters
    ----------
    alpha, beta : float
        Weights of the positive and negative contributions (Sixt et al., 2020, uses α2β1 and α5β4).
    stabilizer : float
        ε of the denominators' stabiliser.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        check_positive("alpha", alpha, allow_zero=True)
        check_positive("beta", beta, allow_zero=True)
        if abs(alpha - beta - 1.0) > 1e-9:
            raise ValueError(
                f"AlphaBetaRule needs alpha - beta == 1 to conserve relevance, got alpha={alpha}, "
                f"beta={beta}; e.g. AlphaBetaRule(2, 1) or AlphaBetaRule(1, 0)."
            )
        self.alpha, self.beta = float(alpha), float(beta)
        self.stabilizer = _check_stabilizer(stabilizer)

    _needs_z = False

    def _part(self, layer, x_pos, x_neg, w_a, w_b, bias, r_out, positive=False):
        # Relevance of one part: inputs x⁺ through w_a (with bias) and x⁻ through w_b. The
        # temporaries are updated in place; with signed inputs x⁺ and x⁻ go through one
        # stacked product each way. The positive part's denominator W⁺x⁺ + W⁻x⁻ + b⁺ is a sum
        # of non-negative terms: its stabiliser is +ε everywhere (one pass, no sign test).
        if x_neg is None:
            z = layer.forward(x_pos, w_a, bias)
        else:
            z = layer.forward_sum([x_pos, x_neg], [w_a, w_b], bias)
        z = z.add_(self.stabilizer) if positive else stabilize_(z, self.stabilizer)
        s = divide_(r_out, z)
        if x_neg is None:
            return layer.transpose(x_pos.shape, w_a, s).mul_(x_pos)
        t_pos, t_neg = layer.transpose_many(x_pos.shape, [w_a, w_b], s)
        return (t_pos * x_pos).add_(t_neg * x_neg)

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        x_pos, x_neg = _split(x)
        w_pos = layer.weight.clamp(min=0)
        # W⁻ only matters for signed inputs or β ≠ 0 (z⁺ after a ReLU never needs it).
        w_neg = None if x_neg is None and self.beta == 0.0 else layer.weight.clamp(max=0)
        b = layer.bias
        b_pos = None if b is None else b.clamp(min=0)
        r = self._part(layer, x_pos, x_neg, w_pos, w_neg, b_pos, r_out, positive=True)
        if self.alpha != 1.0:
            r = self.alpha * r
        if self.beta != 0.0:
            b_neg = None if b is None else b.clamp(max=0)
            r = r - self.beta * self._part(layer, x_pos, x_neg, w_neg, w_pos, b_neg, r_out)
        return (r,)


class ZPlusRule(AlphaBetaRule):
    """LRP-z⁺ (= α1β0 generalised to signed inputs): only positive contributions propagate.

    Parameters
    ----------
    stabilizer : float
        ε of the denominator's stabiliser.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(1.0, 0.0, stabilizer)

    def __repr__(self) -> str:
        return f"ZPlusRule(stabilizer={self.stabilizer!r})"


class GammaRule(LRPRule):
    """Generalised LRP-γ (Montavon et al. 2019; Andéol et al. 2021), for signed inputs.

    For outputs with ``z > 0`` the weights are ``W + γW⁺`` on the ``x⁺`` path (with bias
    ``b + γb⁺``) and ``W + γW⁻`` on the ``x⁻`` path; for ``z < 0`` the roles swap; ``z = 0``
    passes nothing. γ = 0 is LRP-0, γ → ∞ tends to z⁺.

    Parameters
    ----------
    gamma : float
        γ ≥ 0 (default 0.25).
    stabilizer : float
        ε of the denominators' stabiliser.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        check_positive("gamma", gamma, allow_zero=True)
        self.gamma = float(gamma)
        self.stabilizer = _check_stabilizer(stabilizer)

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        g, w, b = self.gamma, layer.weight, layer.bias
        w_pos = w.clamp(min=0)
        b_pos = None if b is None else b.clamp(min=0)
        x_pos, x_neg = _split(x)
        # Masks as float 0/1 tensors and arithmetic instead of torch.where (see _layer).
        neg = float_mask(torch.lt, z) if x_neg is None else None
        if neg is not None and not bool(neg.mul(r_out).any()):
            # Non-negative input and no relevance on outputs with z < 0 (the usual case after
            # a ReLU): only the z > 0 branch carries relevance, and z_up = z + γ(W⁺x + b⁺)
            # costs one extra convolution and (W + γW⁺)ᵀs_up one transposed product. Only
            # entries with z > 0 are used; with z clamped at 0 the denominator is ≥ ε > 0
            # everywhere (W⁺x + b⁺ ≥ 0), equal to z_up + ε where z > 0, so nothing is infinite.
            z_up = layer.forward(x, w_pos, b_pos).mul_(g).add_(z.clamp(min=0))
            s_up = divide_(r_out, z_up.add_(self.stabilizer)).mul_(float_mask(torch.gt, z))
            return (layer.transpose(x.shape, w + g * w_pos, s_up).mul_(x),)
        if neg is not None:
            # Non-negative input: with p = W⁺x + b⁺ (one extra convolution), z_up = z + γp and
            # z_down = (1 + γ)z − γp; only the entry matching the sign of z is ever used, so
            # one denominator and one s serve both branches (s_up = s on z > 0, s_down on z < 0).
            gp = layer.forward(x, w_pos, b_pos).mul_(g)
            # z_down − z_up = γz − 2γp: den = z_up + neg·(γz − 2γp)
            shift = (z * g).sub_(gp * 2.0).mul_(neg)
            den = stabilize_(gp.add_(z).add_(shift), self.stabilizer)
            s = divide_(r_out, den).mul_(float_mask(torch.ne, z))
            # (W+γW⁺)ᵀs_up + (W+γW⁻)ᵀs_down = Wᵀ(s_up + (1+γ)s_down) + γW⁺ᵀ(s_up − s_down).
            t = layer.transpose(x.shape, w, s * (neg * g).add_(1.0))
            t2 = layer.transpose(x.shape, w_pos, s * (neg * -2.0).add_(1.0))
            return (t.add_(t2.mul_(g)).mul_(x),)
        w_up, w_down = w + g * w_pos, w + g * w.clamp(max=0)
        b_up = None if b is None else b + g * b.clamp(min=0)
        b_down = None if b is None else b + g * b.clamp(max=0)
        z_up = layer.forward(x_pos, w_up, b_up) + layer.forward(x_neg, w_down)
        z_down = layer.forward(x_pos, w_down, b_down) + layer.forward(x_neg, w_up)
        # stab(·) ≠ 0, so the masked numerators give exact zeros
        s_up = divide_(r_out * float_mask(torch.gt, z), stabilize_(z_up, self.stabilizer))
        s_down = divide_(r_out * float_mask(torch.lt, z), stabilize_(z_down, self.stabilizer))
        r = x_pos * (
            layer.transpose(x.shape, w_up, s_up) + layer.transpose(x.shape, w_down, s_down)
        )
        r = r + x_neg * (
            layer.transpose(x.shape, w_down, s_up) + layer.transpose(x.shape, w_up, s_down)
        )
        return (r,)


class ZBoxRule(LRPRule):
    """LRP-z^B for a first layer with bounded input ``low ≤ x ≤ high`` (Montavon et al. 2017).

    Denominator ``Wx − W⁺l − W⁻h`` (the bias cancels); ``R = x⊙Wᵀs − l⊙W⁺ᵀs − h⊙W⁻ᵀs``. It
    conserves relevance.

    Parameters
    ----------
    low, high : float or torch.Tensor
        Bounds: scalars, per-channel tensors of shape ``(C,)`` or tensors broadcastable to the
        input (e.g. ``(1, C, 1, 1)``), with ``low ≤ high``.
    stabilizer : float
        ε of the denominator's stabiliser.
    """

    def __init__(
        self,
        low: float | torch.Tensor,
        high: float | torch.Tensor,
        stabilizer: float = 1e-6,
    ) -> None:
        low_t, high_t = torch.as_tensor(low), torch.as_tensor(high)
        for name, value in (("low", low_t), ("high", high_t)):
            if not torch.isfinite(value).all():
                raise ValueError(f"ZBoxRule: {name} must be finite, got {value}.")
        if (low_t > high_t).any():
            raise ValueError("ZBoxRule needs low <= high everywhere; check the bounds' order.")
        self.low, self.high = low, high
        self.stabilizer = _check_stabilizer(stabilizer)

    @staticmethod
    def _bound(value: float | torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
        bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        if bound.dim() == 1 and x.dim() > 2 and bound.numel() == x.shape[1] > 1:
            bound = bound.reshape(1, -1, *([1] * (x.dim() - 2)))  # per-channel
        try:
            return bound.expand_as(x) if bound.dim() else bound.expand(x.shape)
        except RuntimeError as err:
            raise ValueError(
                f"ZBoxRule: {name} of shape {tuple(bound.shape)} does not broadcast to the "
                f"layer input of shape {tuple(x.shape)}; pass a scalar, a (C,) tensor or a "
                "tensor broadcastable to the input."
            ) from err

    _needs_z = False

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        low, high = self._bound(self.low, x, "low"), self._bound(self.high, x, "high")
        w = layer.weight
        w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
        # Wx − W⁺l − W⁻h in one product over the stacked (x, l, h), and the three transposed
        # products in one as well (first layers have few input channels, so stacking is cheap).
        denominator = layer.forward_sum([x, low, high], [w, -w_pos, -w_neg])
        s = divide_(r_out, stabilize_(denominator, self.stabilizer))
        t_x, t_low, t_high = layer.transpose_many(x.shape, [w, w_pos, w_neg], s)
        r = (x * t_x).sub_(low * t_low).sub_(high * t_high)
        return (r,)


class _InputFreeRule(LRPRule):
    """Rules whose relevance ignores the input values: ``R = Vᵀ(R_out / stab(V·1 + c))``."""

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_stabilizer(stabilizer)

    _needs_z = False

    def _weights(self, layer) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        weight, bias = self._weights(layer)
        denominator = layer.forward(torch.ones_like(x), weight, bias)
        s = r_out / stabilize(denominator, self.stabilizer)
        return (layer.transpose(x.shape, weight, s),)


class WSquareRule(_InputFreeRule):
    """LRP-w² (Montavon et al. 2017): ``R_i = Σ_j w_ij² R_j / stab(Σ_i w_ij² + b_j²)``.

    For a first layer with unbounded input; the sum over ``i`` runs over the inputs a unit
    sees (zero padding excluded). Conserves relevance on bias-free layers.
    """

    def _weights(self, layer):
        return layer.weight.square(), None if layer.bias is None else layer.bias.square()


class FlatRule(_InputFreeRule):
    """LRP-flat (Lapuschkin et al. 2019): all weights 1, bias 0, ``R_i = Σ_j R_j / #inputs(j)``."""

    def _weights(self, layer):
        return torch.ones_like(layer.weight), None


class NormRule(LRPRule):
    """Normalise by the output: ``R_k = x_k ⊙ J_kᵀ(R_out / stab(f(x)))`` for every input ``k``.

    For sum and average pooling and residual additions (modules linear in their inputs, without
    parameters) it conserves relevance. On an affine module without a rule of its own (a
    BatchNorm that could not be folded) it is the ε-rule of that affine map, which is what
    Captum's ``EpsilonRule`` computes there. Linear and convolution layers are refused by name:
    their rules (:class:`EpsilonRule`, …) take the weights into account.

    Parameters
    ----------
    stabilizer : float
        ε ≥ 0 of the denominator's stabiliser (0: an output of exactly 0 passes nothing).
    """

    layer_types: tuple[type, ...] = (nn.Module,)

    def __init__(self, stabilizer: float = 1e-6) -> None:
        check_positive("stabilizer", stabilizer, allow_zero=True)
        self.stabilizer = float(stabilizer)

    def applies_to(self, module: nn.Module) -> bool:
        return not isinstance(module, LINEAR_TYPES)

    def refusal(self, module: nn.Module, name: str = "") -> str:
        if isinstance(module, LINEAR_TYPES):
            return (
                f"NormRule cannot handle module {name!r} of type {type(module).__name__}: it "
                "is for parameter-free modules (pooling, additions) and would ignore the "
                "weights; give Linear/Conv layers EpsilonRule(), ZPlusRule(), GammaRule(), …"
            )
        return super().refusal(module, name)

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        if not self.applies_to(module):
            # Also reached through captum.attr.LRP, which never asks applies_to.
            raise TypeError(self.refusal(module))
        return super().forward_hook(module, inputs, outputs)

    def relevance(self, layer, inputs, z, r_out):
        s = safe_divide(r_out, stabilize(z, self.stabilizer))
        if isinstance(layer, SumModule) and all(x.shape == z.shape for x in inputs):
            # a + b: the vector–Jacobian product is s for each summand, no autograd needed.
            return tuple(x * s for x in inputs)
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_() for x in inputs]
            # .forward, not __call__: calling the module would re-enter this very hook.
            grads = torch.autograd.grad(layer.forward(*leaves), leaves, s, allow_unused=True)
        return tuple(
            torch.zeros_like(x) if g is None else x * g for x, g in zip(inputs, grads, strict=True)
        )


class PassRule(LRPRule):
    """Pass relevance through unchanged (activations, Dropout, BatchNorm that was not folded)."""

    layer_types: tuple[type, ...] = (nn.Module,)
    _needs_z = False
    _needs_inputs = False

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        if (
            len(inputs) != 1
            or not isinstance(outputs, torch.Tensor)
            or (inputs[0].shape != outputs.shape)
        ):
            raise TypeError(
                f"PassRule needs one input of the output's shape; {type(module).__name__} does "
                "not qualify. Give it NormRule() or another rule instead."
            )
        if outputs is inputs[0]:
            # An identity (a folded BatchNorm, Dropout in eval mode): its gradient already
            # passes relevance unchanged; a rule node would only copy the tensor.
            return outputs
        return super().forward_hook(module, inputs, outputs)

    def relevance(self, layer, inputs, z, r_out):
        return (r_out,)


class GradientRule(LRPRule):
    """Leave the module alone: relevance follows its gradient (max pooling, reshapes, identity)."""

    layer_types: tuple[type, ...] = (nn.Module,)

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        return outputs
