"""The input a Conv/Linear subclass with its own ``forward`` really hands to its linear map.

Rules that hook a linear-type layer (DeepLIFT's linear rule, PatternNet's statistics and
backward) read the layer's input from the hook and apply the layer's map ``W·x`` with its
geometry. A subclass that overrides ``forward`` — TensorFlow-style "same" padding in the
EfficientNet ports: ``F.conv2d(self.static_padding(x), self.weight, ...)`` — applies the map
to a *transformed* input, so the hook's input is the wrong one.

:func:`input_map` recognises the common, safe case by tracing the layer alone with torch.fx:
a chain of padding and reshaping steps (padding modules, ``F.pad``, ``flatten``/``view``/
``reshape``) followed by the layer's own functional call with its own parameters and geometry,
whose result is the output. It returns that chain as a callable
(the identity for the ``torch.nn`` layers themselves) and refuses anything else by name.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from captum_ext.core.modules import LINEAR_TYPES, PADDING_TYPES

__all__ = ["PADDING_TYPES", "input_map"]


_CALLS = {
    nn.Linear: (F.linear, ()),
    nn.Conv1d: (F.conv1d, ("stride", "padding", "dilation", "groups")),
    nn.Conv2d: (F.conv2d, ("stride", "padding", "dilation", "groups")),
    nn.Conv3d: (F.conv3d, ("stride", "padding", "dilation", "groups")),
}
_MAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _base(module: nn.Module) -> type:
    return next(t for t in type(module).__mro__ if t in _CALLS)


def input_map(module: nn.Module, name: str = "") -> Callable[[torch.Tensor], torch.Tensor]:
    """``pre`` with ``module(x) == base_forward(pre(x))`` for a linear-type ``module``.

    Parameters
    ----------
    module : nn.Module
        An ``nn.Linear``/``nn.ConvNd`` (or subclass).
    name : str
        The module's name, for the error message.

    Raises
    ------
    TypeError
        When the subclass's forward is not "padding, then the layer's own linear map".
    """
    if not isinstance(module, LINEAR_TYPES):
        raise TypeError(f"{type(module).__name__} is not a Linear/Conv layer.")
    base = _base(module)
    if type(module).forward is base.forward:
        return _identity
    cached = _MAPS.get(module)
    if cached is None:
        cached = _MAPS[module] = _trace_map(module, base, name)
    return cached


def _refuse(module: nn.Module, name: str, why: str) -> TypeError:
    return TypeError(
        f"layer {name or '<root>'!r} ({type(module).__name__}) overrides the forward of "
        f"nn.{_call_base_name(module)}: {why}. Only padding followed by the layer's own "
        "linear map is understood; use torch.nn layers there (or the LRP/automatic path)."
    )


def _call_base_name(module: nn.Module) -> str:
    return _base(module).__name__


def _trace_map(module: nn.Module, base: type, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    fn, geometry = _CALLS[base]
    try:
        graph = fx.Tracer().trace(module)
    except Exception as err:  # any tracer failure means: not the recognised pattern
        raise _refuse(module, name, f"it cannot be traced ({type(err).__name__})") from err
    calls = [n for n in graph.nodes if n.op == "call_function" and n.target is fn]
    output = next(n for n in graph.nodes if n.op == "output")
    if len(calls) != 1 or output.args[0] is not calls[0]:
        raise _refuse(module, name, f"its output is not one {fn.__name__} call")
    call = calls[0]
    names = ("input", "weight", "bias", *geometry)
    values = dict(zip(names, call.args, strict=False))
    values.update(call.kwargs)
    for key, expected in (("weight", "weight"), ("bias", "bias")):
        value = values.get(key)
        if key == "bias" and value is None:
            if module.bias is not None:
                raise _refuse(module, name, "it drops its bias")
            continue
        if not (isinstance(value, fx.Node) and value.op == "get_attr" and value.target == expected):
            raise _refuse(module, name, f"its {fn.__name__} does not use self.{expected}")
    n = module.weight.dim() - 2
    for key in geometry:
        value, own = values.get(key, _DEFAULTS[key]), getattr(module, key)
        if isinstance(value, fx.Node) or _normal(value, n, key) != _normal(own, n, key):
            raise _refuse(module, name, f"its {fn.__name__} uses another {key} than the layer")
    if base is not nn.Linear and module.padding_mode != "zeros":
        raise _refuse(module, name, f"padding_mode={module.padding_mode!r}")
    # The chain from the input to the call: padding modules and F.pad only.
    node, chain = values["input"], []
    while not (isinstance(node, fx.Node) and node.op == "placeholder"):
        if not isinstance(node, fx.Node) or len(node.users) != 1:
            raise _refuse(module, name, "its input is used in several places")
        if any(n.op != "placeholder" for n in node.all_input_nodes[1:]):
            raise _refuse(module, name, "its input is transformed with computed values")
        if node.op == "call_module":
            child = module.get_submodule(node.target)
            if not isinstance(child, (*PADDING_TYPES, nn.Identity, nn.Flatten, nn.Unflatten)):
                raise _refuse(module, name, f"it applies {type(child).__name__} to its input")
            chain.append(child)
        elif node.op == "call_function" and node.target is F.pad and len(node.all_input_nodes) == 1:
            args = tuple(node.args[1:])
            kwargs = dict(node.kwargs)
            chain.append(lambda x, a=args, k=kwargs: F.pad(x, *a, **k))
        elif (node.op == "call_method" and node.target in _RESHAPES) or (
            node.op == "call_function" and node.target is torch.flatten
        ):
            method = "flatten" if node.target is torch.flatten else node.target
            args, kwargs = tuple(node.args[1:]), dict(node.kwargs)
            chain.append(lambda x, m=method, a=args, k=kwargs: getattr(x, m)(*a, **k))
        else:
            raise _refuse(module, name, f"it applies {node.target} to its input")
        node = node.args[0]
    chain.reverse()
    if not chain:
        return _identity

    def pre(x: torch.Tensor) -> torch.Tensor:
        for step in chain:
            x = step(x)
        return x

    return pre


_RESHAPES = {"flatten", "view", "reshape"}
_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}


def _normal(value: object, n: int, key: str) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, int) and key != "groups":
        return (value,) * n
    return value
