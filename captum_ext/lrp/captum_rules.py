"""Captum's own rule objects, translated into this package's rules.

Code written for :class:`captum.attr.LRP` sets Captum rules as ``module.rule``
(``EpsilonRule``, ``GammaRule``, ``Alpha1_Beta0_Rule``, ``IdentityRule`` from
``captum.attr._utils.lrp_rules``). :class:`captum_ext.lrp.LRP` accepts them and translates each
into the rule of this package that gives *Captum's* numbers, so a model configured for Captum
gives the same relevance under the subclass:

===========================  =================================================================
Captum rule                  translation
===========================  =================================================================
``EpsilonRule(ε)``           Linear/Conv: :class:`~captum_ext.lrp.EpsilonRule` ``(ε)``; any
                             other module (pooling, BatchNorm, an addition module):
                             :class:`~captum_ext.lrp.NormRule` ``(ε)``, i.e. ``x ⊙ Jᵀ R/stab(z)``
``IdentityRule()``           :class:`~captum_ext.lrp.PassRule`
``GammaRule(γ, zero_bias)``  :class:`CaptumWeightRule`: the ε-rule (ε = Captum's
                             ``STABILITY_FACTOR``) with weights ``W + γW⁺`` and the bias kept
                             (or zeroed)
``Alpha1_Beta0_Rule(zb)``    :class:`CaptumWeightRule` with weights ``W⁺``
===========================  =================================================================

Captum's γ and α1β0 rules differ from the literature's (and this package's
:class:`~captum_ext.lrp.GammaRule` / :class:`~captum_ext.lrp.ZPlusRule`) on signed inputs, on
outputs with ``z < 0`` and in the bias: they modify the weights once and run the ε-rule. The
translation keeps Captum's definition, because a drop-in replacement must not change the numbers
of existing code; use this package's rules for the literature's definitions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr._utils import lrp_rules as captum_rules
from torch import nn

from captum_ext.lrp._layer import LINEAR_TYPES, safe_divide, stabilize
from captum_ext.lrp.rules import EpsilonRule, LRPRule, NormRule, PassRule

__all__ = ["CaptumWeightRule", "from_captum_rule"]


class CaptumWeightRule(LRPRule):
    """Captum's weight-modifying rules: the ε-rule on ``W' = f(W)`` with the bias kept or zeroed.

    ``R = x ⊙ W'ᵀ (R_out / stab_ε(W'x + b'))`` with ``b' = b`` (or 0 with ``zero_bias``). This is
    what :class:`captum.attr.LRP` computes for ``GammaRule`` (``f(W) = W + γW⁺``) and
    ``Alpha1_Beta0_Rule`` (``f(W) = W⁺``): it edits the weights, recomputes every layer's output
    from the unmodified layer inputs and runs its ε backward.

    Parameters
    ----------
    name : str
        Label of the weight map (shown in ``repr``).
    weight_map : callable
        ``f`` applied to the weight tensor.
    zero_bias : bool
        Captum's ``set_bias_to_zero``.
    epsilon : float
        The stabiliser (Captum's ``STABILITY_FACTOR``, 1e-9 by default).
    """

    _needs_z = False

    def __init__(
        self,
        name: str,
        weight_map: Callable[[torch.Tensor], torch.Tensor],
        zero_bias: bool = False,
        epsilon: float = 1e-9,
    ) -> None:
        self.name = name
        self._weight_map = weight_map
        self.zero_bias = bool(zero_bias)
        self.epsilon = float(epsilon)

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        weight = self._weight_map(layer.weight)
        bias = None if self.zero_bias else layer.bias
        s = safe_divide(r_out, stabilize(layer.forward(x, weight, bias), self.epsilon))
        return (x * layer.transpose(x.shape, weight, s),)


def from_captum_rule(rule: object, module: nn.Module, name: str = "") -> LRPRule:
    """This package's rule that computes what Captum's ``rule`` computes on ``module``.

    Parameters
    ----------
    rule : captum.attr._utils.lrp_rules.PropagationRule
        A Captum rule (our own rules are returned unchanged).
    module : nn.Module
        The module the rule is set on (the translation depends on its type).
    name : str
        The module's name, for error messages.

    Raises
    ------
    TypeError
        For a Captum rule without a translation (a user's own ``PropagationRule`` subclass) or a
        weight-modifying rule on a module that is not Linear/Conv.
    """
    if isinstance(rule, LRPRule):
        return rule
    if not isinstance(rule, captum_rules.PropagationRule):
        raise TypeError(
            f"module {name!r} has rule {type(rule).__name__}; LRP needs a captum_ext.lrp rule "
            "(EpsilonRule(), ZPlusRule(), PassRule(), …) or one of Captum's EpsilonRule, "
            "GammaRule, Alpha1_Beta0_Rule, IdentityRule."
        )
    epsilon = float(rule.STABILITY_FACTOR)
    linear = isinstance(module, LINEAR_TYPES)
    kind = type(rule)
    if kind is captum_rules.IdentityRule:
        return PassRule()
    if kind is captum_rules.EpsilonRule:
        return EpsilonRule(epsilon) if linear else NormRule(epsilon)
    if kind in (captum_rules.GammaRule, captum_rules.Alpha1_Beta0_Rule):
        if not linear:
            raise TypeError(
                f"Captum's {kind.__name__} on module {name!r} of type {type(module).__name__}: "
                "it modifies weights, which only Linear/Conv layers have here; give this "
                "module EpsilonRule() or PassRule() instead."
            )
        zero_bias = bool(getattr(rule, "set_bias_to_zero", False))
        if kind is captum_rules.GammaRule:
            gamma = float(rule.gamma)
            return CaptumWeightRule(
                f"W + {gamma}·W⁺", lambda w: w + gamma * w.clamp(min=0), zero_bias, epsilon
            )
        return CaptumWeightRule("W⁺", lambda w: w.clamp(min=0), zero_bias, epsilon)
    raise TypeError(
        f"module {name!r} has Captum rule {kind.__name__}, which captum_ext.lrp.LRP cannot "
        "translate (it knows EpsilonRule, GammaRule, Alpha1_Beta0_Rule, IdentityRule); write it "
        "as a captum_ext.lrp.LRPRule subclass (implement relevance()) instead."
    )
