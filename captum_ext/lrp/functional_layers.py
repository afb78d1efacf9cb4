"""Functional convolutions and linear maps with a parameter weight, as real layers of the trace.

Many libraries subclass ``nn.Conv2d``/``nn.Linear`` and override ``forward`` — e.g. the
TensorFlow-style "same" padding of EfficientNet ports (``Conv2dStaticSamePadding`` pads with
a ``ZeroPad2d`` child, then calls ``F.conv2d(x, self.weight, self.bias, ...)``). torch.fx
traces through such a module, so its convolution reaches the graph as a functional call. As
a plain linear operation it would get the proportional (ε) rule whatever the rule set says
(z⁺ for :class:`~captum_ext.lrp.EpsilonPlus`), and a following BatchNorm could not be folded
into it.

:func:`lift_functional_layers` replaces every such call whose weight (and bias) are
parameters of the model and whose other arguments are constants by a call of a layer module
of the matching ``torch.nn`` type (:class:`FunctionalConv2d`, …). The layer holds the *same*
parameter objects (nothing is copied) and the call's geometry (stride, padding, dilation,
groups), so rule sets address it by type (convolution rules, the first-layer map) and by
name — ``"<owner>.conv2d"`` for a call inside the module ``<owner>`` — and BatchNorm folding
treats it like any convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import fx, nn

__all__ = [
    "FunctionalConv1d",
    "FunctionalConv2d",
    "FunctionalConv3d",
    "FunctionalLayer",
    "FunctionalLinear",
    "lift_functional_layers",
]


class FunctionalLayer:
    """Marker of the layers :func:`lift_functional_layers` creates (``op``: the call lifted)."""

    op: str = ""
    source: str = ""
    owner: str = ""  # name of the model's module whose parameters the call reads

    def _share(self, weight: nn.Parameter, bias: nn.Parameter | None) -> None:
        nn.Module.__init__(self)  # type: ignore[arg-type]
        # The model's own parameter objects: a canonizer swapping in folded parameters writes
        # into this module's _parameters, as for any torch.nn layer.
        self.register_parameter("weight", weight)  # type: ignore[attr-defined]
        self.register_parameter("bias", bias)  # type: ignore[attr-defined]


def _tuple(value: Any, n: int) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return (value,) * n
    return tuple(value)


class _FunctionalConv(FunctionalLayer):
    def _geometry(
        self,
        n: int,
        weight: nn.Parameter,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
    ) -> None:
        self.in_channels = weight.shape[1] * groups
        self.out_channels = weight.shape[0]
        self.kernel_size = tuple(weight.shape[2:])
        self.stride = _tuple(stride, n)
        padding = _tuple(padding, n)
        self.padding = (0,) * n if padding == "valid" else padding
        self.dilation = _tuple(dilation, n)
        self.transposed = False
        self.output_padding = (0,) * n
        self.groups = int(groups)
        self.padding_mode = "zeros"
        self._reversed_padding_repeated_twice = [0, 0] * n


class FunctionalConv1d(_FunctionalConv, nn.Conv1d):
    """``F.conv1d`` with a parameter weight, as an ``nn.Conv1d`` sharing that parameter."""

    def __init__(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> None:
        self._share(weight, bias)
        self._geometry(1, weight, stride, padding, dilation, groups)


class FunctionalConv2d(_FunctionalConv, nn.Conv2d):
    """``F.conv2d`` with a parameter weight, as an ``nn.Conv2d`` sharing that parameter."""

    def __init__(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> None:
        self._share(weight, bias)
        self._geometry(2, weight, stride, padding, dilation, groups)


class FunctionalConv3d(_FunctionalConv, nn.Conv3d):
    """``F.conv3d`` with a parameter weight, as an ``nn.Conv3d`` sharing that parameter."""

    def __init__(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> None:
        self._share(weight, bias)
        self._geometry(3, weight, stride, padding, dilation, groups)


class FunctionalLinear(FunctionalLayer, nn.Linear):
    """``F.linear`` with a parameter weight, as an ``nn.Linear`` sharing that parameter."""

    def __init__(self, weight, bias=None) -> None:
        self._share(weight, bias)
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]


# The call, its layer class and the names of its arguments after the input (in order).
_LAYERS: dict[Any, tuple[type, Sequence[str]]] = {
    F.conv1d: (FunctionalConv1d, ("weight", "bias", "stride", "padding", "dilation", "groups")),
    F.conv2d: (FunctionalConv2d, ("weight", "bias", "stride", "padding", "dilation", "groups")),
    F.conv3d: (FunctionalConv3d, ("weight", "bias", "stride", "padding", "dilation", "groups")),
    F.linear: (FunctionalLinear, ("weight", "bias")),
}


def _arguments(node: fx.Node, names: Sequence[str]) -> dict[str, Any] | None:
    values = dict(zip(names, node.args[1:], strict=False))
    for key, value in node.kwargs.items():
        if key not in names or key in values:
            return None
        values[key] = value
    if len(node.args) - 1 > len(names):
        return None
    return values


def _parameter(value: Any, root: dict[str, Any]) -> nn.Parameter | None | bool:
    """The parameter a ``get_attr`` node reads, None for None, False for anything else."""
    if value is None:
        return None
    if isinstance(value, fx.Node) and value.op == "get_attr":
        obj = root.get(value.target)
        if isinstance(obj, nn.Parameter):
            return obj
    return False


def lift_functional_layers(
    graph: fx.Graph, root: dict[str, Any], variable: set[fx.Node], source: Any
) -> None:
    """Replace functional conv/linear calls with parameter weights by layer modules (in place).

    Parameters
    ----------
    graph : torch.fx.Graph
        The traced graph; rewritten in place.
    root : dict
        Targets of the graph's ``call_module``/``get_attr`` nodes; the new layers are added
        and ``get_attr`` entries no longer read are removed.
    variable : set of torch.fx.Node
        Nodes depending on the attributed inputs (only their calls are lifted).
    source : callable
        ``node -> "file:line: code"`` for the layers' ``source`` attribute.
    """
    taken = {str(n.target) for n in graph.nodes if n.op == "call_module"}
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _LAYERS or not node.args:
            continue
        if node.args[0] not in variable:
            continue
        cls, names = _LAYERS[node.target]
        values = _arguments(node, names)
        if values is None:
            continue
        weight = _parameter(values.pop("weight", None), root)
        bias = _parameter(values.pop("bias", None), root)
        if not isinstance(weight, nn.Parameter) or bias is False:
            continue
        read: list[fx.Node] = []
        fx.node.map_arg(tuple(values.values()), read.append)
        if read:  # geometry computed in the forward: stays a functional operation
            continue
        weight_node = node.args[1] if len(node.args) > 1 else node.kwargs["weight"]
        owner = str(weight_node.target).rpartition(".")[0]
        base = f"{owner}.{node.target.__name__}" if owner else node.target.__name__
        name, k = base, 1
        while name in taken or name in root:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        layer = cls(weight, bias, **values)
        layer.op = f"F.{node.target.__name__}"
        layer.source = source(node)
        layer.owner = owner
        root[name] = layer
        with graph.inserting_after(node):
            call = graph.call_module(name, (node.args[0],))
        call.meta = dict(node.meta)
        call.stack_trace = node.stack_trace
        node.replace_all_uses_with(call)
        variable.add(call)
        graph.erase_node(node)
    for node in list(graph.nodes):
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    still_read = {n.target for n in graph.nodes if n.op in ("get_attr", "call_module")}
    for target in [t for t in root if t not in still_read]:
        del root[target]
