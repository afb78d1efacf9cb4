"""Canonizers: reversible model rewrites that make LRP rules applicable and conservative.

A canonizer changes a model for the duration of one attribution and undoes the change
afterwards, leaving every parameter, buffer, flag and module object bit-for-bit as it was
(Montavon et al. 2019, "Layer-wise relevance propagation: an overview"; Motzkus et al. 2022,
"Measurably stronger explanation reliability via model canonization"). Use them through
:func:`canonized`, which removes them also when the body raises::

    with canonized(model, [MergeBatchNorm()]) as model:
        ...  # BatchNorm layers are folded into the preceding Conv/Linear here

The base class, :func:`canonized` and :class:`MergeBatchNorm` are shared with PatternNet and live
in :mod:`captum_ext.core.canonization`; they are re-exported here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from captum_ext.core.canonization import (
    Canonizer,
    MergeBatchNorm,
    canonized,
    replace_forward,
    restore_forwards,
)

__all__ = [
    "Canonizer",
    "MergeBatchNorm",
    "NoInplaceActivations",
    "ResNetCanonizer",
    "SumModule",
    "canonized",
    "default_canonizers",
]


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
    """The canonizers :class:`~captum_ext.lrp.LRP` applies when none are given."""
    return [NoInplaceActivations(), MergeBatchNorm(), ResNetCanonizer()]

