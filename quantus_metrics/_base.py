"""What every metric of this package shares with ``quantus.Metric``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from quantus import Metric
from torch import nn

from captum_ext.core.optional import require

NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
"""Normalisation layers, which the randomisation and CSC metrics skip by default."""

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


BASE_PARAMS = (
    "abs",
    "normalise",
    "normalise_func",
    "normalise_func_kwargs",
    "return_aggregate",
    "aggregate_func",
    "a_axes",
    "_disable_warnings",
    "_display_progressbar",
)
"""The ``quantus.Metric`` attributes ``get_params`` reports for every metric, as Quantus does."""


def _recording(init: Any) -> Any:
    """Wrap a subclass ``__init__`` so the arguments it was called with are remembered.

    Each level of a metric's class hierarchy adds the parameters of its own signature (with
    their defaults); the outermost call comes first, so a value given there wins.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        own = self.__dict__.setdefault("_init_params", {})
        for name, param in signature.parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            own.setdefault(name, bound.arguments[name])
        init(self, *args, **kwargs)

    return wrapper


class QuantusDefaults(Metric):
    """``quantus.Metric`` with defaults for the base arguments of ``__init__`` and ``__call__``.

    Keyword arguments a subclass does not consume (``abs``, ``normalise``, ``return_aggregate``,
    ``display_progressbar``, …) reach ``quantus.Metric`` unchanged, which rejects unknown ones.
    ``x_batch``/``y_batch``/``a_batch`` may be tensors; their lengths are checked up front.

    Per-call set-up goes into :meth:`prepare` (this class implements Quantus'
    ``custom_preprocess`` hook around it). A metric that runs the explainer itself (on perturbed
    models or with injected relevance) sets ``explains_itself = True``: Quantus then does not
    explain every batch once more before ``evaluate_batch`` (an explanation the metric would
    discard, and one that Quantus' ``assert_attributions`` rejects when it is constant, as a
    randomised model's legitimately is). This goes through Quantus' public template only: when
    no ``a_batch`` was given, ``custom_preprocess`` hands Quantus one stand-in value per sample,
    so its ``batch_preprocess`` sees explanations and skips ``explain_batch``, and
    ``custom_batch_preprocess`` gives ``evaluate_batch`` ``a_batch=None`` again. No ``@final``
    method of ``quantus.Metric`` is overridden.

    ``get_params`` lists the metric's own constructor parameters next to the Quantus base
    options (not the results of the last call).
    """

    explains_itself = False
    _stand_in = False  # this call's a_batch is the stand-in of custom_preprocess

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__dict__["__init__"])  # type: ignore[method-assign]

    @property
    def get_params(self) -> dict[str, Any]:  # type: ignore[override]
        """The metric's parameters: Quantus' base options and this metric's own arguments."""
        base = {k: v for k, v in self.__dict__.items() if k in BASE_PARAMS}
        return {**base, **self.__dict__.get("_init_params", {})}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**BASE_DEFAULTS, **kwargs})

    def __call__(self, model: Any, x_batch: Any, y_batch: Any, **kwargs: Any) -> Any:
        x_batch, y_batch = _numpy(x_batch), _numpy(y_batch)
        if kwargs.get("a_batch") is not None:
            kwargs["a_batch"] = _numpy(kwargs["a_batch"])
        for name in ("y_batch", "a_batch"):
            other = y_batch if name == "y_batch" else kwargs.get("a_batch")
            if other is not None and len(other) != len(x_batch):
                raise ValueError(f"x_batch has {len(x_batch)} samples but {name} has {len(other)}.")
        return super().__call__(
            model=model, x_batch=x_batch, y_batch=y_batch, **{**CALL_DEFAULTS, **kwargs}
        )

    def prepare(self, **data: Any) -> dict[str, Any] | None:
        """Per-call set-up before the batches are cut (override; the default does nothing).

        Receives Quantus' data (``model``, ``x_batch``, ``y_batch``, ``a_batch``, ``s_batch``,
        ...) and may return extra entries; one named ``*_batch`` is sliced like ``x_batch``.
        """
        return None

    def custom_preprocess(self, **data: Any) -> dict[str, Any] | None:
        extra = dict(self.prepare(**data) or {})
        self._stand_in = self.explains_itself and data.get("a_batch") is None
        if self._stand_in:
            # One value per sample: the smallest array Quantus accepts as explanations
            # (attribution axes: none), so its batch_preprocess does not call explain_batch.
            extra["a_batch"] = np.zeros(len(data["x_batch"]))
        return extra or None

    def custom_batch_preprocess(self, **data_batch: Any) -> dict[str, Any] | None:
        return {"a_batch": None} if self._stand_in else None


class ResultPlot:
    """``plot()`` of a metric that draws its last call: one contract for every figure.

    ``plot(ax=None, label=None, path_to_save=None, **style)`` refuses before the metric was
    called, draws into ``ax`` (a new figure without one) through the metric's :meth:`draw`,
    adds a legend when ``label`` is given and saves to ``path_to_save``; it returns the axes.
    A metric lists it before :class:`QuantusDefaults` among its bases and implements
    :meth:`has_results` and :meth:`draw`.
    """

    _nothing_to_plot = "Nothing to plot: call the metric first."

    def has_results(self) -> bool:
        """Whether the last call left something to draw."""
        raise NotImplementedError

    def draw(self, ax: Any, label: str | None, **style: Any) -> None:
        """Draw the last call's results into ``ax``; ``style`` goes to the main artist."""
        raise NotImplementedError

    def plot(
        self,
        ax: Any = None,
        label: str | None = None,
        path_to_save: str | None = None,
        **style: Any,
    ) -> Any:
        """Draw the last call's results (see :meth:`draw`) and return the matplotlib axes.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw into this axes (several methods in one figure); a new figure otherwise.
        label : str, optional
            Legend entry of this call's artist.
        path_to_save : str or path, optional
            Save the figure there.
        **style
            Passed to the main matplotlib artist (``color``, ``linestyle``, ...).
        """
        if not self.has_results():
            raise ValueError(self._nothing_to_plot)
        ax = plot_axes(ax)
        self.draw(ax, label, **style)
        return finish_plot(ax, label, path_to_save)


def _numpy(values: Any) -> Any:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values


def metric_defaults(kwargs: dict[str, Any], aggregate: Callable) -> dict[str, Any]:
    """``quantus.Metric`` options with this package's defaults: ``aggregate`` when no
    ``aggregate_func`` is given, and Quantus' warnings off."""
    if kwargs.get("aggregate_func") is None:
        kwargs = {**kwargs, "aggregate_func": aggregate}
    return {"disable_warnings": True, **kwargs}


def mean_per_layer(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    """Aggregate a list of per-sample ``{layer: score}`` dicts into per-layer means (NaN-aware)."""
    layers = list(scores[0]) if scores else []
    return {name: float(np.nanmean([s[name] for s in scores])) for name in layers}


def plot_axes(ax: Any = None, figsize: tuple[float, float] = (6, 3.5)) -> Any:
    """The axes a metric's ``plot`` draws into: ``ax``, or a new figure's (matplotlib lazily)."""
    if ax is not None:
        return ax
    plt = require("matplotlib.pyplot", "plot()", "examples")
    return plt.subplots(figsize=figsize)[1]


def finish_plot(ax: Any, label: str | None, path_to_save: Any) -> Any:
    """Legend when a label was given, save when a path was given; return the axes."""
    if label is not None:
        ax.legend(fontsize="small")
    if path_to_save is not None:
        ax.figure.savefig(path_to_save, bbox_inches="tight")
    return ax
