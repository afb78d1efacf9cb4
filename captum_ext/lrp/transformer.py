"""LRP for transformers: rules for softmax and bilinear products, and the AttnLRP / CP-LRP sets.

Transformers are explained on the automatic path (:mod:`captum_ext.lrp.tracing`), which turns
``nn.MultiheadAttention`` (and the ``nn.TransformerEncoder`` stack) into traceable operations on
the same weights, so every matrix product and softmax of the attention becomes a module a rule
set can address. Two named rule sets:

* :class:`CPLRP` — "conservative propagation" (Ali et al. 2022, "XAI for Transformers: better
  explanations through conservative propagation"): attention weights and the LayerNorm
  normaliser are constants, so relevance flows through the values only; with bias-free layers
  and ε → 0 it conserves relevance exactly.
* :class:`AttnLRP` — Achtibat et al. 2024 ("AttnLRP: attention-aware layer-wise relevance
  propagation for transformers"): in addition, relevance flows into the attention scores, with
  the uniform rule on bilinear products (each factor gets half, Proposition 3.3) and the
  softmax rule ``R_x = x ⊙ (R − s ⊙ Σ R)`` (Proposition 3.1, a Taylor decomposition at ``x``
  whose bias term is absorbed: not conservative by design).

Both use the ε-rule on linear layers, the identity on element-wise non-linearities (GELU,
SiLU, ReLU: Proposition 3.2's identity rule) and :class:`~captum_ext.lrp.tracing.LayerNormRule`
(the normaliser as constant scaling, Proposition 3.4) on LayerNorm and RMSNorm.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from captum_ext.lrp._layer import LINEAR_TYPES
from captum_ext.lrp.rule_sets import RuleSet
from captum_ext.lrp.rules import EpsilonRule, LRPRule
from captum_ext.lrp.tracing import (
    AttentionProduct,
    LayerNormRule,
    Normalization,
    OpRule,
    Product,
    ProportionalRule,
    Slot,
    Softmax,
    UnsupportedRule,
)

__all__ = ["AttnLRP", "CPLRP", "SoftmaxRule", "UniformProductRule"]

_NORMS: tuple[type, ...] = (nn.LayerNorm, Normalization) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)


class SoftmaxRule(OpRule):
    """AttnLRP's softmax rule: ``R_x = x ⊙ (R − s ⊙ Σ_dim R)`` (Achtibat et al. 2024, Prop. 3.1).

    ``s`` is the softmax output and ``x`` its input (entries masked with −∞ count as 0).
    """

    layer_types: tuple[type, ...] = (Softmax, nn.Softmax)
    _needs_z = True

    def slots_of(self, module: Any) -> tuple[int, ...]:
        return module.relevant_slots[:1]

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        if isinstance(module, nn.Softmax):
            return LRPRule.forward_hook(self, module, inputs, outputs)
        return super().forward_hook(module, inputs, outputs)

    @staticmethod
    def _dim(layer: Any) -> int:
        if isinstance(layer, nn.Softmax):
            return layer.dim
        args, kwargs = fx.node.map_aggregate(
            layer.module.template,
            lambda a: layer.slots[a.index] if isinstance(a, Slot) else a,
        )
        if "dim" in kwargs:
            return kwargs["dim"]
        if len(args) > 1:
            return args[1]
        raise TypeError(f"SoftmaxRule: {layer.module.op} at {layer.module.source} names no dim.")

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        x = torch.where(torch.isneginf(x), torch.zeros_like(x), x)
        dim = self._dim(layer)
        return (x * (r_out - z * r_out.sum(dim, keepdim=True)),)

    def __repr__(self) -> str:
        return "SoftmaxRule()"


class UniformProductRule(ProportionalRule):
    """AttnLRP's rule for a product of two input-dependent factors (Prop. 3.3).

    Each factor gets half of the ε-rule relevance computed with the other factor fixed:
    ``R_a = ½ a ⊙ J_aᵀ(R / stab(z))``, ``R_b = ½ b ⊙ J_bᵀ(R / stab(z))``; conservative.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer, share=0.5, all_variables=True)

    def __repr__(self) -> str:
        return f"UniformProductRule(stabilizer={self.stabilizer!r})"


class CPLRP(RuleSet):
    """CP-LRP (Ali et al. 2022): ε on linear layers, attention weights and normalisers constant.

    Parameters
    ----------
    epsilon : float
        ε of the linear layers' rule.
    stabilizer : float
        ε of the proportional rules (additions, pooling, the value path) and LayerNorm.
    layer_map, **kwargs
        As in :class:`~captum_ext.lrp.RuleSet` (entries given here win).
    """

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, *, layer_map=(), **kwargs
    ) -> None:
        rules = [
            *layer_map,
            (LINEAR_TYPES, EpsilonRule(epsilon)),
            (_NORMS, LayerNormRule(stabilizer)),
            (AttentionProduct, ProportionalRule(stabilizer)),
            ((Softmax, nn.Softmax, Product), UnsupportedRule()),
        ]
        super().__init__(rules, stabilizer=stabilizer, **kwargs)


class AttnLRP(RuleSet):
    """AttnLRP (Achtibat et al. 2024): CP-LRP plus relevance through the attention scores.

    Uniform rule on ``q kᵀ`` and ``A v`` (and any other product of two input-dependent factors),
    the softmax rule on the attention softmax, ε on linear layers, identity on GELU/SiLU and
    LayerNorm as constant scaling.

    Parameters
    ----------
    epsilon : float
        ε of the linear layers' rule.
    stabilizer : float
        ε of the proportional/uniform rules and LayerNorm.
    layer_map, **kwargs
        As in :class:`~captum_ext.lrp.RuleSet` (entries given here win).
    """

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, *, layer_map=(), **kwargs
    ) -> None:
        rules = [
            *layer_map,
            (LINEAR_TYPES, EpsilonRule(epsilon)),
            (_NORMS, LayerNormRule(stabilizer)),
            ((Product, AttentionProduct), UniformProductRule(stabilizer)),
            ((Softmax, nn.Softmax), SoftmaxRule()),
        ]
        super().__init__(rules, stabilizer=stabilizer, **kwargs)
