"""What every metric of this package shares with ``quantus.Metric``."""

from __future__ import annotations

from typing import Any

import numpy as np
from quantus import Metric

BASE_DEFAULTS: dict[str, Any] = {
    "abs": False,
    "normalise": False,
    "normalise_func": None,
    "normalise_func_kwargs": None,
    "return_aggregate": False,
    "aggregate_func": None,
    "default_plot_func": None,
    "disable_warnings": False,
    "display_progressbar": False,
}
"""Defaults for ``quantus.Metric.__init__``'s required arguments, as Quantus' metrics set them."""

CALL_DEFAULTS: dict[str, Any] = {
    "a_batch": None,
    "s_batch": None,
    "channel_first": None,
    "explain_func": None,
    "explain_func_kwargs": None,
    "model_predict_kwargs": None,
    "softmax": False,
}
"""Defaults for the ``quantus.Metric.__call__`` arguments that ``quantus.evaluate`` leaves out
(the base class requires them), so metrics work both directly and inside ``quantus.evaluate``."""


class QuantusDefaults(Metric):
    """``quantus.Metric`` with defaults for the base arguments of ``__init__`` and ``__call__``.

    Keyword arguments a subclass does not consume (``abs``, ``normalise``, ``return_aggregate``,
    ``display_progressbar``, …) reach ``quantus.Metric`` unchanged, which rejects unknown ones.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**BASE_DEFAULTS, **kwargs})

    def __call__(self, model: Any, x_batch: np.ndarray, y_batch: np.ndarray, **kwargs: Any) -> Any:
        return super().__call__(
            model=model, x_batch=x_batch, y_batch=y_batch, **{**CALL_DEFAULTS, **kwargs}
        )
