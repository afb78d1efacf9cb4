"""Canonizers: reversible model rewrites that make LRP rules applicable and conservative.

A canonizer changes a model for the duration of one attribution and undoes the change
afterwards, leaving every parameter, buffer, flag and module object bit-for-bit as it was
(Montavon et al. 2019, "Layer-wise relevance propagation: an overview"; Motzkus et al. 2022,
"Measurably stronger explanation reliability via model canonization"). Use them through
:func:`canonized`, which removes them also when the body raises::

    with canonized(model, [MergeBatchNorm()]) as model:
        ...  # BatchNorm layers are folded into the preceding Conv/Linear here

All of them are shared with other methods (PatternNet folds BatchNorm, DeepLiftLinear needs the
residual additions as modules) and live in :mod:`captum_ext.core.canonization`; this module
keeps the LRP family's import path.
"""

from __future__ import annotations

from captum_ext.core.canonization import (
    Canonizer,
    MergeBatchNorm,
    NoInplaceActivations,
    ResNetCanonizer,
    SumModule,
    canonized,
    default_canonizers,
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
