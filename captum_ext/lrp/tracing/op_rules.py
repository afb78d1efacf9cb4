"""Rules of the op modules: proportional split, refusal, LayerNorm with a constant scale."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from captum_ext.lrp._layer import divide_, stabilize
from captum_ext.lrp.rules import LRPRule
from captum_ext.lrp.tracing.ops import (
    _ADDITIONS,
    FunctionalOp,
    Normalization,
    Slot,
    TracingError,
    _addition_signs,
    _BoundCall,
)


class OpRule(LRPRule):
    """Base of rules for :class:`FunctionalOp` modules: relevance for a subset of the slots."""

    layer_types: tuple[type, ...] = (FunctionalOp,)

    def slots_of(self, module: FunctionalOp) -> tuple[int, ...]:
        """Argument positions that receive relevance."""
        return module.relevant_slots

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        if not isinstance(module, FunctionalOp):
            return super().forward_hook(module, inputs, outputs)
        slots = self.slots_of(module)
        values = tuple(inputs[i] for i in slots)
        if not slots:
            return outputs
        # LRPRule's routing with the bound call as the "layer": the backward recomputes the
        # operation of the relevant arguments only; the others (gates, sizes) stay fixed.
        return LRPRule.forward_hook(self, _BoundCall(module, inputs, slots), values, outputs)


def _vjp(layer: Any, inputs: tuple[torch.Tensor, ...], s: torch.Tensor) -> tuple:
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() for x in inputs]
        grads = torch.autograd.grad(layer.forward(*leaves), leaves, s, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads))


class ProportionalRule(OpRule):
    """``R_k = share · x_k ⊙ J_kᵀ (R / stab(z))`` for the relevant arguments ``x_k``.

    For an operation linear (homogeneous of degree 1) in the relevant arguments this conserves
    relevance (Euler: ``Σ_k J_k x_k = z``); it is :class:`~captum_ext.lrp.NormRule`'s split,
    LRP-ε with the constant arguments as bias. On a :class:`GatedProduct` the gate is fixed, so
    ``x·g`` passes its whole relevance to ``x``.

    Parameters
    ----------
    stabilizer : float
        ε of ``stab(z) = z + ε·sign(z)``.
    share : float
        Fraction of the relevance handed down (AttnLRP's uniform rule uses ``1/2`` per factor).
    all_variables : bool
        Feed every input-dependent argument, gates included (the uniform rule), instead of
        only the non-gate ones.
    """

    def __init__(
        self, stabilizer: float = 1e-6, share: float = 1.0, *, all_variables: bool = False
    ) -> None:
        if stabilizer < 0:
            raise ValueError(f"stabilizer must be >= 0, got {stabilizer}.")
        self.stabilizer = float(stabilizer)
        self.share = float(share)
        self.all_variables = bool(all_variables)

    def slots_of(self, module: FunctionalOp) -> tuple[int, ...]:
        return module.variable_slots if self.all_variables else module.relevant_slots

    def relevance(self, layer, inputs, z, r_out):
        # s = R / stab(z), written into the fresh denominator (no further large allocation).
        s = divide_(r_out, stabilize(z, self.stabilizer))
        if self.share != 1.0:
            s = s * self.share
        if (
            isinstance(layer, _BoundCall)
            and layer.module.fn in _ADDITIONS
            and all(x.shape == z.shape for x in inputs)
        ):
            # a + b (or a - b) of equal shapes: the Jacobians are ±identity, no autograd needed.
            signs = _addition_signs(layer.module.fn, len(inputs))
            out = [x * s for x in inputs[:-1]]
            last = inputs[-1]
            if torch.is_grad_enabled() and (last.requires_grad or s.requires_grad):
                out.append(last * s)
            else:  # s is not needed any more: the last product reuses its memory
                out.append(torch.mul(last, s, out=s))
            return tuple(r if sign == 1 else r.neg_() for sign, r in zip(signs, out))
        return tuple(x * g for x, g in zip(inputs, _vjp(layer, inputs, s)))


class UnsupportedRule(OpRule):
    """Marks an operation without a rule: refused when relevance reaches it (never hooked)."""

    layer_types: tuple[type, ...] = (nn.Module,)

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        raise TracingError(f"LRP has no rule for {module}.")  # resolve_rules refuses earlier


class _Adapted(OpRule):
    """A plain rule (NormRule, PassRule, EpsilonRule, …) given to an op module by a user."""

    def __init__(self, rule: LRPRule) -> None:
        self.rule = rule
        self._needs_z = rule._needs_z
        self._needs_inputs = rule._needs_inputs

    def slots_of(self, module: FunctionalOp) -> tuple[int, ...]:
        return module.variable_slots

    def relevance(self, layer, inputs, z, r_out):
        return self.rule.relevance(layer, inputs, z, r_out)

    def __repr__(self) -> str:
        return repr(self.rule)


def _layer_norm_fixed_scale(
    x: torch.Tensor,
    normalized_shape: Sequence[int],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    dims = tuple(range(-len(normalized_shape), 0))
    centred = x - x.mean(dims, keepdim=True)
    scale = torch.rsqrt(centred.detach().square().mean(dims, keepdim=True) + eps)
    y = centred * scale
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _rms_norm_fixed_scale(x, normalized_shape, weight, eps):
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    y = x * torch.rsqrt(x.detach().square().mean(dims, keepdim=True) + eps)
    return y if weight is None else y * weight


class LayerNormRule(LRPRule):
    """LayerNorm / RMSNorm with the normaliser as a constant scaling (CP-LRP, AttnLRP).

    ``y = w ⊙ (x − μ(x)) / σ + b`` with ``σ`` held fixed is linear in ``x``; the ε-rule on that
    linear map gives ``R_x = x ⊙ J_σᵀ (R / stab(y))`` (Ali et al. 2022, "XAI for Transformers:
    better explanations through conservative propagation"; Achtibat et al. 2024, AttnLRP
    Proposition 3.4). With ``b = 0`` it conserves relevance; for RMSNorm it is the identity.

    Parameters
    ----------
    stabilizer : float
        ε of ``stab(y)``.
    """

    layer_types: tuple[type, ...] = (nn.LayerNorm, Normalization) + (
        (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
    )

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        if isinstance(module, Normalization):
            slots = module.relevant_slots[:1]
            bound = _BoundCall(module, inputs, slots)
            return LRPRule.forward_hook(self, bound, (inputs[slots[0]],), outputs)
        return super().forward_hook(module, inputs, outputs)

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        if isinstance(layer, _BoundCall):
            module = layer.module
            args, kwargs = fx.node.map_aggregate(
                module.template,
                lambda a: layer.slots[a.index] if isinstance(a, Slot) else a,
            )
            fixed = _NORM_FIXED[module.fn]

            def forward(v):
                return fixed(v, *args[1:], **kwargs)
        elif isinstance(layer, nn.LayerNorm):

            def forward(v):
                return _layer_norm_fixed_scale(
                    v, layer.normalized_shape, layer.weight, layer.bias, layer.eps
                )
        else:

            def forward(v):
                return _rms_norm_fixed_scale(v, layer.normalized_shape, layer.weight, layer.eps)

        s = r_out / stabilize(z, self.stabilizer)
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            (grad,) = torch.autograd.grad(forward(leaf), leaf, s)
        return (x * grad,)


_NORM_FIXED = {F.layer_norm: _layer_norm_fixed_scale}
if hasattr(F, "rms_norm"):
    _NORM_FIXED[F.rms_norm] = _rms_norm_fixed_scale
