"""What every metric of this package shares with ``quantus.Metric``."""

from __future__ import annotations

from typing import Any

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
