"""Section: RectGrad, PatternNet, PatternAttribution, Guided Backprop and DeepLift.

Sixt, Granz and Landgraf ("When Explanations Lie", ICML 2020) claims that these modified-backprop
methods, except DeepLIFT, ignore the later layers and therefore barely depend on the explained
class. This section shows the heatmaps and runs a random-logit check: the cosine similarity
between the map for the predicted class and the map for another (seeded random) class.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from captum.attr import DeepLift, GuidedBackprop, Saliency

from captum_ext.core.gradients import refuse_unhooked_gates
from captum_ext.pattern import PatternAttribution, PatternNet
from captum_ext.rectgrad import RectGrad
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import heatmap_grid, markdown_table
from captum_ext_report.verdicts import Claim, Criterion

ORDER = 20
KEY = "modified_bp"


def _methods(ctx: ReportContext) -> tuple[dict[str, Any], dict[str, float]]:
    data = ctx.pattern_data
    batches, batch_size = ctx.pattern_fit["max_batches"], ctx.pattern_fit["batch_size"]
    start = time.perf_counter()
    methods: dict[str, Any] = {
        "Gradient": lambda x, t: Saliency(ctx.model).attribute(x, target=t, abs=False),
        "RectGrad": lambda x, t: RectGrad(ctx.model).attribute(x, t),
    }
    fitted, fit_error = min(len(data), batches * batch_size), None
    try:
        pattern_attribution = PatternAttribution(ctx.model).fit(
            data, max_batches=batches, progress=ctx.progress, batch_size=batch_size
        )
        state = pattern_attribution.patterns_state_dict()
        pattern_net = PatternNet(ctx.model).load_patterns(state)
        methods["PatternNet"] = pattern_net.attribute
        methods["PatternAttribution"] = pattern_attribution.attribute
    except (TypeError, ValueError, RuntimeError, NotImplementedError, ArithmeticError) as err:
        fit_error = f"{type(err).__name__}: {str(err)[:160]}"
        fitted = 0
    fit_seconds = time.perf_counter() - start
    methods["GuidedBackprop"] = _guided_backprop(ctx.model)
    methods["DeepLift"] = lambda x, t: DeepLift(ctx.model).attribute(x, target=t)
    return methods, {
        "fit_images": fitted,
        "fit_images_per_s": fitted / max(fit_seconds, 1e-9),
        "pattern_fit_error": fit_error,
    }


def _guided_backprop(model: torch.nn.Module):
    def explain(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # Captum's hooks modify nn.ReLU only: refused on other gates instead of a plain gradient
        refuse_unhooked_gates(model, "GuidedBackprop")
        return GuidedBackprop(model).attribute(x, target=t)

    return explain


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


CLAIM = (
    'Sixt, Granz and Landgraf (2020, "When Explanations Lie"): modified-BP explanations '
    "(RectGrad, PatternNet, PatternAttribution, Guided BP) become independent of the later "
    "layers and hence of the explained class; DeepLIFT does not. Criteria: each of them is "
    "more class-insensitive (higher |cos| between the maps of two classes) than DeepLift, and "
    "DeepLift lies below the median of those methods (core)."
)
MODIFIED = ("RectGrad", "PatternNet", "PatternAttribution", "GuidedBackprop")


def _bars(ctx: ReportContext, names: list[str], values: list[float]):
    # methods are categories: bars, not a line joining them
    from captum_ext_report.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(range(len(names)), values, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("median |cos|, own vs other class")
    ax.set_title("Random-logit check: 1 = the map ignores the explained class", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return ctx.save_figure(fig, "modified_bp_random_logit")


def run(ctx: ReportContext) -> Section:
    methods, fit = _methods(ctx)
    images = ctx.images[: ctx.size(32, 6, large=8)]
    with torch.no_grad():
        predicted = ctx.model(images).argmax(1)
    n_classes = int(ctx.model(images[:1]).shape[1])
    shift = torch.randint(1, n_classes, predicted.shape, generator=ctx.generator(20))
    other = (predicted + shift.to(predicted.device)) % n_classes
    maps, similarity, rows, skipped = {}, {}, [], []
    if fit["pattern_fit_error"]:
        skipped.append(f"PatternNet, PatternAttribution: fit failed: {fit['pattern_fit_error']}")
    for name, explain in methods.items():
        start = time.perf_counter()
        try:
            own = explain(images, predicted).detach()
            seconds = time.perf_counter() - start
            cos = _cosine(own, explain(images, other).detach()).abs()
        except (TypeError, ValueError, RuntimeError, NotImplementedError, ArithmeticError) as err:
            # a method this model does not support: reported, the others still run
            skipped.append(f"{name}: {type(err).__name__}: {str(err)[:160]}")
            continue
        maps[name] = own[: ctx.n_show]
        similarity[name] = float(cos.median())
        rows.append(
            [name, similarity[name], float(cos.quantile(0.1)), 1000 * seconds / len(images)]
        )
    figure = heatmap_grid(
        ctx.figure_path("modified_bp_heatmaps"),
        images[: ctx.n_show],
        maps,
        title="Modified backprop (predicted class)",
    )
    names = list(similarity)
    plot = _bars(ctx, names, [similarity[n] for n in names])
    claim = Claim(CLAIM)
    deeplift = similarity.get("DeepLift")
    for name in MODIFIED:
        claim.add(
            Criterion(
                name, "median |cos| own vs other class minus DeepLift's", ">", 0.0,
                value=None if name not in similarity or deeplift is None
                else similarity[name] - deeplift,
                skipped=None if name in similarity and deeplift is not None
                else "method or DeepLift did not run on this model",
            )
        )  # fmt: skip
    others = [similarity[n] for n in MODIFIED if n in similarity]
    claim.add(
        Criterion(
            "DeepLift", "median |cos| minus the median over the modified-BP methods", "<", 0.0,
            core=True,
            value=None if deeplift is None or not others
            else deeplift - float(np.median(others)),
            skipped=None if deeplift is not None and others else "did not run on this model",
        )
    )  # fmt: skip
    finding = (
        f"Median |cos| between the maps of the predicted and a random other class over "
        f"{len(images)} images: "
        + ", ".join(f"{n} {similarity[n]:.3f}" for n in names)
        + f". Patterns fitted on {fit['fit_images']} images "
        f"({fit['fit_images_per_s']:.0f} images/s)."
    )
    return Section(
        key=KEY,
        title="RectGrad, PatternNet, PatternAttribution, Guided Backprop, DeepLift",
        claim=CLAIM,
        finding=finding,
        verdict=claim,
        skipped=skipped,
        figures=[ctx.relative(figure), plot],
        captions=[
            "Maps for the predicted class (red positive, blue negative, each map scaled by its "
            "own 99.5th percentile).",
            "Median |cos| between the map of the predicted class and of a random other class; "
            "a bar near 1 means the map ignores which class is explained.",
        ],
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
