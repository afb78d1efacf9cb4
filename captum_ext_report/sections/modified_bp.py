"""Section: RectGrad, PatternNet, PatternAttribution, Guided Backprop and DeepLift on digits.

Seed 001 (Sixt et al., "When Explanations Lie", ICML 2020) claims that these modified-backprop
methods, except DeepLIFT, ignore the later layers and therefore barely depend on the explained
class. This section shows the heatmaps and runs a random-logit check: the cosine similarity
between the map for the predicted class and the map for another (seeded random) class.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from captum.attr import DeepLift, GuidedBackprop, Saliency

from captum_ext.pattern import PatternAttribution, PatternNet
from captum_ext.rectgrad import RectGrad
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import heatmap_grid, line_plot, markdown_table

ORDER = 20
KEY = "modified_bp"


def _fit_data(ctx: ReportContext) -> torch.Tensor:
    # The digits workload fits on the training split; other workloads on their own images.
    if ctx.model_name.startswith("seed-001 CNN on digits"):
        from captum_ext.zoo import DigitsDataset

        return DigitsDataset("train").tensors()[0]
    return ctx.images.detach().cpu()


def _methods(ctx: ReportContext) -> tuple[dict[str, Any], dict[str, float]]:
    data = _fit_data(ctx).to(ctx.device)
    batches, batch_size = ctx.size(8, 1), ctx.size(64, 32)
    start = time.perf_counter()
    pattern_attribution = PatternAttribution(ctx.model).fit(
        data, max_batches=batches, progress=ctx.progress, batch_size=batch_size
    )
    fit_seconds = time.perf_counter() - start
    pattern_net = PatternNet(ctx.model).load_patterns(pattern_attribution.patterns_state_dict())
    methods = {
        "Gradient": lambda x, t: Saliency(ctx.model).attribute(x, target=t, abs=False),
        "RectGrad": RectGrad(ctx.model).attribute,
        "PatternNet": pattern_net.attribute,
        "PatternAttribution": pattern_attribution.attribute,
        "GuidedBackprop": GuidedBackprop(ctx.model).attribute,
        "DeepLift": lambda x, t: DeepLift(ctx.model).attribute(x, target=t),
    }
    fitted = min(len(data), batches * batch_size)
    return methods, {"fit_images": fitted, "fit_images_per_s": fitted / fit_seconds}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def run(ctx: ReportContext) -> Section:
    methods, fit = _methods(ctx)
    images = ctx.images[: ctx.size(32, 6)]
    with torch.no_grad():
        predicted = ctx.model(images).argmax(1)
    n_classes = int(ctx.model(images[:1]).shape[1])
    shift = torch.randint(1, n_classes, predicted.shape, generator=ctx.generator(20))
    other = (predicted + shift.to(predicted.device)) % n_classes
    maps, similarity, rows = {}, {}, []
    for name, explain in methods.items():
        start = time.perf_counter()
        own = explain(images, predicted).detach()
        seconds = time.perf_counter() - start
        cos = _cosine(own, explain(images, other).detach()).abs()
        maps[name] = own[: ctx.n_show]
        similarity[name] = float(cos.median())
        rows.append(
            [name, similarity[name], float(cos.quantile(0.1)), 1000 * seconds / len(images)]
        )
    figure = heatmap_grid(
        ctx.figure_path("modified_bp_heatmaps"),
        images[: ctx.n_show],
        maps,
        title="Modified backprop on digits (predicted class)",
    )
    names = list(similarity)
    plot = line_plot(
        ctx.figure_path("modified_bp_random_logit"),
        names,
        {
            "median |cos|(map for predicted class, map for random other class)": list(
                similarity.values()
            )
        },
        xlabel="method",
        ylabel="median |cosine similarity|",
        title="Random-logit check: 1 = the map ignores the explained class",
    )
    modified = [n for n in names if n not in ("Gradient", "DeepLift")]
    confirmed = all(similarity["DeepLift"] < similarity[n] for n in modified)
    finding = (
        f"Median |cos| between the maps of the predicted and a random other class over "
        f"{len(images)} digits: "
        + ", ".join(f"{n} {similarity[n]:.3f}" for n in names)
        + f". DeepLift is {'the lowest' if confirmed else 'not the lowest'} of the modified-BP "
        f"methods. Patterns fitted on {fit['fit_images']} images "
        f"({fit['fit_images_per_s']:.0f} images/s)."
    )
    return Section(
        key=KEY,
        title="RectGrad, PatternNet, PatternAttribution, Guided Backprop, DeepLift",
        claim=(
            "Seed 001: modified-BP explanations (RectGrad, PatternNet, PatternAttribution, "
            "Guided BP) become independent of later layers and hence of the explained class; "
            "DeepLIFT does not."
        ),
        finding=finding,
        confirmed=confirmed,
        figures=[ctx.relative(figure), ctx.relative(plot)],
        tables=[
            markdown_table(
                [
                    "method",
                    "median abs. cosine, own vs other class",
                    "10th percentile",
                    "ms per image",
                ],
                rows,
            )
        ],
        numbers={"median_abs_cos_random_logit": similarity, **fit},
    )
