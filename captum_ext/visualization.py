"""Figures from attribution batches as the methods return them (``(N, C, H, W)`` tensors).

Captum's :func:`captum.attr.visualization.visualize_image_attr` draws one ``(H, W, C)`` numpy
array; attribution methods return ``(N, C, H, W)`` tensors, often on a GPU and with gradients.
This module does the conversion (detach, move to the CPU, permute NCHW → NHWC, reduce the
channels the way the method family needs) and draws with Captum's function, so a heatmap looks
the same as in Captum's tutorials:

>>> from captum_ext.visualization import heatmap_grid
>>> fig = heatmap_grid({"LRP": lrp, "Saliency": sal}, images, path="heatmaps.png")  # doctest: +SKIP

matplotlib is imported only when a figure is drawn; install it with the ``examples`` or
``report`` extra (``pip install captum-ext[examples]``). Figures are built with
``matplotlib.figure.Figure`` (no pyplot window, works on headless machines) unless an axes is
passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from captum_ext.core.channels import CHANNEL_REDUCTIONS, channel_reduction, reduce_over_channels
from captum_ext.core.optional import require

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "REDUCTIONS",
    "display_image",
    "heatmap_grid",
    "reduce_channels",
    "save_figure",
    "to_hwc",
    "visualize_image_attr",
]

REDUCTIONS = (*CHANNEL_REDUCTIONS, "none")
"""Channel reductions: signed ``sum`` (LRP, DeepLift, PatternAttribution: relevance adds up
over channels), ``abs_sum``, ``max_abs`` (gradient maps, Simonyan et al. 2014), ``l2`` (the
norm over channels), ``none`` (keep the channels; Captum then sums them)."""


def _as_batch(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """A detached CPU float tensor of shape ``(N, C, H, W)`` from NCHW, CHW or NHW input."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}.")
    x = x.detach().cpu()
    if not x.is_floating_point():
        x = x.double()
    if x.dim() == 2:  # one (H, W) map
        x = x[None, None]
    elif x.dim() == 3:  # (C, H, W) for one sample: the methods' per-sample layout
        x = x[None]
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be image-shaped: (N, C, H, W), (C, H, W) or (H, W); got shape "
            f"{tuple(x.shape)}. Reshape tabular or sequence attributions before plotting."
        )
    return x


