"""Per-call private views of the user's model: thread safety and train-mode protection.

Every attribution call of captum_ext (and every :func:`~captum_ext.core.modified_backward`
context) runs on a *view* of the user's model instead of the model itself. A view is a tree of
shallow module copies that

- shares the parameter and buffer storage with the model (no weights are copied), but holds them
  in its own ``_parameters``/``_buffers`` dictionaries as detached aliases, so a canonizer that
  swaps in folded parameters, code that freezes ``requires_grad`` or a backward pass that
  accumulates ``.grad`` only touches the view;
- has its own hook dictionaries (copies of the model's at the time the view is made), so the
  hooks a method installs never fire in someone else's forward pass;
- is in eval mode throughout: Dropout is off and BatchNorm uses (and never updates) its running
  statistics, so the global RNG and the model's buffers stay untouched and repeated calls give
  identical results. A model in train mode triggers a :class:`TrainModeWarning` saying so.

The user's module objects, parameters, buffers, flags and hooks are never written, so any number
of threads may explain one model while others run plain inference or further explanations.
"""

from __future__ import annotations

import functools
import inspect
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn

from captum_ext.core.modules import owning_module
from captum_ext.core.validation import check_inputs, check_targets, normalize_target

__all__ = [
    "TrainModeWarning",
    "attribute_isolated",
    "isolated",
    "isolated_call",
    "counterpart",
    "model_view",
    "original_module",
    "owning_module",
]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)

# Marks a twin attribution object (its model already is a view), so nested calls do not isolate
# a second time.
_TWIN_FLAG = "_captum_ext_isolated"

F = TypeVar("F", bound=Callable[..., Any])


class TrainModeWarning(UserWarning):
    """A model in train mode was explained in eval mode (on a private view)."""


def _alias(param: nn.Parameter | None, memo: dict[int, Any]) -> nn.Parameter | None:
    if param is None:
        return None
    if id(param) not in memo:
        # A detached alias: same storage, its own requires_grad flag (a copy of the user's, so
        # graphs behave as with the model itself), its own .grad; tied weights stay tied.
        memo[id(param)] = nn.Parameter(param.detach(), requires_grad=param.requires_grad)
    return memo[id(param)]


def _view(module: nn.Module, memo: dict[int, Any]) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    twin = object.__new__(type(module))
    state = dict(module.__dict__)
    object.__setattr__(twin, "__dict__", state)
    memo[id(module)] = twin
    state["_parameters"] = {k: _alias(p, memo) for k, p in module._parameters.items()}
    state["_buffers"] = dict(module._buffers)
    if "_non_persistent_buffers_set" in state:
        state["_non_persistent_buffers_set"] = set(state["_non_persistent_buffers_set"])
    # Hooks as the user's module has them now (a view of a cached view must not revive old ones).
    origin = module.__dict__.get("_view_of", module).__dict__
    for name in _HOOK_DICTS:
        if name in state:
            state[name] = OrderedDict(origin.get(name, state[name]))
    state["training"] = False
    # The user's module this is a view of (also for views of views): caches keyed to the
    # user's model and layers named by the user find their counterparts through it.
    state["_view_of"] = module.__dict__.get("_view_of", module)
    # An instance-level forward (or other method) bound to the original must run on the twin.
    for key, value in list(state.items()):
        if isinstance(value, types.MethodType) and value.__self__ is module:
            state[key] = types.MethodType(value.__func__, twin)
    state["_modules"] = {
        k: None if child is None else _view(child, memo) for k, child in module._modules.items()
    }
    return twin


def model_view(model: nn.Module) -> tuple[nn.Module, dict[int, Any]]:
    """A private eval-mode view of ``model`` and the map ``id(original) -> view object``.

    Parameters
    ----------
    model : nn.Module
        The user's model; it is only read.

    Returns
    -------
    (nn.Module, dict)
        The view (its submodules, parameters and buffers are views/aliases of the model's) and
        the memo mapping ``id`` of every original module and parameter to its counterpart.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            "captum_ext cannot make a private view of a TorchScript module; explain the Python "
            "module it was scripted from."
        )
    memo: dict[int, Any] = {}
    return _view(model, memo), memo


def original_module(module: nn.Module) -> nn.Module:
    """The user's module behind a view (``module`` itself if it is not a view)."""
    return module.__dict__.get("_view_of", module)


