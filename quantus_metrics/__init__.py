"""quantus-metrics: evaluation metrics from recent papers as native ``quantus.Metric`` classes.

Every metric works inside ``quantus.evaluate``; modules are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "CSC": "quantus_metrics.csc",
    "ModelRandomisationSSIM": "quantus_metrics.randomisation",
    "RandomLogitSSIM": "quantus_metrics.randomisation",
    "ConvergenceConstants": "quantus_metrics.convergence",
    "InherentNoise": "quantus_metrics.inherent_noise",
    "SpectralComplexity": "quantus_metrics.spectral",
    "ExpectedFrequency": "quantus_metrics.spectral",
    "ExplanationGap": "quantus_metrics.explanation_gap",
    "InputShiftInvariance": "quantus_metrics.input_invariance",
    "Consistency": "quantus_metrics.consistency",
    "SoftmaxInformationCurve": "quantus_metrics.information_level",
    "AccuracyInformationCurve": "quantus_metrics.information_level",
    "performance_information_curve": "quantus_metrics.information_level",
    "ssim_batch": "quantus_metrics.ssim",
    "explain_func_from": "quantus_metrics.explain",
    "evaluate_dataset": "quantus_metrics.dataset",
    "cosine_similarity_convergence": "quantus_metrics.csc",
    "random_baseline": "quantus_metrics.csc",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'quantus_metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
