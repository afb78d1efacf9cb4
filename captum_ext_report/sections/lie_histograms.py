"""Section: distributions of |cos| per layer (Sixt et al., 2020, Figure 5 e–g), not only medians.

Sixt et al. (2020) show histograms of the cosine similarity convergence (CSC) after the first
layer: for converging methods nearly all pairs of random relevance vectors end up parallel, for
the gradient and DeepLIFT they spread. This section runs :class:`quantus_metrics.CSC` with
``return_distributions=True`` and bins ``1 − |cos|`` logarithmically
(:func:`captum_ext.analysis.abs_cos_histograms`), including the DeepLIFT linear rule and the
paper's DeepLIFT ablation.
"""

from __future__ import annotations

import numpy as np
from captum.attr import Saliency

from captum_ext import DeepLiftAblation, DeepLiftLinear
from captum_ext.lrp import LRP, Alpha1Beta0
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import markdown_table
from quantus_metrics.csc import CSC
from quantus_metrics.csc_analysis import abs_cos_histograms

ORDER = 54
KEY = "cos_histograms"


def verdict(stats: dict[str, dict]) -> bool:
    """The criterion, fixed before the numbers were seen (at the first layer's output).

    LRP-α1β0: ≥ 90 % of the pairs have |cos| ≥ 0.99; gradient: ≤ 50 %; and the DeepLIFT
    ablation's median |cos| exceeds that of DeepLIFT with the linear rule (the ablation
    converges, DeepLIFT does not).
    """
    return bool(
        stats["LRP-α1β0"]["fraction_converged"] >= 0.9
        and stats["Gradient"]["fraction_converged"] <= 0.5
        and stats["DeepLiftAblation"]["median"] > stats["DeepLiftLinear"]["median"]
    )


def _figure(ctx: ReportContext, histograms: dict, layer: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histograms), figsize=(3.2 * len(histograms), 3.2),
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, (name, hist) in zip(axes[0], histograms.items(), strict=True):
        edges, counts = hist["edges"], hist["counts"]
        ax.bar(edges[:-1], counts / max(counts.sum(), 1), width=np.diff(edges), align="edge",
               color="tab:blue", alpha=0.8)  # fmt: skip
        ax.axvline(0.01, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(f"{name}\nmedian |cos| {hist['median']:.4f}", fontsize=9)
        ax.set_xlabel("1 − |cos|  (left: converged)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"share of pairs at the input of {layer}")
    return ctx.save_figure(fig, "cos_histograms", dpi=110)


def run(ctx: ReportContext) -> Section:
    images = ctx.images[: ctx.size(8, 2, large=4)].detach().cpu().numpy()
    methods = {
        "Gradient": Saliency,
        "LRP-α1β0": lambda m: LRP(m, rule_set=Alpha1Beta0()),
        "DeepLiftLinear": DeepLiftLinear,
        "DeepLiftAblation": DeepLiftAblation,
    }
    # the CSC section's distributions on the same model, when it ran these methods
    n_shared, shared = ctx.extra.get("csc_distributions", (0, {}))
    if all(name in shared for name in methods):
        images = ctx.images[:n_shared].detach().cpu().numpy()
    histograms, stats, layer = {}, {}, None
    for offset, (name, factory) in enumerate(methods.items()):
        distributions = shared.get(name)
        if distributions is None or len(images) != n_shared:
            metric = CSC(method=factory, seed=ctx.seed + offset, return_distributions=True)
            metric(model=ctx.model, x_batch=images, y_batch=None)
            distributions = metric.distributions
        layers = list(distributions)
        layer = layers[1] if len(layers) > 1 else layers[0]  # the first layer's output
        per_layer = abs_cos_histograms(distributions)
        histograms[name] = per_layer[layer]
        stats[name] = {
            "fraction_converged": float(per_layer[layer]["fraction_converged"]),
            "median": float(per_layer[layer]["median"]),
            "by_layer": {k: float(v["fraction_converged"]) for k, v in per_layer.items()},
        }
    confirmed = verdict(stats)
    rows = [[n, s["median"], s["fraction_converged"]] for n, s in stats.items()]
    finding = (
        f"At the input of {layer}: "
        + "; ".join(
            f"{n} median |cos| {s['median']:.4f}, {s['fraction_converged']:.1%} of pairs ≥ 0.99"
            for n, s in stats.items()
        )
        + f" ({len(images)} images, 5 vectors each)."
    )
    return Section(
        key=KEY,
        title="Distributions of |cos| per layer (Sixt et al., 2020, Figure 5 e–g)",
        claim=(
            "After the first layer almost all pairs of random relevance vectors are parallel for "
            "converging rules (LRP-α1β0), not for the gradient; DeepLIFT does not converge but "
            "its ablation with decoupled chains does. Verdict: LRP-α1β0 ≥ 90 % of pairs with "
            "|cos| ≥ 0.99, gradient ≤ 50 %, ablation median above DeepLIFT's."
        ),
        finding=finding,
        confirmed=confirmed,
        figures=[_figure(ctx, histograms, layer)],
        tables=[markdown_table(["method", "median |cos|", "share |cos| ≥ 0.99"], rows)],
        numbers={"first_layer": layer, "stats": stats},
    )
