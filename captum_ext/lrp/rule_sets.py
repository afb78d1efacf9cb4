"""Rule sets ("composites"): which LRP rule each layer of a model gets.

A :class:`RuleSet` maps module *names*, the *first* linear-type layer and layer *types* to
rules, in that order of precedence; activations, pooling, BatchNorm and reshapes get sensible
defaults. The named sets follow zennit's composites and Sixt et al. 2020 (Sixt et al., 2020).

Building a custom rule set takes a few lines::

    from torch import nn
    from captum_ext.lrp import LRP, RuleSet, EpsilonRule, GammaRule, FlatRule

    rules = RuleSet(
        layer_map=[(nn.Conv2d, GammaRule(0.5)), (nn.Linear, EpsilonRule(0.1))],
        first_map=[(nn.Conv2d, FlatRule())],           # the first conv layer
        name_map={"classifier.2": EpsilonRule(0.0)},   # one layer by name
    )
    attribution = LRP(model, rule_set=rules).attribute(x, target=3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from captum.attr._utils.custom_modules import Addition_Module
from torch import nn
from torchvision.ops import StochasticDepth

from captum_ext.core.canonization import is_folded
from captum_ext.core.modules import (
    AVG_POOL_TYPES,
    BATCHNORM_TYPES,
    DROPOUT_TYPES,
    MAX_POOL_TYPES,
    PADDING_TYPES,
)
from captum_ext.core.reprs import ReprFromInit
from captum_ext.core.validation import closest_names
from captum_ext.lrp._layer import LINEAR_TYPES
from captum_ext.lrp.canonizers import SumModule
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

__all__ = [
    "ACTIVATIONS",
    "CONVOLUTIONS",
    "Alpha1Beta0",
    "AlphaBeta",
    "Alpha5Beta4",
    "CaptumDefault",
    "DeepTaylor",
    "Epsilon",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "ExcitationBackprop",
    "LRPCMP",
    "RuleSet",
]

LayerMap = Sequence[tuple[type | tuple[type, ...], LRPRule]]

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
)
# Identities in eval mode (torchvision's StochasticDepth: EfficientNet, ConvNeXt, Swin).
_DROPOUT = (*DROPOUT_TYPES, nn.AlphaDropout, StochasticDepth)
_SUM_POOL = (
    *AVG_POOL_TYPES,
    SumModule,
    Addition_Module,  # Captum's residual-addition module
)
_BATCHNORM = BATCHNORM_TYPES
# Modules whose gradient already routes relevance correctly.
_ROUTING = (
    *PADDING_TYPES,  # copies of the input: the gradient routes relevance to the source
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    *MAX_POOL_TYPES,
)


class RuleSet(ReprFromInit):
    """A mapping from a model's layers to LRP rules.

    Precedence: ``name_map`` (exact names from ``model.named_modules()``), then ``first_map``
    (applied to the first module, in registration order, whose type it lists), then
    ``layer_map`` (first matching entry wins), then the defaults: activations, Dropout and
    ``StochasticDepth`` → :class:`PassRule`, sum/average pooling and residual additions →
    :class:`NormRule`, BatchNorm that was not folded → ``batchnorm_rule``, max pooling and
    reshapes → the gradient.

    A BatchNorm that the ``MergeBatchNorm`` canonizer cannot fold into a linear layer (one that
    follows a ReLU, or precedes its convolution as in DenseNet) is a per-channel affine map
    ``y = a·x + c`` standing alone. Its treatment is a choice of the rule set:
    :class:`PassRule` by default (relevance is conserved and keeps its sign; the shift ``c`` takes
    no share), the ε-rule of the affine map (``NormRule(ε)``) in :class:`Epsilon`, as
    :class:`captum.attr.LRP` does, and the gradient in :class:`ExcitationBackprop`, as zennit does
    for layers without a rule.

    Parameters
    ----------
    layer_map : sequence of (type or tuple of types, LRPRule)
        Rules by layer type.
    first_map : sequence of (type or tuple of types, LRPRule)
        Rules for the first layer of the listed types.
    name_map : mapping of str to LRPRule
        Rules by module name.
    stabilizer : float
        ε of the default :class:`NormRule`.
    activation_rule : LRPRule
        Rule of the activations (:class:`PassRule`; :class:`GradientRule` keeps their gradient).
    batchnorm_rule : LRPRule
        Rule of BatchNorm layers that were not folded (default :class:`PassRule`).
    activation_types : tuple of type
        The activation modules ``activation_rule`` applies to (default ``ACTIVATIONS``, every
        elementwise activation of ``torch.nn``); others need a rule of their own.
    """

    # Appended to the error for a module without a rule.
    _missing_hint = ""

    def __init__(
        self,
        layer_map: LayerMap = (),
        first_map: LayerMap = (),
        name_map: Mapping[str, LRPRule] | None = None,
        *,
        stabilizer: float = 1e-6,
        activation_rule: LRPRule | None = None,
        batchnorm_rule: LRPRule | None = None,
        activation_types: tuple[type, ...] = ACTIVATIONS,
    ) -> None:
        self.name_map = dict(name_map or {})
        self.first_map = list(first_map)
        activation_rule = PassRule() if activation_rule is None else activation_rule
        batchnorm_rule = PassRule() if batchnorm_rule is None else batchnorm_rule
        self.layer_map = [
            *layer_map,
            (tuple(activation_types), activation_rule),
            (_DROPOUT, PassRule()),
            (_SUM_POOL, NormRule(stabilizer)),
            (_BATCHNORM, batchnorm_rule),
            (_ROUTING, GradientRule()),
        ]
        for rule in [*self.name_map.values(), *(r for _, r in [*self.first_map, *self.layer_map])]:
            if not isinstance(rule, LRPRule):
                raise TypeError(
                    f"Rule sets take captum_ext.lrp rules (e.g. EpsilonRule()), got "
                    f"{type(rule).__name__}."
                )

    def resolve(
        self, model: nn.Module, overrides: Mapping[str, LRPRule] | None = None
    ) -> list[tuple[str, nn.Module, LRPRule]]:
        """``(name, module, rule)`` for every leaf module of ``model`` (and every SumModule).

        ``overrides`` (rules by module name, e.g. the ones users set as ``module.rule``) take
        precedence over everything else.

        Raises
        ------
        TypeError
            For a leaf module no rule applies to, naming its path and type.
        """
        self._check_names(model)
        first_done = False
        resolved = []
        for name, module in model.named_modules():
            if next(module.children(), None) is not None and not isinstance(module, SumModule):
                continue
            rule = (overrides or {}).get(name) or self.name_map.get(name)
            if rule is None and not first_done:
                rule = _match(self.first_map, module)
                first_done = rule is not None
            if rule is None and isinstance(module, _BATCHNORM) and is_folded(module):
                rule = PassRule()  # an identity while folded: passing is exact
            if rule is None:
                rule = _match(self.layer_map, module)
            if rule is None:
                raise TypeError(
                    f"LRP has no rule for module {name or '<root>'!r} of type "
                    f"{type(module).__name__}. Give it one: set `module.rule = PassRule()` (or "
                    "NormRule(), EpsilonRule(), …), or pass a rule set with "
                    f"name_map={{{name!r}: PassRule()}} or layer_map=[({type(module).__name__}, "
                    f"rule)].{self._missing_hint}"
                )
            if not rule.applies_to(module):
                raise TypeError(rule.refusal(module, name))
            resolved.append((name, module, rule))
        return resolved

    def _check_names(self, model: nn.Module) -> None:
        # A typo in name_map would otherwise leave the layer on its default rule, silently.
        modules = dict(model.named_modules())
        for name in self.name_map:
            if name not in modules:
                raise ValueError(
                    f"RuleSet name_map: the model has no module named {name!r}; valid names: "
                    f"{closest_names(name, list(modules))}."
                )
            module = modules[name]
            if next(module.children(), None) is not None and not isinstance(module, SumModule):
                leaves = [
                    f"{name}.{n}"
                    for n, m in module.named_modules()
                    if n and next(m.children(), None) is None
                ]
                raise ValueError(
                    f"RuleSet name_map: {name!r} is a container ({type(module).__name__}); rules "
                    f"apply to leaf modules such as {closest_names('', leaves, 5)}."
                )


def _match(layer_map: LayerMap, module: nn.Module) -> LRPRule | None:
    return next((rule for types, rule in layer_map if isinstance(module, types)), None)


class Epsilon(RuleSet):
    """LRP-ε on every linear-type layer (``epsilon=0``: LRP-0/LRP-z of Sixt et al. 2020).

    A BatchNorm that could not be folded gets the ε-rule of its affine map (``NormRule(ε)``),
    as in :class:`captum.attr.LRP` (:class:`CaptumDefault`, ``LRP``'s default, is this set
    with ε = 1e-9 and Captum's short list of activations).
    """

    def __init__(self, epsilon: float = 1e-6, *, layer_map: LayerMap = (), **kwargs) -> None:
        kwargs.setdefault("batchnorm_rule", NormRule(epsilon))
        super().__init__([*layer_map, (LINEAR_TYPES, EpsilonRule(epsilon))], **kwargs)


class CaptumDefault(Epsilon):
    """What :class:`captum.attr.LRP` does when nothing is configured; ``LRP``'s default.

    LRP-ε with ε = 1e-9 on linear layers, pooling, additions and unfolded BatchNorm, relevance
    passed through ReLU, Tanh and Dropout, and, like Captum, no rule for any other activation:
    passing relevance unchanged through a sigmoid or a GELU is a modelling choice, which the
    named rule sets (e.g. :class:`EpsilonPlus`, :class:`Epsilon`) make for every activation.
    Unlike Captum it handles every module type the rule sets know (Conv1d/3d, Flatten, …),
    residual additions of torchvision ResNets and modules used more than once.
    """

    _missing_hint = (
        " (LRP's default rule set mirrors captum.attr.LRP, which has no rule for this module; "
        "rule_set=EpsilonPlus() or Epsilon() pass relevance through every activation.)"
    )

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("activation_types", (nn.ReLU, nn.Tanh))
        kwargs.setdefault("stabilizer", 1e-9)
        super().__init__(1e-9, **kwargs)


class AlphaBeta(RuleSet):
    """LRP-αβ on every linear-type layer (Sixt et al., 2020: α1β0, α2β1, α5β4)."""

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 1.0,
        stabilizer: float = 1e-6,
        *,
        layer_map: LayerMap = (),
        **kwargs,
    ) -> None:
        rule = AlphaBetaRule(alpha, beta, stabilizer)
        super().__init__([*layer_map, (LINEAR_TYPES, rule)], stabilizer=stabilizer, **kwargs)


class Alpha1Beta0(AlphaBeta):
    """LRP-α1β0 (= z⁺, generalised to signed inputs) on every linear-type layer."""

    def __init__(self, stabilizer: float = 1e-6, **kwargs) -> None:
        super().__init__(1.0, 0.0, stabilizer, **kwargs)


class Alpha5Beta4(AlphaBeta):
    """LRP-α5β4 on every linear-type layer (Sixt et al. 2020: converges less strongly)."""

    def __init__(self, stabilizer: float = 1e-6, **kwargs) -> None:
        super().__init__(5.0, 4.0, stabilizer, **kwargs)


def _conv_dense(conv: LRPRule, dense: LRPRule, layer_map: LayerMap) -> list:
    return [*layer_map, (CONVOLUTIONS, conv), (nn.Linear, dense)]


class EpsilonPlus(RuleSet):
    """z⁺ on convolutions, ε on dense layers (zennit's ``EpsilonPlus``)."""

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, *, layer_map: LayerMap = (), **kw
    ) -> None:
        rules = _conv_dense(ZPlusRule(stabilizer), EpsilonRule(epsilon), layer_map)
        super().__init__(rules, stabilizer=stabilizer, **kw)


class EpsilonAlpha2Beta1(RuleSet):
    """α2β1 on convolutions, ε on dense layers (zennit's ``EpsilonAlpha2Beta1``)."""

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, *, layer_map: LayerMap = (), **kw
    ) -> None:
        rules = _conv_dense(AlphaBetaRule(2.0, 1.0, stabilizer), EpsilonRule(epsilon), layer_map)
        super().__init__(rules, stabilizer=stabilizer, **kw)


