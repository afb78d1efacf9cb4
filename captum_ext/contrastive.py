"""Contrastive LRP (CLRP) and Contrastive Excitation Backprop (c-EB) as Captum attributions.

Both add class sensitivity to z⁺-type rules by subtracting the relevance of a "dual" signal;
Sixt, Granz and Landgraf, "When Explanations Lie", ICML 2020 (eq. 15 and 16), show that the
underlying rank-1 convergence remains. Both classes subclass :class:`captum_ext.lrp.LRP`, so
they run on the shared ``modified_backward`` core (CSC, SSIM metrics, ``NoiseTunnel``).

- :class:`ContrastiveLRP` (Gu, Yang and Tresp 2018; eq. 15): with the logits ``y`` and the
  one-hot ``m_k`` of the target, ``R = n(R(y ⊙ m_k)) − n(R(y ⊙ (1 − m_k)))``, where ``R(v)``
  is the input relevance when ``v`` is injected at the logits under any rule set (default
  LRP-α1β0 = z⁺) and ``n(R) = R / ΣR`` normalises each map by its sum per sample. Sign
  convention: positive values favour the target over the other classes; ``clip=True`` applies
  the paper's ``max(0, ·)`` (Sixt et al. show results without it, the default here).
- :class:`ContrastiveExcitationBackprop` (Zhang et al. 2018; eq. 16): Excitation Backprop
  (z⁺ on every linear layer, activations keep their gradient) whose final linear layer uses
  ``Z⁺ − N⁺``, with ``N⁺`` the z⁺ matrix of the negated weights ``−W``; relevance starts as the
  one-hot ``m_k``. Sign convention: positive = evidence for the target, negative = for the
  "not target" neuron that ``−W`` defines. The rule set alone is
  :class:`ContrastiveExcitationBackpropRules` (usable with :class:`captum_ext.lrp.LRP`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
)
from captum.log import log_usage
from torch import nn

from captum_ext.core.modified_backward import modified_backward
from captum_ext.core.modules import LINEAR_TYPES
from captum_ext.core.validation import check_finite, check_result_finite, check_targets
from captum_ext.lrp import (
    LRP,
    Alpha1Beta0,
    Canonizer,
    ExcitationBackprop,
    LRPRule,
    RuleSet,
    ZPlusRule,
)

__all__ = [
    "ContrastiveExcitationBackprop",
    "ContrastiveExcitationBackpropRules",
    "ContrastiveLRP",
    "ContrastiveZPlusRule",
]


def _one_hot(output: torch.Tensor, target: Any) -> torch.Tensor:
    """``(B, K)`` one-hot mask of the target per sample (int, list or tensor targets)."""
    if output.dim() != 2:
        raise ValueError(
            f"contrastive methods need (batch, classes) logits, got shape {tuple(output.shape)}."
        )
    if target is None:
        raise ValueError("contrastive methods need a target class (the contrast is against it).")
    check_targets(target, output)
    index = torch.as_tensor(target, device=output.device, dtype=torch.long).reshape(-1)
    if index.numel() == 1:
        index = index.expand(output.shape[0])
    if index.numel() != output.shape[0]:
        raise ValueError(f"got {index.numel()} targets for a batch of {output.shape[0]}.")
    return torch.zeros_like(output).scatter_(1, index[:, None], 1.0)


def _relevances(
    method: LRP,
    inputs: Any,
    additional_forward_args: Any,
    target: Any,
    starts: Any,
) -> tuple[bool, list[tuple[torch.Tensor, ...]]]:
    """Input relevances for each start ``starts(output, one_hot)`` injected at the logits."""
    is_tuple = _is_tuple(inputs)
    input_tuple = _format_tensor_into_tuples(inputs)
    check_finite(input_tuple)
    extra = _format_additional_forward_args(additional_forward_args) or ()
    leaves = tuple(x.detach().requires_grad_() for x in input_tuple)
    with modified_backward(method) as forward, torch.enable_grad():
        output = forward(*leaves, *extra)
        mask = _one_hot(output, target)
        vectors = starts(output.detach(), mask)
        results = []
        for index, vector in enumerate(vectors):
            grads = torch.autograd.grad(
                output,
                leaves,
                grad_outputs=vector,
                retain_graph=index < len(vectors) - 1,
                allow_unused=True,
            )
            results.append(
                tuple(torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads))
            )
    return is_tuple, results


def _normalised(relevance: tuple[torch.Tensor, ...], what: str) -> tuple[torch.Tensor, ...]:
    total = sum(r.reshape(len(r), -1).sum(1) for r in relevance)
    if bool((total == 0).any()):
        raise ValueError(
            f"the {what} relevance sums to zero for some sample, so n(R) = R / ΣR of eq. 15 is "
            "undefined; pass normalize=False."
        )
    return tuple(r / total.reshape(-1, *([1] * (r.dim() - 1))) for r in relevance)


class ContrastiveLRP(LRP):
    """Contrastive LRP (Gu et al. 2018) in the form of Sixt et al. (2020), eq. 15.

    Parameters
    ----------
    model : nn.Module
        The classifier (``(batch, classes)`` logits).
    rule_set : RuleSet, optional
        Rules of both relevance maps; default :class:`~captum_ext.lrp.Alpha1Beta0` (z⁺, as in
        eq. 15). Any rule set works.
    canonizers : sequence of Canonizer, optional
        As in :class:`~captum_ext.lrp.LRP`.
    normalize : bool
        Divide each map by its sum per sample (eq. 15's ``n``); ``False`` subtracts raw maps.
    clip : bool
        Apply ``max(0, ·)`` to the difference (Gu et al.'s final step; off by default, as the
        maps Sixt et al. show).

    Examples
    --------
    >>> from captum_ext import ContrastiveLRP
    >>> maps = ContrastiveLRP(model).attribute(images, target=labels)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        rule_set: RuleSet | None = None,
        canonizers: Sequence[Canonizer] | None = None,
        normalize: bool = True,
        clip: bool = False,
    ) -> None:
        super().__init__(model, Alpha1Beta0() if rule_set is None else rule_set, canonizers)
        self.normalize = bool(normalize)
        self.clip = bool(clip)

    def target_and_dual(
        self, inputs: Any, target: Any = None, additional_forward_args: Any = None
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """The two raw maps ``R(y ⊙ m_k)`` and ``R(y ⊙ (1 − m_k))`` (tuples, one per input)."""
        _, (own, dual) = _relevances(
            self,
            inputs,
            additional_forward_args,
            target,
            lambda y, m: (y * m, y * (1 - m)),
        )
        return own, dual

    @log_usage()
    def attribute(  # type: ignore[override]
        self,
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        target: Any = None,
        additional_forward_args: Any = None,
    ) -> Any:
        """``n(R(y ⊙ m_k)) − n(R(y ⊙ (1 − m_k)))`` per sample, shaped as ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Batched inputs; never modified.
        target : int, list or Tensor
            The explained class per sample (required).
        additional_forward_args : Any, optional
            Extra forward arguments.
        """
        own, dual = self.target_and_dual(inputs, target, additional_forward_args)
        if self.normalize:
            own, dual = _normalised(own, "target"), _normalised(dual, "dual")
        result = tuple(a - b for a, b in zip(own, dual))
        if self.clip:
            result = tuple(r.clamp(min=0) for r in result)
        check_result_finite(result, type(self).__name__)
        return _format_output(_is_tuple(inputs), result)


class ContrastiveZPlusRule(LRPRule):
    """``Z⁺ − N⁺`` (eq. 16): z⁺ relevance of the layer minus z⁺ relevance of the negated layer.

    Parameters
    ----------
    stabilizer : float
        ε of both z⁺ denominators.
    """

    _needs_z = False

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self._zplus = ZPlusRule(stabilizer)
        self.stabilizer = self._zplus.stabilizer

    def relevance(self, layer, inputs, z, r_out):
        negated = dataclasses.replace(
            layer, weight=-layer.weight, bias=None if layer.bias is None else -layer.bias
        )
        (own,) = self._zplus.relevance(layer, inputs, z, r_out)
        (other,) = self._zplus.relevance(negated, inputs, z, r_out)
        return (own - other,)


class ContrastiveExcitationBackpropRules(ExcitationBackprop):
    """Excitation Backprop with :class:`ContrastiveZPlusRule` on the final linear layer.

    Parameters
    ----------
    final_layer : str, optional
        Name of the layer that gets ``Z⁺ − N⁺``; the last linear-type module by default.
    stabilizer : float
        ε of the z⁺ denominators.
    """

    def __init__(
        self, final_layer: str | None = None, stabilizer: float = 1e-6, **kwargs: Any
    ) -> None:
        super().__init__(stabilizer, **kwargs)
        self.final_layer = final_layer
        self._final_rule = ContrastiveZPlusRule(stabilizer)

    def resolve(
        self, model: nn.Module, overrides: Mapping[str, LRPRule] | None = None
    ) -> list[tuple[str, nn.Module, LRPRule]]:
        modules = dict(model.named_modules())
        name = self.final_layer
        if name is None:
            linear = [n for n, m in modules.items() if isinstance(m, LINEAR_TYPES)]
            if not linear:
                raise TypeError(f"{type(model).__name__} has no linear layer for eq. 16.")
            name = linear[-1]
        elif name not in modules or not isinstance(modules[name], LINEAR_TYPES):
            raise ValueError(f"final_layer {name!r} is not a linear-type module of the model.")
        return super().resolve(model, {name: self._final_rule, **(overrides or {})})


class ContrastiveExcitationBackprop(LRP):
    """Contrastive Excitation Backprop (Zhang et al. 2018) as in Sixt et al. (2020), eq. 16.

    Relevance starts as the one-hot target ``m_k`` (not the logit), passes ``Z⁺ − N⁺`` at the
    final linear layer and z⁺ below it.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    final_layer : str, optional
        The layer that gets the contrastive rule (default: the last linear-type module).
    canonizers : sequence of Canonizer, optional
        As in :class:`~captum_ext.lrp.LRP`.
    stabilizer : float
        ε of the z⁺ denominators.

    Examples
    --------
    >>> from captum_ext import ContrastiveExcitationBackprop
    >>> maps = ContrastiveExcitationBackprop(model).attribute(x, target=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        final_layer: str | None = None,
        canonizers: Sequence[Canonizer] | None = None,
        stabilizer: float = 1e-6,
    ) -> None:
        rules = ContrastiveExcitationBackpropRules(final_layer, stabilizer)
        super().__init__(model, rule_set=rules, canonizers=canonizers)

    @log_usage()
    def attribute(  # type: ignore[override]
        self,
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        target: Any = None,
        additional_forward_args: Any = None,
    ) -> Any:
        """``(Z⁺ − N⁺)`` at the final layer, z⁺ below, started from ``m_k``; shaped as inputs."""
        is_tuple, (relevance,) = _relevances(
            self, inputs, additional_forward_args, target, lambda y, m: (m,)
        )
        check_result_finite(relevance, type(self).__name__)
        return _format_output(is_tuple, relevance)
