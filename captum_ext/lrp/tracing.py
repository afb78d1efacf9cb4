"""Automatic canonization: LRP on any model torch.fx can trace, no hand-written canonizer.

Module hooks only see ``nn.Module`` calls. Everything a model does in its ``forward`` with plain
functions — a residual ``x + y``, ``torch.cat``, ``F.relu``, ``x.mean((2, 3))``, a gating
product ``x * torch.sigmoid(s)``, ``q @ k.transpose(-2, -1)`` — would pass relevance by its plain
gradient, which is not relevance propagation (a residual addition then counts its relevance
twice: captum #546). This module

1. traces the model with a :class:`torch.fx` tracer (``nn.MultiheadAttention`` and the
   ``nn.TransformerEncoder`` stack are re-expressed with traceable operations sharing the same
   weights, because their own forward calls a fused kernel),
2. turns every functional operation on the relevance path into a small module of one of the
   classes below (:class:`Addition`, :class:`Reduction`, :class:`Routing`, :class:`Product`,
   :class:`GatedProduct`, :class:`AttentionProduct`, :class:`Activation`, :class:`Softmax`,
   :class:`Normalization`, :class:`Unsupported`), so rule sets address them like any layer
   (by type in ``layer_map`` or by name, e.g. ``"fx.add_1"``, in ``name_map``),
3. refuses, before any relevance is computed, every operation on the relevance path that has no
   rule, naming the operation and its source line.

The user's model is never modified: the traced :class:`torch.fx.GraphModule` is a separate
module whose leaf layers *are* the model's layers (parameters shared, nothing copied). It is
cached per model (a weak reference), so only the first call pays for tracing; the cache entry
is rebuilt when the model's module structure or a train/eval flag changes.

Default rules of the new modules (a rule set's own entries win):

* :class:`Addition` (``+``, ``-``), :class:`Reduction` (means, sums, average pooling,
  interpolation, functional linear layers, products with a constant): the proportional rule
  ``R_k = x_k ⊙ J_kᵀ (R / stab(z))`` (``NormRule``'s split, Euler's theorem makes it
  conservative for every operation linear in its inputs).
* :class:`Routing` (reshape, view, permute, flatten, indexing, ``cat``/``stack``, chunk/split,
  max pooling, padding, dropout): the gradient, which routes relevance unchanged.
* :class:`GatedProduct`: ``x * g`` (or ``x / g``) where ``g`` comes from a sigmoid-type gate
  (squeeze-excitation, GLU) or a normaliser (``rsqrt``, ``sqrt``): the gate is treated as a
  constant and the whole relevance goes to ``x`` (as zennit and LXT do).
* :class:`AttentionProduct`: ``A @ V`` with ``A`` a softmax: CP-LRP by default (attention
  weights constant); :class:`~captum_ext.lrp.transformer.AttnLRP` replaces it by the uniform rule.
* :class:`Activation` (``F.relu``, ``F.gelu``, ``torch.sigmoid``, …): the rule set's activation
  rule (``nn.ReLU``'s entry: the identity for the LRP sets, the gradient for ExcitationBackprop).
* ``nn.LayerNorm``/``F.layer_norm`` (:class:`Normalization`): the normaliser as a constant
  scaling (CP-LRP / AttnLRP), see :class:`LayerNormRule`.
* :class:`Product` of two non-gate factors, :class:`Softmax` and :class:`Unsupported`: no rule —
  refused if relevance reaches them (the transformer rule sets give rules).

Fallback when tracing fails (data-dependent control flow, unsupported Python): a model that is
a pure ``nn.Sequential`` composition of layers has no functional code for the hooks to miss, so
it is explained with module hooks; any other model is refused with the tracer's reason and the
way out (``canonizers=[...]`` selects the module-hook path explicitly).
"""

from __future__ import annotations

