"""Readable ``repr`` for configurable objects: ``EpsilonGammaBox(low=0.0, high=1.0, gamma=0.25)``.

A class that derives from :class:`ReprFromInit` remembers the arguments its constructor was
called with (defaults filled in) and prints them, so rule sets and attribution objects show
their configuration in notebooks, logs and error messages instead of ``<… object at 0x…>``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

__all__ = ["ReprFromInit", "short_repr"]

_EMPTY = ((), [], {}, None)


def short_repr(value: Any) -> str:
    """A one-line description: modules by class name, long tensors by shape, others by repr."""
    import torch

    if isinstance(value, nn.Module):
        return type(value).__name__
    if isinstance(value, torch.Tensor):
        if value.numel() <= 4:
            return repr([round(v, 4) for v in value.detach().flatten().tolist()])
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, tuple):
        inner = ", ".join(short_repr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(short_repr(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if inspect.isclass(value):
        return value.__name__
    if inspect.isfunction(value):
        return getattr(value, "__qualname__", repr(value))
    text = repr(value)
    if " object at 0x" in text:  # e.g. a Captum attribution: name it and its model
        model = getattr(value, "forward_func", None) or getattr(value, "model", None)
        inner = type(model).__name__ if isinstance(model, nn.Module) else ""
        return f"{type(value).__name__}({inner})"
    return text


def _recording(init: Any) -> Any:
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if "_init_arguments" not in self.__dict__:  # the outermost constructor describes it
            try:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                arguments = {
                    name: value
                    for name, value in bound.arguments.items()
                    if name != "self"
                    and signature.parameters[name].kind
                    not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
                }
                extra = bound.arguments.get(
                    next(
                        (
                            n
                            for n, p in signature.parameters.items()
                            if p.kind is inspect.Parameter.VAR_KEYWORD
                        ),
                        "",
                    ),
                    {},
                )
                self.__dict__["_init_arguments"] = {**arguments, **extra}
            except TypeError:  # let the constructor itself report the bad call
                pass
        init(self, *args, **kwargs)

    return wrapper


class ReprFromInit:
    """Mixin: ``repr`` lists the constructor arguments (empty maps and ``None`` left out)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__dict__["__init__"])  # type: ignore[misc]

    def __repr__(self) -> str:
        arguments = self.__dict__.get("_init_arguments", {})
        shown = []
        for name, value in arguments.items():
            if isinstance(value, (tuple, list, dict)) and len(value) == 0 or value is None:
                continue
            shown.append(f"{name}={short_repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"
