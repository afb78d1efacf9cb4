"""captum-ext: recent attribution research as native Captum attributions.

Every public class is importable from the top level (``from captum_ext import AdaptGrad``);
modules are imported lazily so ``import captum_ext`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # attribution methods (one module each)
    "LRP": "captum_ext.lrp",
    "LayerLRP": "captum_ext.lrp",
    "RectGrad": "captum_ext.rectgrad",
    "PatternNet": "captum_ext.pattern",
    "PatternAttribution": "captum_ext.pattern",
    "AdaptGrad": "captum_ext.noise",
    "SeededNoiseTunnel": "captum_ext.noise",
    "NoiseGrad": "captum_ext.noise",
    "FusionGrad": "captum_ext.noise",
    "DeepLiftLinear": "captum_ext.deeplift_linear",
    "DeepLiftAblation": "captum_ext.deeplift_linear",
    "ContrastiveLRP": "captum_ext.contrastive",
    "ContrastiveExcitationBackprop": "captum_ext.contrastive",
    "ContrastiveExcitationBackpropRules": "captum_ext.contrastive",
    "CAFO": "captum_ext.context_aware",
    "CASO": "captum_ext.context_aware",
    # shared machinery
    "modified_backward": "captum_ext.core.modified_backward",
    "register_modified_backward": "captum_ext.core.modified_backward",
    "ModelGuard": "captum_ext.core.guard",
    "ModelSnapshot": "captum_ext.core.guard",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'captum_ext' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