def counterpart(model: nn.Module, module: nn.Module) -> nn.Module:
    """The submodule of ``model`` (a view, possibly of a traced copy) that stands for ``module``.

    ``module`` may be the user's module or any view of it; ``model``'s own submodules are
    returned as they are.
    """
    target = original_module(module)
    for candidate in model.modules():
        if candidate is module or original_module(candidate) is target:
            return candidate
    raise ValueError(
        f"{type(module).__name__} is not part of the module LRP runs (only leaf layers are "
        "called as modules on the traced path); pick a leaf layer or pass canonizers=[...]."
    )


def _find_model(method: Any) -> nn.Module | None:
    for name in ("model", "forward_func"):
        model = owning_module(getattr(method, name, None))
        if model is not None:
            return model
    inner = getattr(method, "attribution_method", None)
    return None if inner is None else _find_model(inner)


def _translate(value: Any, memo: dict[int, Any], seen: dict[int, Any]) -> Any:
    if isinstance(value, nn.Module):
        return memo.get(id(value), value)
    if isinstance(value, types.MethodType) and isinstance(value.__self__, nn.Module):
        twin = memo.get(id(value.__self__))
        return value if twin is None else types.MethodType(value.__func__, twin)
    if isinstance(value, list) and value and all(isinstance(v, nn.Module) for v in value):
        return [memo.get(id(v), v) for v in value]
    if _is_attribution(value):
        return _twin(value, memo, seen)
    return value


def _is_attribution(value: Any) -> bool:
    from captum.attr import Attribution

    return isinstance(value, Attribution)


def _twin(method: Any, memo: dict[int, Any], seen: dict[int, Any]) -> Any:
    if id(method) in seen:
        return seen[id(method)]
    twin = object.__new__(type(method))
    seen[id(method)] = twin
    twin.__dict__.update({k: _translate(v, memo, seen) for k, v in method.__dict__.items()})
    twin.__dict__[_TWIN_FLAG] = True
    return twin


def _warn_train_mode(model: nn.Module, who: str) -> None:
    training = [name or "<root>" for name, m in model.named_modules() if m.training]
    if training:
        warnings.warn(
            f"{who}: the model is in train mode ({len(training)} module(s), e.g. "
            f"{training[0]!r}); it is explained in eval mode (Dropout off, BatchNorm running "
            "statistics) on a private view, so its buffers and the global RNG stay untouched. "
            "Call model.eval() to silence this warning.",
            TrainModeWarning,
            stacklevel=4,
        )


@contextmanager
def isolated(method: Any) -> Iterator[Any]:
    """A twin of an attribution object that works on a private view of its model.

    The twin is a shallow copy of ``method`` whose model references (``forward_func``,
    ``model``, ``layer``, nested ``attribution_method``) point into a fresh :func:`model_view`.
    Methods whose forward function is not an ``nn.Module`` (or a method of one) are returned
    unchanged: there is no module to protect.
    """
    if getattr(method, _TWIN_FLAG, False):
        yield method
        return
    model = _find_model(method)
    if model is None:
        yield method
        return
    _warn_train_mode(model, type(method).__name__)
    _, memo = model_view(model)
    twin = _twin(method, memo, {})
    initial = dict(twin.__dict__)
    yield twin
    # Results a method keeps on itself (CAFO's last_lambda1, …) are reported on the caller's
    # object; private scratch state stays with the twin.
    for key, value in twin.__dict__.items():
        if not key.startswith("_") and (key not in initial or initial[key] is not value):
            setattr(method, key, value)


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