import copy
import math
import operator
import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from captum_ext.core.isolation import original_module
from captum_ext.lrp._layer import stabilize
from captum_ext.lrp.canonizers import (
    MergeBatchNorm,
    SumModule,
)
from captum_ext.lrp.functional_layers import FunctionalLayer, lift_functional_layers
from captum_ext.lrp.rules import GradientRule, LRPRule, PassRule

__all__ = [
    "Activation",
    "AttentionProduct",
    "Addition",
    "FunctionalOp",
    "GatedProduct",
    "LayerNormRule",
    "Normalization",
    "Product",
    "ProportionalRule",
    "Reduction",
    "Routing",
    "Softmax",
    "TracingError",
    "Unsupported",
    "UnsupportedRule",
    "batchnorm_pairs",
    "hook_points",
    "resolve_rules",
    "trace",
]


class TracingError(TypeError):
    """The model cannot be explained on the automatic path (tracing or an operation refused)."""


# --------------------------------------------------------------------------------------------
# Modules standing in for functional operations
# --------------------------------------------------------------------------------------------


class _Slot:
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
            self.template, lambda a: slots[a.index] if isinstance(a, _Slot) else a
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


# --------------------------------------------------------------------------------------------
# Rules of the op modules
# --------------------------------------------------------------------------------------------


class _OpRule(LRPRule):
    """Base of rules for :class:`FunctionalOp` modules: relevance for a subset of the slots."""

    layer_types: tuple[type, ...] = (FunctionalOp,)

    def slots_of(self, module: FunctionalOp) -> tuple[int, ...]:
        """Argument positions that receive relevance."""
        return module.relevant_slots

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        if not isinstance(module, FunctionalOp):
            return super().forward_hook(module, inputs, outputs)
        slots = self.slots_of(module)
        values = tuple(inputs[i] for i in slots)
        if not slots:
            return outputs
        # LRPRule's routing with the bound call as the "layer": the backward recomputes the
        # operation of the relevant arguments only; the others (gates, sizes) stay fixed.
        return LRPRule.forward_hook(self, _BoundCall(module, inputs, slots), values, outputs)


def _vjp(layer: Any, inputs: tuple[torch.Tensor, ...], s: torch.Tensor) -> tuple:
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() for x in inputs]
        grads = torch.autograd.grad(layer.forward(*leaves), leaves, s, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads))


class ProportionalRule(_OpRule):
    """``R_k = share · x_k ⊙ J_kᵀ (R / stab(z))`` for the relevant arguments ``x_k``.

    For an operation linear (homogeneous of degree 1) in the relevant arguments this conserves
    relevance (Euler: ``Σ_k J_k x_k = z``); it is :class:`~captum_ext.lrp.NormRule`'s split,
    LRP-ε with the constant arguments as bias. On a :class:`GatedProduct` the gate is fixed, so
    ``x·g`` passes its whole relevance to ``x``.

    Parameters
    ----------
    stabilizer : float
        ε of ``stab(z) = z + ε·sign(z)``.
    share : float
        Fraction of the relevance handed down (AttnLRP's uniform rule uses ``1/2`` per factor).
    all_variables : bool
        Feed every input-dependent argument, gates included (the uniform rule), instead of
        only the non-gate ones.
    """

    def __init__(
        self, stabilizer: float = 1e-6, share: float = 1.0, *, all_variables: bool = False
    ) -> None:
        if stabilizer < 0:
            raise ValueError(f"stabilizer must be >= 0, got {stabilizer}.")
        self.stabilizer = float(stabilizer)
        self.share = float(share)
        self.all_variables = bool(all_variables)

    def slots_of(self, module: FunctionalOp) -> tuple[int, ...]:
        return module.variable_slots if self.all_variables else module.relevant_slots

    def relevance(self, layer, inputs, z, r_out):
        s = r_out / stabilize(z, self.stabilizer)
        if self.share != 1.0:
            s = s * self.share
        if (
            isinstance(layer, _BoundCall)
            and layer.module.fn in _ADDITIONS
            and all(x.shape == z.shape for x in inputs)
        ):
            # a + b (or a - b) of equal shapes: the Jacobians are ±identity, no autograd needed.
            signs = _addition_signs(layer.module.fn, len(inputs))
            return tuple(sign * x * s for sign, x in zip(signs, inputs))
        return tuple(x * g for x, g in zip(inputs, _vjp(layer, inputs, s)))


