"""Graph rewriting: every input-dependent functional node becomes a call of an op module;
BatchNorm pairs and module order of the traced copy."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from captum_ext.lrp.canonizers import MergeBatchNorm
from captum_ext.lrp.tracing.op_rules import _NORM_FIXED
from captum_ext.lrp.tracing.ops import (
    _ACTIVATION_FUNCS,
    _ACTIVATION_METHODS,
    _ADD_METHODS,
    _ADDITIONS,
    _DIV_METHODS,
    _DIVISIONS,
    _GATE_FUNCS,
    _GATE_METHODS,
    _GATE_MODULES,
    _INPLACE,
    _LINEAR_FUNCS,
    _LINEAR_METHODS,
    _PASS_THROUGH_METHODS,
    _PRODUCT_METHODS,
    _PRODUCTS,
    _ROUTING_FUNCS,
    _ROUTING_METHODS,
    _SHAPE_FUNCS,
    _SHAPE_METHODS,
    _SOFTMAX_FUNCS,
    Activation,
    Addition,
    AttentionProduct,
    FunctionalOp,
    GatedProduct,
    Normalization,
    Product,
    Reduction,
    Routing,
    Slot,
    Softmax,
    Unsupported,
    _Method,
    _method_fn,
    _op_name,
    _source,
)
from captum_ext.lrp.tracing.tracer import HookBoundary


def _variables(graph: fx.Graph, n_inputs: int | None = None) -> set[fx.Node]:
    """Nodes whose value depends on the values (not only the shapes) of the model inputs
    (the first ``n_inputs`` placeholders; the others are additional forward arguments)."""
    variable: set[fx.Node] = set()
    placeholders = 0
    for node in graph.nodes:
        if node.op == "placeholder":
            if n_inputs is None or placeholders < n_inputs:
                variable.add(node)
            placeholders += 1
        elif node.op in ("call_function", "call_method", "call_module"):
            if node.op == "call_function" and node.target in _SHAPE_FUNCS:
                continue
            if node.op == "call_method" and node.target in _SHAPE_METHODS:
                continue
            if any(a in variable for a in node.all_input_nodes):
                variable.add(node)
    return variable


def _gate_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """``"softmax"``, ``"gate"`` or None: what produced ``node``, looking through routing."""
    for _ in range(64):
        if node.op == "call_module":
            module = modules.get(node.target)
            if isinstance(module, nn.Softmax):
                return "softmax"
            if isinstance(module, _GATE_MODULES):
                return "gate"
            if isinstance(module, (nn.Dropout, nn.Identity, nn.Flatten, nn.Unflatten)):
                node = node.args[0]
                continue
            return None
        if node.op == "call_function":
            if node.target in _SOFTMAX_FUNCS:
                return "softmax"
            if node.target in _GATE_FUNCS:
                return "gate"
            if node.target in _ROUTING_FUNCS and node.args and isinstance(node.args[0], fx.Node):
                node = node.args[0]
                continue
            return None
        if node.op == "call_method":
            if node.target == "softmax":
                return "softmax"
            if node.target in _GATE_METHODS:
                return "gate"
            if node.target in _PASS_THROUGH_METHODS and isinstance(node.args[0], fx.Node):
                node = node.args[0]
                continue
        return None
    return None


def _classify(
    node: fx.Node, variable: set[fx.Node], modules: dict[str, nn.Module]
) -> tuple[type[FunctionalOp], Any, str, list[int], str]:
    """(op class, callable, op name, gate positions among the node inputs, refusal reason)."""
    target = node.target
    if node.op == "call_method":
        name = str(target)
        fn, op = _method_fn(name)
        base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
        fn_base = _Method(base)
        if base in _ROUTING_METHODS:
            return Routing, fn_base, op, [], ""
        if base in _LINEAR_METHODS:
            return Reduction, fn_base, op, [], ""
        if base in _ADD_METHODS:
            return Addition, fn_base, op, [], ""
        if base in _PRODUCT_METHODS | _DIV_METHODS:
            return (*_product(node, variable, modules, fn_base, op, base in _DIV_METHODS),)
        if base in _ACTIVATION_METHODS:
            return Activation, fn_base, op, [], ""
        if base == "softmax":
            return Softmax, fn_base, op, [], ""
        return Unsupported, fn, op, [], f"{op} has no LRP rule"
    op = _op_name(node)
    fn = _INPLACE.get(target, target)
    if _is_inactive_stochastic_depth(node):
        return Routing, fn, op, [], ""
    if fn in _ADDITIONS:
        return Addition, fn, op, [], ""
    if fn in _PRODUCTS or fn in _DIVISIONS:
        return (*_product(node, variable, modules, fn, op, fn in _DIVISIONS),)
    if fn in _LINEAR_FUNCS:
        return Reduction, fn, op, [], ""
    if fn in _ROUTING_FUNCS:
        return Routing, fn, op, [], ""
    if fn in _ACTIVATION_FUNCS:
        return Activation, fn, op, [], ""
    if fn in _SOFTMAX_FUNCS:
        return Softmax, fn, op, [], ""
    if fn in _NORM_FIXED:
        return Normalization, fn, op, [], ""
    return Unsupported, fn, op, [], f"{op} has no LRP rule"


def _is_inactive_stochastic_depth(node: fx.Node) -> bool:
    # torchvision's stochastic_depth (fx-wrapped) is the identity when not training.
    if getattr(node.target, "__name__", "") != "stochastic_depth":
        return False
    training = node.kwargs.get("training", node.args[3] if len(node.args) > 3 else True)
    return training is False


def _product(node, variable, modules, fn, op, division):
    """Classify ``a * b``, ``a / b``, ``a @ b``, ``einsum``: which factor (if any) is a gate."""
    args = list(node.args[1:] if fn is torch.einsum else node.args)
    factors = [i for i, a in enumerate(args) if isinstance(a, fx.Node) and a in variable]
    if len(factors) <= 1:
        if division and factors and factors[0] != 0:
            return Unsupported, fn, op, [], f"{op} divides by an input-dependent tensor"
        return Reduction, fn, op, [], ""
    if len(factors) > 2:
        return Product, fn, op, [], f"{op} multiplies {len(factors)} input-dependent factors"
    if division:  # x / g: the denominator is a normaliser, a constant for LRP
        return GatedProduct, fn, op, [factors[1]], ""
    kinds = [_gate_kind(args[i], modules) for i in factors]
    if kinds.count(None) == 1:
        gate = factors[kinds.index(None) ^ 1]
        kind = kinds[kinds.index(None) ^ 1]
        cls = AttentionProduct if kind == "softmax" else GatedProduct
        return cls, fn, op, [gate], ""
    reason = (
        f"{op} multiplies two input-dependent factors, neither of them a recognised gate "
        "(sigmoid, hardsigmoid, softmax, rsqrt); give it a rule (e.g. the transformer rule "
        "set AttnLRP, or ProportionalRule(share=0.5, all_variables=True))"
    )
    return Product, fn, op, [], reason


def _rewrite(
    graph: fx.Graph, modules: dict[str, nn.Module], n_inputs: int | None
) -> dict[str, nn.Module]:
    """Replace every input-dependent functional node by a call of a new op module."""
    variable = _variables(graph, n_inputs)
    new_modules: dict[str, nn.Module] = {}
    order = {node: i for i, node in enumerate(graph.nodes)}
    # Classify on the original graph first: gate detection looks at the producers' targets.
    plans = {
        node: _classify(node, variable, modules)
        for node in graph.nodes
        if node.op in ("call_function", "call_method") and node in variable
    }
    for node, (cls, fn, op, gates, reason) in plans.items():
        inplace = node.target in _INPLACE or (
            node.op == "call_method"
            and str(node.target).endswith("_")
            and not str(node.target).endswith("__")
        )
        if inplace and isinstance(node.args[0], fx.Node):
            later = [u for u in node.args[0].users if u is not node and order[u] > order[node]]
            if later:
                cls, reason = (
                    Unsupported,
                    (
                        f"{op} modifies a tensor in place that is used again later; write it "
                        "out of place"
                    ),
                )
        inputs: list[fx.Node] = []
        index: dict[fx.Node, int] = {}

        def to_slot(n: fx.Node, inputs=inputs, index=index) -> Slot:
            if n not in index:
                index[n] = len(inputs)
                inputs.append(n)
            return Slot(index[n])

        args = node.args
        kwargs = dict(node.kwargs)
        if "inplace" in kwargs:
            kwargs["inplace"] = False
        template = fx.node.map_arg((tuple(args), kwargs), to_slot)
        arg_nodes = list(node.args[1:] if fn is torch.einsum else node.args)
        gate_slots = [index[arg_nodes[g]] for g in gates if arg_nodes[g] in index]
        variable_slots = [i for i, n in enumerate(inputs) if n in variable]
        module = cls(
            fn,
            template,
            variable_slots,
            op=op,
            source=_source(node),
            gate_slots=gate_slots,
            reason=reason,
        )
        name = f"fx.{node.name}"
        new_modules[name] = module
        with graph.inserting_after(node):
            call = graph.call_module(name, tuple(inputs))
        call.meta = dict(node.meta)
        call.stack_trace = node.stack_trace
        node.replace_all_uses_with(call)
        # Later nodes now read the new call: it inherits the node's place in the analysis.
        variable.add(call)
        order[call] = order[node]
        graph.erase_node(node)
        call.name = node.name
    graph.lint()
    return new_modules


def _order_as_called(gm: fx.GraphModule) -> None:
    """Register ``gm``'s submodules in the order the graph first calls them.

    ``fx.GraphModule`` installs a dict root by nesting depth, so a shallow head (``fc``)
    could precede a deep stem (``features.0.0``) in ``named_modules()``; the rule sets'
    ``first_map`` ("the first layer") reads that order.
    """
    first: dict[str, int] = {}
    for i, node in enumerate(gm.graph.nodes):
        if node.op in ("call_module", "get_attr"):
            parts = str(node.target).split(".")
            for depth in range(1, len(parts) + 1):
                first.setdefault(".".join(parts[:depth]), i)
    for prefix, module in list(gm.named_modules()):
        children = module._modules
        if len(children) < 2:
            continue
        dotted = f"{prefix}." if prefix else ""
        order = sorted(children.items(), key=lambda item: first.get(dotted + item[0], len(first)))
        module._modules = dict(order)


def _bn_pairs(graph: fx.Graph, modules: dict[str, nn.Module]) -> list[tuple[str, str]]:
    """(linear, batchnorm) names where the BatchNorm is the only consumer of the layer.

    Hook boundaries of a traced-through layer (e.g. a Conv2d subclass with its own forward)
    between the two are looked through: on the usual torch.nn layers too, the layer's hooks
    see the folded output.
    """
    linear = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    bn_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    pairs = []
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), bn_types):
            continue
        source = node.args[0] if node.args else None
        while (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), HookBoundary)
            and modules[source.target].exit
            and len(source.users) == 1
        ):
            source = source.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), linear)
            and len(source.users) == 1
            and calls[source.target] == 1
            and calls[node.target] == 1
        ):
            pairs.append((source.target, node.target))
    return pairs


class GraphMergeBatchNorm(MergeBatchNorm):
    """MergeBatchNorm on the pairs found in the traced graph only (no name heuristics)."""

    @staticmethod
    def find_pairs(model: nn.Module) -> list:
        return []
