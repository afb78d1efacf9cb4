"""Section 1: the workload, Captum's gradient methods and LRP on it (the baseline for the rest)."""

from __future__ import annotations

import time

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency

from captum_ext.lrp import LRP, EpsilonPlus
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import heatmap_grid, markdown_table

ORDER = 0
KEY = "overview"


def run(ctx: ReportContext) -> Section:
    images = ctx.images[: ctx.n_show]
    with torch.no_grad():
        target = ctx.model(images).argmax(1)
    model = ctx.model
    methods = {
        "Saliency": lambda x, t: Saliency(model).attribute(x, target=t, abs=False),
        "IntegratedGradients": lambda x, t: IntegratedGradients(model).attribute(
            x, target=t, n_steps=ctx.size(32, 32, large=16), internal_batch_size=ctx.batch_limit
        ),
        "InputXGradient": lambda x, t: InputXGradient(model).attribute(x, target=t),
        "LRP EpsilonPlus": lambda x, t: LRP(model, rule_set=EpsilonPlus()).attribute(x, target=t),
    }
    maps, rows, skipped = {}, [], []
    for name, explain in methods.items():
        start = time.perf_counter()
        try:
            maps[name] = explain(images, target).detach()
        except (TypeError, ValueError, RuntimeError, NotImplementedError, ArithmeticError) as err:
            skipped.append(f"{name}: {type(err).__name__}: {str(err)[:160]}")
            continue
        seconds = time.perf_counter() - start
        rows.append([name, f"{1000 * seconds / len(images):.1f}"])
    figure = heatmap_grid(
        ctx.figure_path("overview_heatmaps"), images, maps, title="Baselines on the workload"
    )
    accuracy = "n/a" if ctx.accuracy is None else f"{100 * ctx.accuracy:.1f} %"
    workload = markdown_table(
        ["model", "test accuracy", "images explained", "input shape"],
        [[ctx.model_name, accuracy, len(ctx.images), tuple(ctx.images.shape[1:])]],
    )
    return Section(
        key=KEY,
        title="Workload and baselines",
        claim=(
            "Captum's Saliency, Integrated Gradients and Input×Gradient, and LRP through "
            "captum_ext's Captum-compatible LRP class, run on the workload."
        ),
        finding=(
            f"The model reaches {accuracy} test accuracy"
            if ctx.accuracy is not None
            else "No labelled test set given, so no accuracy"
        )
        + "; the heatmaps show the baselines.",
        confirmed=None,
        skipped=skipped,
        figures=[ctx.relative(figure)],
        captions=["The images explained and the baseline maps (red positive, blue negative)."],
        tables=[workload, markdown_table(["method", "ms per image"], rows)],
        numbers={"accuracy": ctx.accuracy, "ms_per_image": {r[0]: float(r[1]) for r in rows}},
    )