class EpsilonPlusFlat(EpsilonPlus):
    """:class:`EpsilonPlus` with the flat rule on the first linear-type layer."""

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, **kwargs) -> None:
        first = [*kwargs.pop("first_map", ()), (LINEAR_TYPES, FlatRule(stabilizer))]
        super().__init__(epsilon, stabilizer, first_map=first, **kwargs)


class EpsilonAlpha2Beta1Flat(EpsilonAlpha2Beta1):
    """:class:`EpsilonAlpha2Beta1` with the flat rule on the first linear-type layer."""

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, **kwargs) -> None:
        first = [*kwargs.pop("first_map", ()), (LINEAR_TYPES, FlatRule(stabilizer))]
        super().__init__(epsilon, stabilizer, first_map=first, **kwargs)


class EpsilonGammaBox(RuleSet):
    """z^B on the first convolution, γ on the others, ε on dense layers (zennit's composite).

    Parameters
    ----------
    low, high : float or torch.Tensor
        Input bounds for :class:`ZBoxRule` (e.g. ``DigitsDataset.bounds``, or per-channel
        ImageNet bounds).
    epsilon, gamma, stabilizer : float
        Parameters of the ε and γ rules and the stabiliser.
    """

    def __init__(
        self,
        low: float | torch.Tensor,
        high: float | torch.Tensor,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
        *,
        layer_map: LayerMap = (),
        first_map: LayerMap = (),
        **kwargs,
    ) -> None:
        rules = _conv_dense(GammaRule(gamma, stabilizer), EpsilonRule(epsilon), layer_map)
        first = [*first_map, (CONVOLUTIONS, ZBoxRule(low, high, stabilizer))]
        super().__init__(rules, first, stabilizer=stabilizer, **kwargs)