class UnsupportedRule(_OpRule):
    """Marks an operation without a rule: refused when relevance reaches it (never hooked)."""

    layer_types: tuple[type, ...] = (nn.Module,)

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        raise TracingError(f"LRP has no rule for {module}.")  # resolve_rules refuses earlier


class _Adapted(_OpRule):
    """A plain rule (NormRule, PassRule, EpsilonRule, …) given to an op module by a user."""

    def __init__(self, rule: LRPRule) -> None:
        self.rule = rule
        self._needs_z = rule._needs_z
        self._needs_inputs = rule._needs_inputs

    def slots_of(self, module: FunctionalOp) -> tuple[int, ...]:
        return module.variable_slots

    def relevance(self, layer, inputs, z, r_out):
        return self.rule.relevance(layer, inputs, z, r_out)

    def __repr__(self) -> str:
        return repr(self.rule)


def _layer_norm_fixed_scale(
    x: torch.Tensor,
    normalized_shape: Sequence[int],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    dims = tuple(range(-len(normalized_shape), 0))
    centred = x - x.mean(dims, keepdim=True)
    scale = torch.rsqrt(centred.detach().square().mean(dims, keepdim=True) + eps)
    y = centred * scale
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _rms_norm_fixed_scale(x, normalized_shape, weight, eps):
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    y = x * torch.rsqrt(x.detach().square().mean(dims, keepdim=True) + eps)
    return y if weight is None else y * weight


class LayerNormRule(LRPRule):
    """LayerNorm / RMSNorm with the normaliser as a constant scaling (CP-LRP, AttnLRP).

    ``y = w ⊙ (x − μ(x)) / σ + b`` with ``σ`` held fixed is linear in ``x``; the ε-rule on that
    linear map gives ``R_x = x ⊙ J_σᵀ (R / stab(y))`` (Ali et al. 2022, "XAI for Transformers:
    better explanations through conservative propagation"; Achtibat et al. 2024, AttnLRP
    Proposition 3.4). With ``b = 0`` it conserves relevance; for RMSNorm it is the identity.

    Parameters
    ----------
    stabilizer : float
        ε of ``stab(y)``.
    """

    layer_types: tuple[type, ...] = (nn.LayerNorm, Normalization) + (
        (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
    )

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> Any:
        if isinstance(module, Normalization):
            slots = module.relevant_slots[:1]
            bound = _BoundCall(module, inputs, slots)
            return LRPRule.forward_hook(self, bound, (inputs[slots[0]],), outputs)
        return super().forward_hook(module, inputs, outputs)

    def relevance(self, layer, inputs, z, r_out):
        (x,) = inputs
        if isinstance(layer, _BoundCall):
            module = layer.module
            args, kwargs = fx.node.map_aggregate(
                module.template,
                lambda a: layer.slots[a.index] if isinstance(a, _Slot) else a,
            )
            fixed = _NORM_FIXED[module.fn]

            def forward(v):
                return fixed(v, *args[1:], **kwargs)
        elif isinstance(layer, nn.LayerNorm):

            def forward(v):
                return _layer_norm_fixed_scale(
                    v, layer.normalized_shape, layer.weight, layer.bias, layer.eps
                )
        else:

            def forward(v):
                return _rms_norm_fixed_scale(v, layer.normalized_shape, layer.weight, layer.eps)

        s = r_out / stabilize(z, self.stabilizer)
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            (grad,) = torch.autograd.grad(forward(leaf), leaf, s)
        return (x * grad,)


_NORM_FIXED = {F.layer_norm: _layer_norm_fixed_scale}
if hasattr(F, "rms_norm"):
    _NORM_FIXED[F.rms_norm] = _rms_norm_fixed_scale


# --------------------------------------------------------------------------------------------
# Operation tables
# --------------------------------------------------------------------------------------------

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
        if "/torch/" not in m[0] and not m[0].endswith("lrp/tracing.py")
    ]
    if not matches:
        return "source line unknown"
    path, line, code = matches[-1]
    return f"{path}:{line}: {code.strip()}"


# --------------------------------------------------------------------------------------------
# The tracer (traceable multi-head attention and transformer stack)
# --------------------------------------------------------------------------------------------


class _InProjection(nn.Linear):
    """The q/k/v input projection of an ``nn.MultiheadAttention`` as a Linear (shared weight).

    ``weight`` and ``bias`` are views of the attention module's packed parameters, read on every
    call, so nothing is copied and the rules of linear layers apply unchanged.
    """

    def __init__(self, attention: nn.MultiheadAttention, index: int) -> None:
        nn.Module.__init__(self)
        self._attention = (attention,)  # a tuple, so it is not registered as a child
        self.index = index

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        att = self._attention[0]
        if att._qkv_same_embed_dim:
            return att.in_proj_weight.chunk(3)[self.index]
        return (att.q_proj_weight, att.k_proj_weight, att.v_proj_weight)[self.index]

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        att = self._attention[0]
        return None if att.in_proj_bias is None else att.in_proj_bias.chunk(3)[self.index]

    @property
    def in_features(self) -> int:  # type: ignore[override]
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:  # type: ignore[override]
        return self.weight.shape[0]


def _additive_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A boolean (True = masked) or additive attention mask as an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros_like(like).masked_fill(mask, float("-inf"))
    return mask.to(like.dtype)


fx.wrap("_additive_mask")
_SHAPE_FUNCS.add(_additive_mask)


class HookBoundary(Routing):
    """Entry or exit of a traced-through module: runs that module's forward (pre-)hooks.

    Traced-through modules are never called, so hooks users (and ``LayerLRP``) register on them
    run here, on the tensors that flow through the traced graph.
    """

    def __init__(self, module: nn.Module, exit: bool, n_inputs: int, source: str) -> None:
        super().__init__(
            None, ((), {}), range(n_inputs), op=f"{type(module).__name__} hooks", source=source
        )
        self._module = (module,)  # a tuple, so it is not registered as a child
        self.exit = exit
        self.path = ""  # the traced-through module's name in the user's model (tracer sets it)

    def forward(self, *values: Any) -> Any:
        # The user's module's hooks as they are now (the graph is cached across calls).
        module = original_module(self._module[0])
        if self.exit:
            output, args = values[0], values[1:]
            for hook_id, hook in list(module._forward_hooks.items()):
                if hook_id in module._forward_hooks_with_kwargs:
                    result = hook(module, args, {}, output)
                else:
                    result = hook(module, args, output)
                if result is not None:
                    output = result
            return output
        args = values
        for hook_id, hook in list(module._forward_pre_hooks.items()):
            if hook_id in module._forward_pre_hooks_with_kwargs:
                result = hook(module, args, {})
                result = None if result is None else result[0]
            else:
                result = hook(module, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        return args[0] if len(args) == 1 else args


class _LRPTracer(fx.Tracer):
    """fx tracer recording source lines and re-expressing fused attention with plain ops."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True
        self.extra_modules: dict[nn.Module, str] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _InProjection):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def path_of_module(self, mod: nn.Module) -> str:
        if mod in self.extra_modules:
            return self.extra_modules[mod]
        return super().path_of_module(mod)

    def call_module(self, m, forward, args, kwargs):
        if isinstance(m, nn.MultiheadAttention):
            return self._attention(m, *args, **kwargs)
        if isinstance(m, nn.TransformerEncoderLayer):
            return self._encoder_layer(m, *args, **kwargs)
        if isinstance(m, nn.TransformerEncoder):
            return self._encoder(m, *args, **kwargs)
        if m in self.extra_modules or self.is_leaf_module(m, self.path_of_module(m)):
            return super().call_module(m, forward, args, kwargs)
        # A traced-through module: its hooks run at boundary nodes (see HookBoundary).
        inputs = tuple(args)
        hookable = bool(inputs) and not kwargs and all(isinstance(a, fx.Proxy) for a in inputs)
        if hookable:
            entered = self._boundary(m, False, inputs)
            args = (entered,) if len(inputs) == 1 else tuple(entered[i] for i in range(len(args)))
        # m.forward, not the module call: the module's own hooks run at the boundaries instead.
        out = super().call_module(m, m.forward, args, kwargs)
        if hookable and isinstance(out, fx.Proxy):
            out = self._boundary(m, True, (out, *args))
        return out

    def _boundary(self, m: nn.Module, exit: bool, values: tuple) -> fx.Proxy:
        path = self.path_of_module(m).replace(".", "_") or "root"
        name = f"fx.{'exit' if exit else 'enter'}_{path}"
        taken = set(self.extra_modules.values())
        base, k = name, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        boundary = HookBoundary(m, exit, len(values), source=path)
        boundary.path = self.path_of_module(m)
        self.extra_modules[boundary] = name
        return self.create_proxy("call_module", name, values, {})

    def _projection(self, attention: nn.MultiheadAttention, index: int) -> nn.Module:
        path = super().path_of_module(attention)
        name = f"{path}.{'qkv'[index]}_proj" if path else f"{'qkv'[index]}_proj"
        for module, known in self.extra_modules.items():
            if known == name:
                return module
        module = _InProjection(attention, index)
        self.extra_modules[module] = name
        return module

    def _attention(
        self,
        m: nn.MultiheadAttention,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if m.bias_k is not None or m.add_zero_attn:
            raise TracingError(
                "LRP's traceable MultiheadAttention supports neither add_bias_kv nor add_zero_attn."
            )
        if is_causal and attn_mask is None:
            raise TracingError(
                "MultiheadAttention(is_causal=True) without attn_mask: pass the causal mask."
            )
        if not m.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        heads, head_dim = m.num_heads, m.head_dim
        q = self._projection(m, 0)(query).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        k = self._projection(m, 1)(key).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        v = self._projection(m, 2)(value).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        scores = (q * (1.0 / math.sqrt(head_dim))) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores + _additive_mask(attn_mask, scores)
        if key_padding_mask is not None:
            scores = scores + _additive_mask(key_padding_mask[:, None, None, :], scores)
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=m.dropout, training=m.training)
        out = (weights @ v).transpose(1, 2).flatten(-2)
        out = m.out_proj(out)
        if not m.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights

    def _encoder_layer(
        self,
        m: nn.TransformerEncoderLayer,
        src,
        src_mask=None,
        src_key_padding_mask=None,
        is_causal=False,
    ):
        x = src
        if m.norm_first:
            x = x + m._sa_block(m.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
            x = x + m._ff_block(m.norm2(x))
        else:
            x = m.norm1(x + m._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
            x = m.norm2(x + m._ff_block(x))
        return x

    def _encoder(
        self, m: nn.TransformerEncoder, src, mask=None, src_key_padding_mask=None, is_causal=None
    ):
        out = src
        for layer in m.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return out if m.norm is None else m.norm(out)


# --------------------------------------------------------------------------------------------
# Graph rewriting
# --------------------------------------------------------------------------------------------


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

        def to_slot(n: fx.Node, inputs=inputs, index=index) -> _Slot:
            if n not in index:
                index[n] = len(inputs)
                inputs.append(n)
            return _Slot(index[n])

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


# --------------------------------------------------------------------------------------------
# Rule resolution on a traced model
# --------------------------------------------------------------------------------------------


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
        if isinstance(rule, _OpRule) or isinstance(rule, LayerNormRule):
            slots = rule.slots_of(module) if isinstance(rule, _OpRule) else module.relevant_slots
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
            rule, (_OpRule, GradientRule, LayerNormRule)
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
