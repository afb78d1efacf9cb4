"""Rule resolution on a traced model: op-module defaults and the refusal of unhandled paths."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from captum_ext.lrp.canonizers import SumModule
from captum_ext.lrp.rules import GradientRule, LRPRule, PassRule
from captum_ext.lrp.tracing.op_rules import (
    LayerNormRule,
    OpRule,
    ProportionalRule,
    UnsupportedRule,
    _Adapted,
)
from captum_ext.lrp.tracing.ops import (
    Activation,
    Addition,
    AttentionProduct,
    FunctionalOp,
    GatedProduct,
    Normalization,
    Product,
    Reduction,
    Routing,
    Softmax,
    TracingError,
    Unsupported,
    _source,
)


def _match(layer_map, module: nn.Module) -> LRPRule | None:
    return next((rule for types, rule in layer_map if isinstance(module, types)), None)


def _op_defaults(rule_set: Any) -> list:
    norm = _match(rule_set.layer_map, SumModule())
    stab = getattr(norm, "stabilizer", 1e-6)
    activation = _match(rule_set.layer_map, nn.ReLU()) or PassRule()
    proportional = ProportionalRule(stab)
    return [
        ((Addition, Reduction, GatedProduct, AttentionProduct), proportional),
        (Routing, GradientRule()),
        (Activation, activation),
        ((nn.LayerNorm, Normalization), LayerNormRule(stab)),
        *([(nn.RMSNorm, LayerNormRule(stab))] if hasattr(nn, "RMSNorm") else []),
        (nn.Embedding, GradientRule()),
        ((Product, Softmax, Unsupported), UnsupportedRule()),
    ]


def _receivers(module: nn.Module, rule: LRPRule, node: fx.Node) -> list[fx.Node]:
    args = list(node.args)
    if isinstance(module, FunctionalOp):
        if isinstance(rule, OpRule) or isinstance(rule, LayerNormRule):
            slots = rule.slots_of(module) if isinstance(rule, OpRule) else module.relevant_slots
        else:  # the gradient or another plain rule: every input-dependent argument
            slots = module.variable_slots
        return [args[i] for i in slots]
    return [a for a in node.all_input_nodes]


def resolve_rules(
    rule_set: Any, model: nn.Module, overrides: dict[str, LRPRule] | None = None
) -> list[tuple[str, nn.Module, LRPRule]]:
    """``(name, module, rule)`` of every layer of a traced model, after checking the path.

    The rule set's entries come first; the op modules' defaults (module docstring) follow.
    Every operation that relevance reaches must have a rule: the first one without is refused
    with its operation and source line, before anything is computed.
    """
    extended = copy.copy(rule_set)
    extended.layer_map = [*rule_set.layer_map, *_op_defaults(rule_set)]
    # Plain nn.Module holders the GraphModule creates for parameters a graph reads directly
    # (e.g. ``qkv`` of ``qkv.weight``) are never called: they need no rule.
    holders = {
        name: GradientRule()
        for name, module in model.named_modules()
        if type(module) is nn.Module and next(module.children(), None) is None
    }
    resolved = extended.resolve(model, overrides={**holders, **(overrides or {})})
    rules = {name: rule for name, _, rule in resolved}
    modules = dict(model.named_modules())
    if isinstance(model, fx.GraphModule):
        _check_path(model, modules, rules)
    out = []
    for name, module, rule in resolved:
        if isinstance(rule, UnsupportedRule):
            continue
        if isinstance(module, FunctionalOp) and not isinstance(
            rule, (OpRule, GradientRule, LayerNormRule)
        ):
            rule = _Adapted(rule)
        out.append((name, module, rule))
    return out


def _check_path(model: fx.GraphModule, modules: dict, rules: dict) -> None:
    reached: set[fx.Node] = set()
    nodes = list(model.graph.nodes)
    for node in nodes:
        if node.op == "output":
            reached.update(node.all_input_nodes)
    for node in reversed(nodes):
        if node not in reached or node.op != "call_module":
            continue
        module, rule = modules[node.target], rules.get(node.target)
        if isinstance(rule, UnsupportedRule):
            reason = getattr(module, "reason", "") or f"{getattr(module, 'op', '?')} has no rule"
            raise TracingError(
                f"LRP cannot propagate relevance through {getattr(module, 'op', node.target)} "
                f"at {getattr(module, 'source', _source(node))} (module {node.target!r}, "
                f"{type(module).__name__}): {reason}. Give it a rule, e.g. "
                f"rule_set=...(name_map={{{node.target!r}: rule}}) or a layer_map entry for "
                f"{type(module).__name__}; nothing was computed."
            )
        reached.update(n for n in _receivers(module, rule, node) if isinstance(n, fx.Node))


def check_conservation(
    relevance: Sequence[torch.Tensor], output: torch.Tensor, rtol: float | bool
) -> None:
    """Raise when ``Σ relevance`` differs from the target score by more than ``rtol`` (relative).

    ``rtol=True`` means 1e-6 in float64 and 1e-4 otherwise.
    """
    total = sum(r.reshape(r.shape[0], -1).sum(1) for r in relevance)
    f = output.reshape(output.shape[0], -1).sum(1)
    if rtol is True:
        rtol = 1e-6 if f.dtype == torch.float64 else 1e-4
    error = (total - f).abs() / f.abs().clamp_min(torch.finfo(f.dtype).tiny)
    worst = float(error.max())
    if not worst <= float(rtol):
        raise ValueError(
            f"LRP relevance is not conserved: Σ R = {total.tolist()} but f_c = {f.tolist()} "
            f"(relative error {worst:.3g} > {float(rtol):.3g}). Biases, ε > 0, z⁺/γ rules on "
            "signed inputs and the softmax rule absorb relevance by design; with bias-free "
            "layers and Epsilon(≈0) a violation means an operation is mis-handled."
        )
