"""Section: CSC on a residual network, with and without its skip connections.

Sixt et al. (2020, eq. 3): the gradient of a residual block ``h + g(h)`` is ``I + G``;
the identity keeps a full-rank path through every block. Their ResNet-50 results show the
modified rules still converge there (LRP-CMP does not resolve it). This section builds a small
residual CNN (:class:`captum_ext.analysis.TinyResNet`, seeded random initialisation), and runs
CSC for the gradient, LRP-α1β0 and DeepLIFT with the same weights with the skips on and off
(:func:`captum_ext.analysis.csc_with_and_without_skips`).
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import Saliency

from captum_ext import DeepLiftLinear
from captum_ext.lrp import LRP, Alpha1Beta0
from captum_ext.zoo import TinyResNet
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import markdown_table
from quantus_metrics.csc_analysis import csc_with_and_without_skips

ORDER = 56
KEY = "residual_csc"


def verdict(results: dict, layer: str) -> bool:
    """The criterion, fixed before the numbers were seen.

    Skip connections slow the collapse (eq. 3): at the input of the first block, the median
    |cos| with skips is below the one without skips for both the gradient and LRP-α1β0.
    """
    return bool(
        all(results[m][True][layer] < results[m][False][layer] for m in ("Gradient", "LRP-α1β0"))
    )


def _figure(ctx: ReportContext, results: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (name, by_skip) in zip(axes[0], results.items(), strict=True):
        for skip, style in ((True, "-"), (False, "--")):
            layers = [k for k in by_skip[skip] if k != "input"]
            gaps = [max(1 - by_skip[skip][k], 1e-16) for k in layers]
            ax.plot(layers, gaps, style, marker="o", markersize=3,
                    label="with skips" if skip else "skips removed")  # fmt: skip
        ax.set_yscale("log")
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("1 − median |cos|")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return ctx.save_figure(fig, "residual_csc", dpi=110)


def run(ctx: ReportContext) -> Section:
    images = ctx.images[: ctx.size(4, 2)]
    if ctx.large_inputs:  # a random-init network: the skips matter, not the resolution
        images = torch.nn.functional.interpolate(images, size=(32, 32), mode="area")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        model = TinyResNet(in_channels=images.shape[1], channels=16, blocks=ctx.size(6, 3))
    model = model.to(device=images.device, dtype=images.dtype).eval()
    methods = {
        "Gradient": Saliency,
        "LRP-α1β0": lambda m: LRP(m, rule_set=Alpha1Beta0()),
        "DeepLiftLinear": DeepLiftLinear,
    }
    results = csc_with_and_without_skips(model, images, methods, seed=ctx.seed)
    layer = "blocks.0.conv1"
    deepest = f"blocks.{len(model.blocks) - 1}.conv1"
    confirmed = verdict(results, layer)
    rows = [
        [name, by_skip[True][layer], by_skip[False][layer], by_skip[True][deepest],
         by_skip[False][deepest]]
        for name, by_skip in results.items()
    ]  # fmt: skip
    finding = (
        f"Median |cos| at the input of the first block (random-init TinyResNet, "
        f"{len(model.blocks)} blocks, {len(images)} images at "
        f"{images.shape[-2]}×{images.shape[-1]}): "
        + "; ".join(
            f"{n} {r[1]:.4f} with skips vs {r[2]:.4f} without" for n, r in zip(results, rows)
        )
        + ". Random initialisation, not a trained ResNet-50: the comparison isolates the skips."
    )
    table = markdown_table(
        ["method", f"{layer} with skips", f"{layer} without", f"{deepest} with skips",
         f"{deepest} without"],
        rows,
    )  # fmt: skip
    return Section(
        key=KEY,
        title="CSC on a residual network: what skip connections change (Sixt et al., 2020, eq. 3)",
        claim=(
            "The identity path of residual blocks (∂h_{l+1}/∂h_l = I + G) slows the collapse of "
            "the back-propagated relevance. Verdict: with skips, the median |cos| at the input "
            "of the first block is lower than without, for the gradient and for LRP-α1β0."
        ),
        finding=finding,
        confirmed=confirmed,
        figures=[_figure(ctx, results)],
        tables=[table],
        numbers={
            "median_abs_cos": {
                n: {str(k): v for k, v in by_skip.items()} for n, by_skip in results.items()
            },
            "nan_layers": [n for n, b in results.items() if any(np.isnan(list(b[True].values())))],
        },
    )