class ExcitationBackprop(RuleSet):
    """z⁺ on every linear-type layer, activations keep their gradient (Zhang et al. 2018).

    Excitation backprop defines probabilities only through linear layers; every other module,
    including a BatchNorm that could not be folded (DenseNet), keeps its gradient, as in zennit.
    """

    def __init__(self, stabilizer: float = 1e-6, *, layer_map: LayerMap = (), **kwargs) -> None:
        kwargs.setdefault("activation_rule", GradientRule())
        kwargs.setdefault("batchnorm_rule", GradientRule())
        rules = [*layer_map, (LINEAR_TYPES, ZPlusRule(stabilizer))]
        super().__init__(rules, stabilizer=stabilizer, **kwargs)


class DeepTaylor(RuleSet):
    """Deep Taylor decomposition (Montavon et al. 2017): z⁺ after ReLUs, a box/w² first layer.

    Parameters
    ----------
    low, high : float or torch.Tensor, optional
        Input bounds: the first linear-type layer gets ``ZBoxRule(low, high)`` when both are given,
        ``WSquareRule()`` when both are ``None``.
    stabilizer : float
        ε of the stabiliser.
    """

    def __init__(
        self,
        low: float | torch.Tensor | None = None,
        high: float | torch.Tensor | None = None,
        stabilizer: float = 1e-6,
        **kwargs,
    ) -> None:
        if (low is None) != (high is None):
            raise ValueError("DeepTaylor needs both low and high (z^B rule) or neither (w² rule).")
        first_rule = WSquareRule(stabilizer) if low is None else ZBoxRule(low, high, stabilizer)
        first = [*kwargs.pop("first_map", ()), (LINEAR_TYPES, first_rule)]
        rules = [*kwargs.pop("layer_map", ()), (LINEAR_TYPES, ZPlusRule(stabilizer))]
        super().__init__(rules, first, stabilizer=stabilizer, **kwargs)


class LRPCMP(RuleSet):
    """LRP-CMP (Sixt et al., 2020, §5; Kohlbrenner et al. 2020): LRP-z/ε on dense layers, αβ on
    convolutions.

    Parameters
    ----------
    alpha, beta : float
        The αβ rule of the convolutions (Sixt et al., 2020, uses α = 1 or 2).
    epsilon : float
        ε of the dense layers' rule (1e-6: LRP-z with a stabiliser).
    stabilizer : float
        ε of the other stabilisers.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.0,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        *,
        layer_map: LayerMap = (),
        **kwargs,
    ) -> None:
        rules = _conv_dense(AlphaBetaRule(alpha, beta, stabilizer), EpsilonRule(epsilon), layer_map)
        super().__init__(rules, stabilizer=stabilizer, **kwargs)