def reduce_channels(attributions: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Reduce ``(N, C, H, W)`` attributions to ``(N, 1, H, W)``, keeping the channel axis.

    Parameters
    ----------
    attributions : torch.Tensor
        A batch as an attribution method returns it (any device; detached here).
    reduction : {"sum", "abs_sum", "max_abs", "l2", "none"}
        See :data:`REDUCTIONS`. ``"none"`` returns the batch unchanged.

    Returns
    -------
    torch.Tensor
        ``(N, 1, H, W)`` on the CPU (``(N, C, H, W)`` for ``"none"``).
    """
    reduction = channel_reduction(reduction, REDUCTIONS, "reduction")
    a = _as_batch(attributions, "attributions")
    return a if reduction == "none" else reduce_over_channels(a, reduction, keepdim=True)


def to_hwc(batch: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` (or ``(C, H, W)``) tensor → ``(N, H, W, C)`` numpy array on the CPU."""
    return _as_batch(batch, "batch").permute(0, 2, 3, 1).numpy()


def display_image(
    images: torch.Tensor | np.ndarray,
    bounds: tuple[Any, Any] | None = None,
) -> np.ndarray:
    """Images as ``(N, H, W, C)`` values in [0, 1] for display.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` model inputs, possibly normalised.
    bounds : (low, high), optional
        The inputs' value range (scalars or per-channel, e.g. from
        :func:`captum_ext.data.channel_bounds` for ImageNet-normalised inputs): mapped to
        [0, 1]. Without it each image is min-max scaled on its own.
    """
    x = _as_batch(images, "images").double()
    if bounds is None:
        flat = x.flatten(1)
        low = flat.amin(1).view(-1, 1, 1, 1)
        high = flat.amax(1).view(-1, 1, 1, 1)
    else:
        low, high = (torch.as_tensor(b, dtype=torch.float64) for b in bounds)
        low, high = (b.view(1, -1, 1, 1) if b.dim() == 1 else b for b in (low, high))
    scaled = ((x - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)
    return scaled.permute(0, 2, 3, 1).numpy()


def visualize_image_attr(
    attribution: torch.Tensor | np.ndarray,
    image: torch.Tensor | np.ndarray | None = None,
    method: str = "heat_map",
    sign: str = "absolute_value",
    reduction: str = "sum",
    bounds: tuple[Any, Any] | None = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> tuple[Figure, Axes]:
    """Captum's ``visualize_image_attr`` for one sample in the methods' layout.

    Parameters
    ----------
    attribution : torch.Tensor
        ``(C, H, W)`` or ``(1, C, H, W)`` attribution of one sample.
    image : torch.Tensor, optional
        The matching ``(C, H, W)`` input (needed for ``blended_heat_map``, ``masked_image``,
        ``alpha_scaling``), shown through :func:`display_image` with ``bounds``.
    method, sign : str
        As in :func:`captum.attr.visualization.visualize_image_attr`.
    reduction : str
        Channel reduction before drawing (:func:`reduce_channels`).
    ax : matplotlib Axes, optional
        Draw into this axes; a new ``Figure`` otherwise (no pyplot).
    **kwargs
        Further options of Captum's function (``outlier_perc``, ``cmap``, ``alpha_overlay``,
        ``show_colorbar``, ``title``, ``fig_size``).

    Returns
    -------
    (Figure, Axes)
    """
    require("matplotlib", "captum_ext.visualization", "examples")
    from captum.attr import visualization as viz

    a = reduce_channels(attribution, reduction)
    if len(a) != 1:
        raise ValueError(
            f"visualize_image_attr draws one sample, got a batch of {len(a)}; use heatmap_grid."
        )
    original = None if image is None else display_image(image, bounds)[0]
    if ax is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=kwargs.pop("fig_size", (3, 3)))
        ax = figure.add_subplot()
    return viz.visualize_image_attr(
        to_hwc(a)[0],
        original,
        method=method,
        sign=sign,
        plt_fig_axis=(ax.figure, ax),
        use_pyplot=False,
        **kwargs,
    )


def heatmap_grid(
    attributions: torch.Tensor | Mapping[str, torch.Tensor],
    images: torch.Tensor | np.ndarray | None = None,
    method: str = "heat_map",
    sign: str = "absolute_value",
    reduction: str = "sum",
    bounds: tuple[Any, Any] | None = None,
    row_labels: Sequence[str] | None = None,
    outlier_perc: float = 2,
    cell_size: float = 1.8,
    title: str | None = None,
    path: str | Path | None = None,
    **kwargs: Any,
) -> Figure:
    """One row per sample: the input, then one column per method.

    Parameters
    ----------
    attributions : torch.Tensor or dict of str to torch.Tensor
        ``(N, C, H, W)`` batches as the methods return them, one per method name (a single
        tensor is one unnamed column). All must have the same ``N``, ``H``, ``W``.
    images : torch.Tensor, optional
        The ``(N, C, H, W)`` inputs, drawn in the first column (grey for one channel).
    method, sign, outlier_perc : str, str, float
        Passed to Captum's ``visualize_image_attr`` for every cell (``sign="all"`` for signed
        relevance such as LRP, red negative / green positive).
    reduction : str
        Channel reduction (:func:`reduce_channels`), the same for every column.
    bounds : (low, high), optional
        Value range of ``images`` for display (:func:`display_image`).
    row_labels : sequence of str, optional
        One label per row (e.g. the target classes).
    cell_size : float
        Inches per cell.
    title : str, optional
        Figure title.
    path : str or Path, optional
        Save the figure there (:func:`save_figure`).
    **kwargs
        Further options of Captum's ``visualize_image_attr`` (``cmap``, ``alpha_overlay``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    require("matplotlib", "captum_ext.visualization", "examples")
    from captum.attr import visualization as viz
    from matplotlib.figure import Figure

    columns = {"": attributions} if not isinstance(attributions, Mapping) else dict(attributions)
    if not columns:
        raise ValueError("attributions is empty: give at least one method's batch.")
    maps = {name: reduce_channels(a, reduction) for name, a in columns.items()}
    shapes = {name: (m.shape[0], *m.shape[2:]) for name, m in maps.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"attributions differ in batch or image size: {shapes}.")
    n, height, width = next(iter(shapes.values()))
    shown = None
    if images is not None:
        shown = display_image(images, bounds)
        if shown.shape[:3] != (n, height, width):
            raise ValueError(
                f"images have shape {tuple(shown.shape[:3])} (N, H, W) but the attributions "
                f"{(n, height, width)}."
            )
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {n} rows.")
    if method != "heat_map" and shown is None:
        raise ValueError(f"method={method!r} draws over the input: pass images.")
    cols = len(maps) + (shown is not None)
    figure = Figure(figsize=(cell_size * cols, cell_size * n + (0.4 if title else 0.0)))
    axes = np.asarray(figure.subplots(n, cols, squeeze=False))
    for row in range(n):
        col = 0
        if shown is not None:
            picture = shown[row]
            grey = picture.shape[-1] == 1
            axes[row, 0].imshow(picture[..., 0] if grey else picture, cmap="gray" if grey else None)
            col = 1
        for batch in maps.values():
            viz.visualize_image_attr(
                to_hwc(batch[row])[0],
                None if shown is None else shown[row],
                method=method,
                sign=sign,
                outlier_perc=outlier_perc,
                plt_fig_axis=(figure, axes[row, col]),
                use_pyplot=False,
                **kwargs,
            )
            col += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    names = (["input"] if shown is not None else []) + list(maps)
    for col, name in enumerate(names):
        axes[0, col].set_title(name, fontsize=8)
    if row_labels is not None:
        for row, label in enumerate(row_labels):
            axes[row, 0].set_ylabel(str(label), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    if path is not None:
        save_figure(figure, path)
    return figure


def save_figure(figure: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save ``figure`` (parents created), return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=dpi, bbox_inches="tight")
    return target
