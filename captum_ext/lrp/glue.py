"""Tensor operations between the modules of a forward pass ("glue"): handled or refused by name.

LRP gives every module a rule; whatever a container's ``forward`` computes *outside* modules
(``F.relu``, pooling, ``x * scale``, ``a + b`` in DenseNet, MobileNet, ViT code) is
back-propagated with its plain gradient, which does not conserve relevance. Such a model
silently explains the wrong quantity (e.g. Σ R = 0.349 for f_c = 0.209 on densenet121 with zero
biases). During an LRP forward pass a :class:`GlueGuard` watches every torch call made outside
the modules that carry a rule:

- *routing* operations (reshape, view, flatten, permute, indexing, cat/stack/split, copies,
  dtype/device moves, eval-mode dropout) move relevance without changing it: allowed;
- multiplication or division by a constant (a tensor that does not require grad or a number,
  e.g. a scale passed in ``additional_forward_args``): relevance passes unchanged, as the
  ε-rule of a bias-free diagonal map gives (the plain gradient would multiply it by the
  constant a second time);
- element-wise activations (``F.relu``, ``torch.sigmoid``, …): relevance passes unchanged, the
  :class:`~captum_ext.lrp.PassRule` the rule sets give activation modules;
- anything else is refused with a ``TypeError`` that names the operation, where it ran and
  the fix (a module with a rule, or a canonizer) as soon as relevance reaches it in the backward
  pass (an auxiliary output that is not explained does not matter).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["GlueGuard"]

_ROUTING = frozenset(
    {
        "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute",
        "transpose", "t", "movedim", "moveaxis", "swapaxes", "squeeze", "unsqueeze",
        "contiguous", "clone", "detach", "to", "float", "double", "half", "bfloat16", "type",
        "type_as", "cpu", "cuda", "__getitem__", "select", "narrow", "index_select", "cat",
        "concat", "concatenate", "stack", "hstack", "vstack", "split", "chunk", "unbind",
        "tensor_split", "expand", "expand_as", "repeat", "dropout", "feature_alpha_dropout",
        "alpha_dropout", "dropout1d", "dropout2d", "dropout3d", "identity", "requires_grad_",
        "__format__", "__repr__", "__len__", "__iter__", "__get__", "size", "dim", "numel",
        "__set__", "data_ptr", "is_floating_point", "is_contiguous", "element_size",
        "untyped_storage", "_version", "__reduce_ex__", "__deepcopy__", "__hash__", "__eq__",
        "flip", "fliplr", "flipud", "roll", "rot90",
    }
)  # fmt: skip
_SCALE = frozenset({"mul", "__mul__", "__rmul__", "multiply", "div", "__truediv__", "true_divide"})
_NEG = frozenset({"neg", "__neg__", "negative"})
# Element-wise activations: the rule sets give activation modules PassRule (relevance passes
# unchanged), so the functional forms get the same.
_ACTIVATIONS = frozenset(
    {
        "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
        "gelu", "silu", "mish", "tanh", "sigmoid", "softplus", "hardtanh", "hardtanh_",
        "hardswish", "hardsigmoid",
    }
)  # fmt: skip


class _SameRelevance(torch.autograd.Function):
    """Forward: ``out`` (computed from ``z``). Backward: the relevance of ``out`` goes to ``z``."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        ctx.shape = z.shape
        return out.clone()

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
        # Broadcasting spread z over several outputs: their relevance sums back into z.
        extra = relevance.dim() - len(ctx.shape)
        summed = relevance.sum(dim=tuple(range(extra))) if extra > 0 else relevance
        dims = tuple(i for i, n in enumerate(ctx.shape) if n == 1 and summed.shape[i] != 1)
        if dims:
            summed = summed.sum(dim=dims, keepdim=True)
        return summed, None


class _Refuse(torch.autograd.Function):
    """Identity in the forward; raises ``TypeError`` if non-zero relevance arrives."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, message: str) -> torch.Tensor:
        ctx.message = message
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
        if relevance is not None and bool(relevance.ne(0).any()):
            raise TypeError(ctx.message)
        return relevance, None


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


class GlueGuard(TorchFunctionMode):
    """Watch the torch calls made outside rule-carrying modules during one forward pass.

    Parameters
    ----------
    modules : dict of str to nn.Module
        The modules that carry a rule (including those whose rule is the gradient); calls made
        while one of them runs are theirs.
    method : str
        Name used in error messages.
    """

    def __init__(self, modules: dict[str, nn.Module], method: str = "LRP") -> None:
        super().__init__()
        self.depth = 0
        self.method = method
        self.last = "<model input>"
        self.handles: list[Any] = []
        for name, module in modules.items():
            self.handles.append(module.register_forward_pre_hook(self._enter, prepend=True))
            self.handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, module: nn.Module, args: Any) -> None:
        self.depth += 1

    def _leave(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.depth -= 1
            self.last = f"module {name!r}" if name else "the root module"

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.depth > 0:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in _ROUTING:
            return func(*args, **kwargs)
        tracked = [t for t in _tensors((args, kwargs)) if t.requires_grad]
        if not tracked or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor):
            return out
        first = args[0] if args else None
        if len(tracked) == 1 and (
            name in _NEG
            or name in _ACTIVATIONS
            # a constant may multiply from either side but only divide
            or (name in _SCALE and (tracked[0] is first or "div" not in name))
        ):
            return _SameRelevance.apply(tracked[0], out)
        message = (
            f"{self.method}: the model's forward applies `{name}` to the relevance path outside "
            f"any module (after {self.last}); no LRP rule covers a functional operation, so the "
            "relevance would be silently wrong. Use a module with a rule instead (nn.ReLU(), "
            "nn.AdaptiveAvgPool2d(...), captum_ext.lrp.SumModule for additions), or a canonizer "
            "that rewrites this forward."
        )
        # Refused when relevance actually reaches it: an auxiliary output nobody explains is fine.
        return _Refuse.apply(out, message)


def guarded_forward(model: nn.Module, modules: dict[str, nn.Module], method: str) -> Any:
    """``model``'s forward run under a fresh :class:`GlueGuard` (installed on a private view)."""
    forward = model.forward

    def run(*args: Any, **kwargs: Any) -> Any:
        guard = GlueGuard(modules, method)
        try:
            with guard:
                return forward(*args, **kwargs)
        finally:
            guard.remove()

    return run