def isolated_call(function: F) -> F:
    """Decorate an ``attribute``-like method so it runs on an isolated twin (see :func:`isolated`).

    Before the call, the arguments pass the shared checks of :mod:`captum_ext.core.validation`
    (inputs: tensors, a non-empty batch, the model's dtype; ``target``: one set of rules for
    every class, numpy targets converted). Classes that set ``_preflight_forward = True`` (the
    NoiseTunnel family, whose forward passes happen inside Captum) also get one forward pass
    without gradients that checks the output and the target range before any work.

    Also restores the ``requires_grad`` flag of every tensor passed in (inputs, baselines,
    additional forward arguments), also when the call raises: some Captum internals set it and
    undo it only on success.
    """

    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, _TWIN_FLAG, False):
            return function(self, *args, **kwargs)
        leaves = [t for t in _tensors_in((args, kwargs)) if t.is_leaf]
        flags = [t.requires_grad for t in leaves]
        try:
            with isolated(self) as twin:
                args, kwargs = _validated(twin, signature, args, kwargs)
                return function(twin, *args, **kwargs)
        finally:
            for tensor, flag in zip(leaves, flags):
                if tensor.requires_grad != flag:
                    tensor.requires_grad_(flag)

    wrapper._captum_ext_isolating = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple[dict, dict]:
    """The bound arguments and the dict where ``target``/``additional_forward_args`` live."""
    bound = signature.bind_partial(None, *args, **kwargs).arguments
    extra = next(
        (bound.get(p.name, {}) for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD),
        {},
    )
    holder = bound if "target" in signature.parameters else extra
    return bound, holder


def _validated(twin: Any, signature: inspect.Signature, args: tuple, kwargs: dict):
    name = type(twin).__name__
    bound, holder = _arguments(signature, args, kwargs)
    inputs = bound.get("inputs")
    if inputs is None:
        return args, kwargs
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    model = _find_model(twin)
    check_inputs(inputs, model, name, integer_ok=getattr(twin, "_integer_inputs_ok", False))
    batch = inputs[0].shape[0]
    target = normalize_target(holder.get("target"), batch)
    if target is not holder.get("target"):
        # numpy targets become tensors: call with the converted value, all by keyword
        holder["target"] = target
        args, kwargs = (), {}
        for p in list(signature.parameters.values())[1:]:
            if p.name in bound:
                if p.kind is p.VAR_KEYWORD:
                    kwargs.update(bound[p.name])
                else:
                    kwargs[p.name] = bound[p.name]
    if getattr(twin, "_preflight_forward", False) and model is not None:
        _preflight(twin, model, inputs, holder, target, name)
    return args, kwargs


def _preflight(twin: Any, model: nn.Module, inputs: tuple, holder: dict, target: Any, name: str):
    extra = holder.get("additional_forward_args")
    extra = () if extra is None else extra if isinstance(extra, tuple) else (extra,)
    try:
        with torch.no_grad():
            output = model(*inputs, *extra)
    except RuntimeError as err:
        if not any(word in str(err) for word in ("shape", "size", "dimension", "Expected")):
            raise
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
        raise ValueError(
            f"{name}: the model failed on inputs of shape {shapes} ({err}). Inputs must be "
            "batch-first; for a single sample add the batch axis with x.unsqueeze(0)."
        ) from err
    inner = getattr(twin, "attribution_method", twin)
    check_targets(
        target,
        output,
        batch_size=inputs[0].shape[0],
        allow_none=getattr(inner, "_target_none_ok", False),
        method=name,
    )


def attribute_isolated(method: Any, *args: Any, **kwargs: Any) -> Any:
    """``method.attribute(*args, **kwargs)`` on a private view of its model.

    captum_ext classes isolate themselves; any other Captum attribution (``Saliency``,
    Captum's ``LRP``, which leaves attributes on the layers, …) is run on an isolated twin.
    """
    if getattr(type(method).attribute, "_captum_ext_isolating", False):
        return method.attribute(*args, **kwargs)
    with isolated(method) as twin:
        return twin.attribute(*args, **kwargs)
