"""Tracing with a per-model cache, and what other methods read from the traced graph."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from torch import fx, nn

from captum_ext.core.isolation import original_module
from captum_ext.lrp.functional_layers import FunctionalLayer, lift_functional_layers
from captum_ext.lrp.tracing.ops import TracingError, _source
from captum_ext.lrp.tracing.rewrite import _bn_pairs, _order_as_called, _rewrite, _variables
from captum_ext.lrp.tracing.tracer import HookBoundary, _LRPTracer

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_PLAIN = (bool, int, float, str, type(None))


def _fingerprint(model: nn.Module) -> tuple:
    # What the traced graph bakes in: the module structure, train/eval flags and the plain
    # attributes Python control flow in a forward may read (flags, sizes, probabilities).
    # Views of the model (captum_ext.core.isolation) count as the model itself: identities are
    # those of the user's modules, parameters are identified by their storage. Each call then
    # runs on its own view of the cached graph.
    return (
        type(model),
        vars(model).get("forward"),
        tuple(
            (
                name,
                id(original_module(m)),
                m.training,
                tuple((k, v) for k, v in vars(m).items() if k[0] != "_" and type(v) in _PLAIN),
                tuple((p.data_ptr(), p.shape, p.dtype) for p in m.parameters(recurse=False)),
            )
            for name, m in model.named_modules()
        ),
    )


def _hook_complete(model: nn.Module) -> bool:
    """Whether module hooks see every operation: nn.Sequential compositions of leaf layers."""
    return all(
        isinstance(m, nn.Sequential) or next(m.children(), None) is None for m in model.modules()
    )


# torch.fx patches nn.Module.__call__ for the whole process while it traces: one trace at a time.
_TRACE_LOCK = threading.Lock()


def trace(model: nn.Module, n_inputs: int | None = None) -> fx.GraphModule | None:
    """The traced, canonized copy of ``model`` LRP runs on (cached per model).

    ``n_inputs``: how many leading forward arguments are attributed (the others, Captum's
    ``additional_forward_args``, are constants for LRP); ``None``: all of them.

    Returns ``None`` when tracing fails but ``model`` is a pure ``nn.Sequential`` composition
    (module hooks then see everything).

    Raises
    ------
    TracingError
        When tracing fails on any other model, naming the tracer's reason.
    """
    key = (_fingerprint(model), n_inputs)
    # Keyed to the user's model, so every call's private view finds the same traced graph.
    cached = _CACHE.setdefault(original_module(model), {}).get(n_inputs)
    if cached is not None and cached[0] == key:
        return cached[1]
    with _TRACE_LOCK:
        return _trace(model, n_inputs, key)


def _trace(model: nn.Module, n_inputs: int | None, key: tuple) -> fx.GraphModule | None:
    cached = _CACHE[original_module(model)].get(n_inputs)
    if cached is not None and cached[0] == key:  # traced by another thread meanwhile
        return cached[1]
    tracer = _LRPTracer()
    try:
        graph = tracer.trace(model)
    except TracingError:
        raise
    except Exception as err:  # the tracer raises many types; all mean "not traceable"
        if _hook_complete(model):
            _CACHE[original_module(model)][n_inputs] = (key, None)
            return None
        raise TracingError(
            f"LRP's automatic canonization could not trace {type(model).__name__} with "
            f"torch.fx ({type(err).__name__}: {err}). Make the forward traceable (no Python "
            "control flow on tensor values), or pass canonizers=[...] (e.g. "
            "captum_ext.lrp.default_canonizers()) to explain it with module hooks only, which "
            "is exact only if every operation of the forward is an nn.Module."
        ) from err
    extra = {name: module for module, name in tracer.extra_modules.items()}
    root: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            root[node.target] = extra.get(node.target) or model.get_submodule(node.target)
        elif node.op == "get_attr":
            obj: Any = model
            for part in node.target.split("."):
                obj = getattr(obj, part)
            root[node.target] = obj
    lift_functional_layers(graph, root, _variables(graph, n_inputs), _source)
    modules = {name: m for name, m in root.items() if isinstance(m, nn.Module)}
    root.update(_rewrite(graph, modules, n_inputs))
    gm = fx.GraphModule(root, graph, class_name=f"LRPTraced{type(model).__name__}")
    _order_as_called(gm)
    gm.lrp_bn_pairs = _bn_pairs(gm.graph, dict(gm.named_modules()))
    _CACHE[original_module(model)][n_inputs] = (key, gm)
    return gm


def batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(layer, batchnorm)`` names of ``model`` where the BatchNorm only reads the layer's output.

    Found on the traced graph (so layers named freely, e.g. ``_expand_conv``/``_bn0``, and
    Conv/Linear subclasses with their own forward are paired too); for the hook-based methods
    that fold BatchNorm with :class:`~captum_ext.lrp.MergeBatchNorm`. Empty when the model
    cannot be traced.
    """
    try:
        traced = trace(model, 1)
    except TracingError:
        return []
    if traced is None:
        return []
    modules = dict(model.named_modules())
    pairs = []
    for layer, bn in traced.lrp_bn_pairs:
        owner = traced.get_submodule(layer)
        name = owner.owner if isinstance(owner, FunctionalLayer) else layer
        if isinstance(modules.get(name), (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            pairs.append((name, bn))
    return pairs


def hook_points(model: nn.Module, name: str, *, output: bool = False) -> list[nn.Module]:
    """The modules of ``model`` whose forward hooks observe the user's module ``name``.

    On a traced model (or a view of one) a module that is traced through is never called; its
    inputs pass its entry :class:`HookBoundary` and its output its exit boundary, so a
    forward pre-hook (``output=False``) or forward hook (``output=True``) goes there. Elsewhere
    it is the module itself.
    """
    module = model.get_submodule(name)
    graph = getattr(model, "graph", None)
    if not isinstance(graph, fx.Graph) or any(
        node.op == "call_module" and node.target == name for node in graph.nodes
    ):
        return [module]
    found = [
        m
        for m in model.modules()
        if isinstance(m, HookBoundary) and m.path == name and m.exit == output
    ]
    return found or [module]
