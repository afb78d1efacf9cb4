"""Independent references shared by several test modules (importable, not collected)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def zennit_relevance(
    model: nn.Module, composite: object, x: torch.Tensor, target: torch.Tensor | int
) -> torch.Tensor:
    """Input relevance of ``target`` from zennit's own ``Gradient`` attributor and ``composite``.

    zennit registers its hooks on the module it is given, so it runs on a deep copy and the
    caller's model stays as it was.
    """
    from zennit.attribution import Gradient

    model = copy.deepcopy(model)
    with Gradient(model, composite) as attributor:
        out = model(x)
        onehot = torch.zeros_like(out)
        onehot[torch.arange(len(x)), target] = 1.0
        _, relevance = attributor(x, lambda o: o * onehot)
    return relevance
