"""Independent references shared by several test modules (importable, not collected)."""

from __future__ import annotations

import copy
import importlib
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

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


def lxt_patches() -> types.ModuleType:
    """``lxt.efficient.patches`` without its package ``__init__``, which imports lxt's
    HuggingFace model maps (transformers, not installed); the patch module needs only torch."""
    import lxt

    name = "lxt.efficient"
    saved = sys.modules.get(name)
    package = types.ModuleType(name)
    package.__path__ = [os.path.join(os.path.dirname(lxt.__file__), "efficient")]
    sys.modules[name] = package
    try:
        return importlib.import_module("lxt.efficient.patches")
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved


@contextmanager
def lxt_cp_lrp() -> Iterator[None]:
    """lxt's CP-LRP patches of GELU, LayerNorm and MultiheadAttention, undone afterwards."""
    patches = lxt_patches()
    classes = (nn.GELU, nn.LayerNorm, nn.MultiheadAttention)
    saved = {cls: dict(vars(cls)) for cls in classes}
    try:
        patches.patch_method(patches.non_linear_forward, nn.GELU, keep_original=True)
        patches.patch_method(patches.layer_norm_forward, nn.LayerNorm)
        patches.patch_method(
            patches.cp_multi_head_attention_forward, nn.MultiheadAttention, keep_original=True
        )
        yield
    finally:
        for cls, attrs in saved.items():
            cls.forward = attrs["forward"]
            if "original_forward" in vars(cls) and "original_forward" not in attrs:
                delattr(cls, "original_forward")
