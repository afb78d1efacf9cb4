"""Figure helpers shared by the report sections (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from captum_ext.core.channels import reduce_over_channels

METHOD_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#f0c000", "#00a0a0",
)  # fmt: skip
"""Thirteen distinguishable line colours (matplotlib's tab10, then black, gold, teal)."""


def pyplot():
    """matplotlib's ``pyplot`` on the file-only Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_map(attribution: torch.Tensor, reduce: str = "sum") -> np.ndarray:
    """Reduce ``(C, H, W)`` relevance to a 2-D map with a channel reduction of
    :mod:`captum_ext.core.channels` (``"sum"``, signed, by default)."""
    a = attribution.detach().double().cpu()
    if a.dim() == 3:
        a = reduce_over_channels(a, reduce, dim=0)
    return a.numpy()


def image_for_display(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` image rescaled to [0, 1] for ``imshow``."""
    x = image.detach().double().cpu()
    x = (x - x.min()) / (x.max() - x.min() + 1e-12)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def heatmap_grid(
    path: Path,
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    title: str | None = None,
    signed: bool = True,
) -> Path:
    """Save a grid: one row per image, first column the image, then one column per method.

    Signed maps use a diverging colour map (``bwr``) centred at zero, each normalised by its
    own 99.5th percentile of absolute values; unsigned maps use ``magma``.
    """
    plt = pyplot()
    names = list(maps)
    rows, cols = len(images), len(names) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False)
    shown = None
    for r in range(rows):
        axes[r, 0].imshow(image_for_display(images[r]), cmap="gray")
        for c, name in enumerate(names, start=1):
            m = to_map(maps[name][r])
            scale = np.percentile(np.abs(m), 99.5) + 1e-12
            if signed:
                shown = axes[r, c].imshow(m / scale, cmap="bwr", vmin=-1, vmax=1)
            else:
                shown = axes[r, c].imshow(np.abs(m) / scale, cmap="magma", vmin=0, vmax=1)
    for c, name in enumerate(["input", *names]):
        axes[0, c].set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if shown is not None:
        label = "relevance / its 99.5th pct (red +, blue −)" if signed else "|relevance| (scaled)"
        bar = fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01)
        bar.set_label(label, fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def line_plot(
    path: Path,
    x: Sequence[float] | Sequence[str],
    curves: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    logy: bool = False,
) -> Path:
    """Save one line per curve with optional shaded confidence bands."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    positions = np.arange(len(x)) if isinstance(x[0], str) else np.asarray(x, dtype=float)
    for name, values in curves.items():
        # a fitted law ("C·√…", "fit") is drawn dashed, measurements solid with markers
        fitted = "C·√" in name or name.endswith("fit")
        style = {"linestyle": "--"} if fitted else {"marker": "o", "markersize": 3}
        if isinstance(x[0], str):  # categories have no order between them: no joining line
            style = {"marker": "o", "markersize": 5, "linestyle": "none"}
        ax.plot(positions, values, label=name, **style)
        if bands and name in bands:
            low, high = bands[name]
            ax.fill_between(positions, low, high, alpha=0.2)
    if isinstance(x[0], str):
        ax.set_xticks(positions)
        ax.set_xticklabels(x, rotation=45, ha="right", fontsize=7)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    # outside the axes, so that the legend never covers a curve
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown pipe table; floats get 4 significant digits, ``|`` in cells is escaped."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        # a literal bar (|x|, ‖·‖ written with bars) would split the cell: escape it
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
