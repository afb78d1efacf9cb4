"""Op modules standing in for the functional operations of a traced graph, and the tables
that classify operations (see :mod:`captum_ext.lrp.tracing`)."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn


class TracingError(TypeError):
    """The model cannot be explained on the automatic path (tracing or an operation refused)."""


class Slot:
    """Placeholder for the i-th node argument inside an operation's argument template."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<slot {self.index}>"


class _Method:
    """``tensor.name(*args, **kwargs)`` as a plain callable (for call_method nodes)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(obj, self.name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tensor.{self.name}"


class FunctionalOp(nn.Module):
    """One functional call of the traced graph as a module (base class of the op modules).

    The module's positional arguments are the graph values the call reads (tensors, and also
    sizes); everything else (dims, flags, shapes given as constants) is stored in a template.

    Attributes
    ----------
    op : str
        The operation, e.g. ``"operator.add"`` or ``"Tensor.view"``.
    source : str
        The source line that called it (``file:line: code``), for messages.
    variable_slots : tuple of int
        Positions of the arguments that depend on the model input (relevance can reach them).
    gate_slots : tuple of int
        Positions of arguments treated as constant gates (see :class:`GatedProduct`).
    """

    def __init__(
        self,
        fn: Any,
        template: tuple[tuple, dict],
        variable_slots: Sequence[int],
        *,
        op: str,
        source: str,
        gate_slots: Sequence[int] = (),
        reason: str = "",
    ) -> None:
        super().__init__()
        self.fn = fn
        self.template = template
        self.variable_slots = tuple(variable_slots)
        self.gate_slots = tuple(gate_slots)
        self.op = op
        self.source = source
        self.reason = reason

    def forward(self, *slots: Any) -> Any:
        args, kwargs = fx.node.map_aggregate(
            self.template, lambda a: slots[a.index] if isinstance(a, Slot) else a
        )
        return self.fn(*args, **kwargs)

    @property
    def relevant_slots(self) -> tuple[int, ...]:
        """Variable arguments that are not gates: the ones a proportional rule feeds."""
        return tuple(i for i in self.variable_slots if i not in self.gate_slots)

    def extra_repr(self) -> str:
        return f"{self.op}  # {self.source}"


class Addition(FunctionalOp):
    """``a + b``, ``a - b`` (also in place): proportional split by default (NormRule-style)."""


class Reduction(FunctionalOp):
    """An operation linear in its variable input(s): mean, sum, average pooling, interpolation,
    functional linear/convolution layers, products with a constant (proportional rule)."""


class Routing(FunctionalOp):
    """Moves or selects values without arithmetic: reshape, cat/stack, indexing, max pooling…"""


class Product(FunctionalOp):
    """A product of two input-dependent factors, neither of them a recognised gate."""


class GatedProduct(FunctionalOp):
    """``x * g`` or ``x / g`` with ``g`` from a sigmoid-type gate or a normaliser (constant)."""


class AttentionProduct(FunctionalOp):
    """A product with a softmax factor (attention weights times values)."""


class Activation(FunctionalOp):
    """A functional element-wise non-linearity (``F.relu``, ``F.gelu``, ``x.sigmoid()``, …)."""


class Softmax(FunctionalOp):
    """``F.softmax`` / ``x.softmax(dim)`` on the relevance path."""


class Normalization(FunctionalOp):
    """``F.layer_norm`` (and ``F.rms_norm``)."""


class Unsupported(FunctionalOp):
    """An operation with no rule; relevance reaching it is refused (see ``reason``)."""


class _BoundCall:
    """An op module's call with its non-relevance arguments fixed (the rules' ``layer``)."""

    def __init__(self, module: FunctionalOp, slots: tuple, relevant: Sequence[int]) -> None:
        self.module = module
        self.slots = slots
        self.relevant = tuple(relevant)

    def forward(self, *values: torch.Tensor) -> Any:
        slots = list(self.slots)
        for index, value in zip(self.relevant, values, strict=True):
            slots[index] = value
        return self.module.forward(*slots)


_ADDITIONS = {operator.add, operator.sub, torch.add, torch.sub, torch.subtract}
_INPLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}


def _addition_signs(fn: Any, n: int) -> tuple[int, ...]:
    if fn in (operator.sub, torch.sub, torch.subtract) and n == 2:
        return (1, -1)
    return (1,) * n


_PRODUCTS = {
    operator.mul,
    torch.mul,
    torch.multiply,
    operator.matmul,
    torch.matmul,
    torch.bmm,
    torch.mm,
    torch.einsum,
}
_DIVISIONS = {operator.truediv, torch.div, torch.true_divide}
_LINEAR_FUNCS = {
    torch.mean,
    torch.sum,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.interpolate,
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    torch.neg,
    operator.neg,
}
_ROUTING_FUNCS = {
    torch.cat,
    torch.concat,
    torch.stack,
    torch.flatten,
    torch.reshape,
    torch.permute,
    torch.transpose,
    torch.swapaxes,
    torch.movedim,
    torch.squeeze,
    torch.unsqueeze,
    torch.chunk,
    torch.split,
    torch.unbind,
    torch.narrow,
    torch.roll,
    torch.flip,
    torch.t,
    torch.clone,
    operator.getitem,
    F.pad,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.pixel_shuffle,
    F.pixel_unshuffle,
}
_ACTIVATION_FUNCS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.mish,
    F.elu,
    F.selu,
    F.celu,
    F.leaky_relu,
    F.hardswish,
    F.hardtanh,
    F.softplus,
    F.sigmoid,
    torch.sigmoid,
    F.hardsigmoid,
    F.tanh,
    torch.tanh,
}
_SOFTMAX_FUNCS = {F.softmax, torch.softmax}
_SHAPE_FUNCS = {
    torch.zeros_like,
    torch.ones_like,
    torch.empty_like,
    torch.full_like,
    torch.rand_like,
    torch.randn_like,
    getattr,
    len,
    torch.numel,
    torch._assert,
    isinstance,
}
_GATE_FUNCS = {torch.sigmoid, F.sigmoid, F.hardsigmoid, torch.rsqrt, torch.sqrt, torch.reciprocal}

_ROUTING_METHODS = {
    "view",
    "view_as",
    "reshape",
    "reshape_as",
    "permute",
    "transpose",
    "flatten",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "contiguous",
    "expand",
    "expand_as",
    "chunk",
    "split",
    "unbind",
    "narrow",
    "roll",
    "flip",
    "t",
    "clone",
    "to",
    "type_as",
    "float",
    "double",
    "half",
    "bfloat16",
    "repeat",
    "tile",
    "masked_fill",
    "movedim",
    "swapaxes",
    "__getitem__",
}
_LINEAR_METHODS = {"mean", "sum", "neg"}
_ADD_METHODS = {"add", "sub", "__add__", "__sub__", "__radd__"}
_PRODUCT_METHODS = {"mul", "matmul", "bmm", "mm", "__mul__", "__rmul__", "__matmul__"}
_DIV_METHODS = {"div", "__truediv__"}
_ACTIVATION_METHODS = {"relu", "sigmoid", "tanh"}
_SHAPE_METHODS = {
    "size",
    "dim",
    "numel",
    "new_zeros",
    "new_ones",
    "new_full",
    "new_empty",
    "new_tensor",
    "type",
    "is_floating_point",
    "is_contiguous",
    "get_device",
    "ndimension",
    "nelement",
    "element_size",
}
_GATE_METHODS = {"sigmoid", "rsqrt", "sqrt", "reciprocal"}
_GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid)
_PASS_THROUGH_METHODS = _ROUTING_METHODS


def _method_fn(name: str) -> tuple[Any, str]:
    return _Method(name), f"Tensor.{name}"


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    module = {"_operator": "operator", "torch._C._nn": "F", "torch.nn.functional": "F"}.get(
        module, module
    )
    return f"{module}.{name}" if module else name


def _source(node: fx.Node) -> str:
    trace = node.stack_trace or ""
    matches = [
        m
        for m in re.findall(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', trace)
        if "/torch/" not in m[0] and "/lrp/tracing/" not in m[0].replace("\\", "/")
    ]
    if not matches:
        return "source line unknown"
    path, line, code = matches[-1]
    return f"{path}:{line}: {code.strip()}"
