"""Snapshots of a model's state, to prove (tests) and enforce (methods) that it is left unharmed."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def _hook_count(module: nn.Module) -> int:
    return sum(len(getattr(module, name, {})) for name in _HOOK_DICTS)


@dataclass
class ModelSnapshot:
    """A deep record of everything an attribution method could change in a model.

    Compare two snapshots with ``==`` or get a readable list of differences with :meth:`diff`.
    Tensors are compared bit for bit (``torch.equal`` plus dtype and device).
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    requires_grad: dict[str, bool] = field(default_factory=dict)
    training: dict[str, bool] = field(default_factory=dict)
    hooks: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    identities: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module) -> ModelSnapshot:
        snap = cls()
        for name, param in model.named_parameters(remove_duplicate=False):
            snap.tensors["param:" + name] = param.detach().clone()
            snap.requires_grad[name] = param.requires_grad
            snap.identities["param:" + name] = id(param)
        for name, buffer in model.named_buffers(remove_duplicate=False):
            snap.tensors["buffer:" + name] = buffer.detach().clone()
        for name, module in model.named_modules(remove_duplicate=False):
            snap.training[name] = module.training
            snap.hooks[name] = _hook_count(module)
            snap.attributes[name] = tuple(sorted(k for k in vars(module) if not k.startswith("_")))
            snap.identities["module:" + name] = id(module)
        return snap

    def diff(self, other: ModelSnapshot) -> list[str]:
        """Human-readable differences between ``self`` (before) and ``other`` (after)."""
        problems: list[str] = []
        for key in sorted(set(self.tensors) | set(other.tensors)):
            a, b = self.tensors.get(key), other.tensors.get(key)
            if a is None or b is None:
                problems.append(f"{key} {'appeared' if a is None else 'disappeared'}")
            elif a.dtype != b.dtype or a.device != b.device or a.shape != b.shape:
                problems.append(f"{key} changed dtype/device/shape")
            elif not torch.equal(a, b) and not (
                a.isnan().any() and torch.equal(a.nan_to_num(), b.nan_to_num())
            ):
                problems.append(f"{key} values changed")
        for label, mine, theirs in (
            ("requires_grad", self.requires_grad, other.requires_grad),
            ("training", self.training, other.training),
            ("hook count", self.hooks, other.hooks),
            ("public attributes", self.attributes, other.attributes),
            ("object identity", self.identities, other.identities),
        ):
            for key in sorted(set(mine) | set(theirs)):
                if mine.get(key) != theirs.get(key):
                    problems.append(f"{label} of {key!r}: {mine.get(key)!r} -> {theirs.get(key)!r}")
        return problems

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelSnapshot) and not self.diff(other)


class ModelGuard:
    """Context manager that restores ``requires_grad`` flags and train/eval mode on exit.

    Methods that temporarily freeze parameters or switch modes wrap their work in it, so the
    user's model comes back as it was also when an exception is raised. Parameter *values* are
    not copied (that would double the memory of large models); code that edits values must undo
    its own edits, which the tests check with :class:`ModelSnapshot`.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self._flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self._modes = [(m, m.training) for m in self.model.modules()]
        return self.model

    def __exit__(self, *exc: object) -> None:
        for param, flag in self._flags:
            param.requires_grad_(flag)
        for module, mode in self._modes:
            module.training = mode
