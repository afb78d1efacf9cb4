"""LRP for Captum: rules, rule sets and canonizers on one modified-backward core .

Everything here works through Captum's own API: :class:`LRP` and :class:`LayerLRP` subclass
Captum's classes, the rules subclass Captum's ``PropagationRule`` (so ``module.rule = ...``
works with ``captum.attr.LRP`` too), and importing this package registers :class:`LRP` with
:func:`captum_ext.core.modified_backward`::

    with modified_backward(LRP(model, rule_set=EpsilonPlus())) as forward:
        out = forward(x)   # relevance now travels as the autograd gradient

References: Bach et al. 2015; Montavon et al. 2017, 2019; Sixt et al. 2020 ("When
Explanations Lie", Sixt et al. (2020)); zennit (Anders et al. 2021) as the reference implementation.
"""

from captum_ext.lrp.attribution import LRP, LayerLRP
from captum_ext.lrp.canonizers import (
    Canonizer,
    MergeBatchNorm,
    NoInplaceActivations,
    ResNetCanonizer,
    SumModule,
    canonized,
    default_canonizers,
)
from captum_ext.lrp.rule_sets import (
    LRPCMP,
    Alpha1Beta0,
    Alpha5Beta4,
    AlphaBeta,
    CaptumDefault,
    DeepTaylor,
    Epsilon,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    ExcitationBackprop,
    RuleSet,
)
from captum_ext.lrp.rules import (
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    GradientRule,
    LRPRule,
    NormRule,
    PassRule,
    WSquareRule,
    ZBoxRule,
    ZPlusRule,
)
from captum_ext.lrp.tracing import LayerNormRule, ProportionalRule, TracingError
from captum_ext.lrp.transformer import CPLRP, AttnLRP, SoftmaxRule, UniformProductRule

__all__ = [
    "CPLRP",
    "AttnLRP",
    "LayerNormRule",
    "ProportionalRule",
    "SoftmaxRule",
    "TracingError",
    "UniformProductRule",
    "LRP",
    "LRPCMP",
    "Alpha1Beta0",
    "Alpha5Beta4",
    "AlphaBeta",
    "AlphaBetaRule",
    "CaptumDefault",
    "Canonizer",
    "DeepTaylor",
    "Epsilon",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "EpsilonRule",
    "ExcitationBackprop",
    "FlatRule",
    "GammaRule",
    "GradientRule",
    "LRPRule",
    "LayerLRP",
    "MergeBatchNorm",
    "NoInplaceActivations",
    "NormRule",
    "PassRule",
    "ResNetCanonizer",
    "RuleSet",
    "SumModule",
    "WSquareRule",
    "ZBoxRule",
    "ZPlusRule",
    "canonized",
    "default_canonizers",
]
