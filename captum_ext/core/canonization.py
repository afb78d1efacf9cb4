"""Canonization: reversible model rewrites shared by the propagation methods.

A canonizer changes a model for the duration of one attribution and undoes the change
afterwards, leaving every parameter, buffer, flag and module object bit-for-bit as it was
(Montavon et al., 2019, "Layer-wise relevance propagation: an overview"; Motzkus et al., 2022,
"Measurably stronger explanation reliability via model canonization"). LRP and PatternNet both
fold BatchNorm into the preceding layer; LRP and DeepLiftLinear both need residual additions as
modules (:class:`SumModule`, :class:`ResNetCanonizer`) and out-of-place activations
(:class:`NoInplaceActivations`). :mod:`captum_ext.lrp.canonizers` re-exports all of them::

    with canonized(model, [MergeBatchNorm()]) as model:
        ...  # BatchNorm layers are folded into the preceding Conv/Linear here
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from captum_ext.core.modules import BATCHNORM_TYPES, LINEAR_TYPES
from captum_ext.core.validation import closest_names

__all__ = [
    "Canonizer",
    "MergeBatchNorm",
    "NoInplaceActivations",
    "ResNetCanonizer",
    "SumModule",
    "canonized",
    "default_canonizers",
    "is_folded",
    "replace_forward",
    "restore_forwards",
]


class Canonizer(ABC):
    """A reversible model rewrite.

    Subclasses implement :meth:`apply`, which rewrites ``model`` in place and records what is
    needed to undo it, and :meth:`remove`, which restores the model bit for bit. A canonizer
    instance holds the state of one application at a time.
    """

    @abstractmethod
    def apply(self, model: nn.Module) -> None:
        """Rewrite ``model`` in place (undone by :meth:`remove`)."""

    @abstractmethod
    def remove(self) -> None:
        """Undo the last :meth:`apply`; calling it twice is harmless."""


@contextmanager
def canonized(model: nn.Module, canonizers: Sequence[Canonizer]) -> Iterator[nn.Module]:
    """Apply ``canonizers`` to ``model`` for the body of the ``with`` block, then undo them.

    Canonizers are applied in order and removed in reverse order, also when the body (or a later
    canonizer's ``apply``) raises.

    Parameters
    ----------
    model : nn.Module
        The model to rewrite in place for the duration of the block.
    canonizers : sequence of Canonizer
        For example ``[MergeBatchNorm()]``.

    Yields
    ------
    nn.Module
        ``model`` itself, rewritten.
    """
    for canonizer in canonizers:
        if not isinstance(canonizer, Canonizer):
            raise TypeError(
                f"canonizers must be Canonizer instances, got {type(canonizer).__name__}; "
                "e.g. canonized(model, [MergeBatchNorm()])."
            )
    applied: list[Canonizer] = []
    try:
        for canonizer in canonizers:
            applied.append(canonizer)
            canonizer.apply(model)
        yield model
    finally:
        for canonizer in reversed(applied):
            canonizer.remove()


def replace_forward(module: nn.Module, forward: Any, undo: list) -> None:
    # An instance attribute shadows the class's forward; remember whether the user had one.
    had = "forward" in vars(module)
    old = vars(module).get("forward")
    module.forward = forward
    undo.append((module, had, old))


def restore_forwards(undo: list) -> None:
    while undo:
        module, had, old = undo.pop()
        if had:
            module.forward = old
        else:
            del module.forward


def _identity_forward(x: torch.Tensor) -> torch.Tensor:
    return x


class MergeBatchNorm(Canonizer):
    """Fold every BatchNorm into the Conv/Linear layer that feeds it.

    With ``scale = γ / √(var + eps)`` the linear layer becomes ``W' = W·scale`` and
    ``b' = (b − μ)·scale + β`` and the BatchNorm an identity, so the rules of the linear layer
    see the function the network computes in eval mode (running statistics are used, whatever
    the module's train flag).

    Pairs are found automatically: consecutive children of an ``nn.Sequential`` and, inside
    any module, attributes named ``conv<k>``/``bn<k>`` (torchvision ResNet blocks and stem).
    Other architectures can name the pairs explicitly.

    Parameters
    ----------
    pairs : sequence of (str, str), optional
        Explicit ``(linear_layer_name, batchnorm_name)`` pairs (names from ``named_modules``),
        used in addition to the automatically found ones.

    Notes
    -----
    The original parameter objects are never modified: the linear layer gets new parameter
    tensors for the duration and the BatchNorm an identity ``forward``; :meth:`remove` puts the
    original objects back.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]] = ()) -> None:
        self.pairs = tuple(pairs)
        self._params: list[tuple[nn.Module, str, Any]] = []
        self._forwards: list = []

    @staticmethod
    def find_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
        """``(linear, batchnorm)`` pairs of ``model`` where the BatchNorm follows the linear."""
        found: list[tuple[nn.Module, nn.Module]] = []
        for module in model.modules():
            children = dict(module.named_children())
            if isinstance(module, nn.Sequential):
                items = list(children.values())
                found += [
                    (a, b)
                    for a, b in zip(items, items[1:], strict=False)
                    if isinstance(a, LINEAR_TYPES) and isinstance(b, BATCHNORM_TYPES)
                ]
            for name, child in children.items():
                if name.startswith("bn") and isinstance(child, BATCHNORM_TYPES):
                    linear = children.get("conv" + name[2:])
                    if isinstance(linear, LINEAR_TYPES):
                        found.append((linear, child))
        return found

    def apply(self, model: nn.Module) -> None:
        pairs = self._checked_pairs(model)
        try:
            for linear, bn in pairs:
                self._fold(linear, bn)
        except BaseException:
            self.remove()
            raise

    def _checked_pairs(self, model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
        # Explicit pairs must name existing Linear/Conv and BatchNorm modules and must not
        # contradict each other or the automatic pairs: refused rather than silently dropped.
        modules = dict(model.named_modules())
        names = {id(m): n for n, m in modules.items()}
        pairs = self.find_pairs(model)
        for lin_name, bn_name in self.pairs:
            for name, types in ((lin_name, LINEAR_TYPES), (bn_name, BATCHNORM_TYPES)):
                if name not in modules:
                    raise ValueError(
                        f"MergeBatchNorm: no module named {name!r} in the model; valid names: "
                        f"{closest_names(name, list(modules))}."
                    )
                if not isinstance(modules[name], types):
                    raise ValueError(
                        f"MergeBatchNorm: {name!r} is a {type(modules[name]).__name__}; pairs are "
                        f"({', '.join(t.__name__ for t in LINEAR_TYPES)}, BatchNorm) names."
                    )
            pairs.append((modules[lin_name], modules[bn_name]))
        unique: list[tuple[nn.Module, nn.Module]] = []
        by_bn: dict[int, nn.Module] = {}
        by_linear: dict[int, nn.Module] = {}
        for linear, bn in pairs:
            for table, key, other, what in (
                (by_bn, bn, linear, "BatchNorm"),
                (by_linear, linear, bn, "layer"),
            ):
                known = table.get(id(key))
                if known is not None and known is not other:
                    raise ValueError(
                        f"MergeBatchNorm: {what} {names[id(key)]!r} is paired with both "
                        f"{names[id(known)]!r} and {names[id(other)]!r} (explicit pairs: "
                        f"{list(self.pairs)}; found automatically: consecutive Sequential "
                        "children and conv<k>/bn<k> attributes). Fold each BatchNorm into the one "
                        "layer that feeds it."
                    )
            if id(bn) not in by_bn:
                unique.append((linear, bn))
            by_bn[id(bn)], by_linear[id(linear)] = linear, bn
        return unique

    def _fold(self, linear: nn.Module, bn: nn.Module) -> None:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(
                f"MergeBatchNorm: {bn} tracks no running statistics, so it cannot be folded; "
                "pass canonizers=[] and give it a rule (e.g. PassRule()) instead."
            )
        if bn.num_features != linear.weight.shape[0]:
            raise ValueError(
                f"MergeBatchNorm: {bn} has {bn.num_features} features but the preceding "
                f"{type(linear).__name__} has {linear.weight.shape[0]} outputs."
            )
        with torch.no_grad():
            weight, bias = linear.weight, linear.bias
            scale = bn.running_var.add(bn.eps).rsqrt()
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            if bias is not None:
                shift = shift + bias * scale
            new_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
        for name, value in (("weight", new_weight), ("bias", shift)):
            self._params.append((linear, name, linear._parameters.get(name)))
            linear._parameters[name] = nn.Parameter(value, requires_grad=weight.requires_grad)
        replace_forward(bn, _identity_forward, self._forwards)

    def remove(self) -> None:
        while self._params:
            module, name, original = self._params.pop()
            module._parameters[name] = original
        restore_forwards(self._forwards)


def is_folded(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm that :class:`MergeBatchNorm` currently folded away."""
    return vars(module).get("forward") is _identity_forward


class SumModule(nn.Module):
    """``a + b`` as a module, so a residual addition can be given a rule (``NormRule``)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def _basic_block_forward(block: nn.Module, add: SumModule) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        identity = x if block.downsample is None else block.downsample(x)
        return block.relu(add(out, identity))

    return forward


def _bottleneck_forward(block: nn.Module, add: SumModule) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.relu(block.bn2(block.conv2(out)))
        out = block.bn3(block.conv3(out))
        identity = x if block.downsample is None else block.downsample(x)
        return block.relu(add(out, identity))

    return forward


class ResNetCanonizer(Canonizer):
    """Give the residual additions of torchvision ``BasicBlock``/``Bottleneck`` a module.

    Each block temporarily gets a :class:`SumModule` child (``canonizer_sum``) and a ``forward``
    that routes ``out + identity`` through it, so LRP can apply ``NormRule`` to the addition
    (the plain ``+`` would split relevance by the gradient, breaking conservation; captum #546).
    Blocks of other libraries are left alone.
    """

    def __init__(self) -> None:
        self._children: list[nn.Module] = []
        self._forwards: list = []

    def apply(self, model: nn.Module) -> None:
        from torchvision.models.resnet import BasicBlock, Bottleneck

        try:
            for module in list(model.modules()):
                if type(module) not in (BasicBlock, Bottleneck):
                    continue
                add = SumModule()
                module.add_module("canonizer_sum", add)
                self._children.append(module)
                build = _basic_block_forward if type(module) is BasicBlock else _bottleneck_forward
                replace_forward(module, build(module, add), self._forwards)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        restore_forwards(self._forwards)
        while self._children:
            del self._children.pop()._modules["canonizer_sum"]


class NoInplaceActivations(Canonizer):
    """Switch ``inplace=True`` activations (torchvision's ReLUs) to out-of-place for the duration.

    An in-place activation overwrites its input, so relevance handed to that tensor would pass
    through the activation's own backward; out-of-place keeps the "activations pass relevance"
    semantics exact.
    """

    def __init__(self) -> None:
        self._changed: list[nn.Module] = []

    def apply(self, model: nn.Module) -> None:
        for module in model.modules():
            if getattr(module, "inplace", False) is True:
                module.inplace = False
                self._changed.append(module)

    def remove(self) -> None:
        while self._changed:
            self._changed.pop().inplace = True


def default_canonizers() -> list[Canonizer]:
    """The canonizers LRP and DeepLiftLinear apply when none are given."""
    return [NoInplaceActivations(), MergeBatchNorm(), ResNetCanonizer()]
