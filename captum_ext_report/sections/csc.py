"""Section: cosine similarity convergence (Sixt et al. 2020, Figure 5) on the model under study.

Sixt et al. (2020) inject random relevance vectors at the logits and follow them down: for
modified back-propagation methods they align (median |cos| ≥ 0.99 within a few layers, LRP-α1β0
fastest), for the gradient, LRP-z and DeepLIFT they do not. This section runs
:class:`quantus_metrics.CSC` for every method available in this installation on the model
under study (with the bundled CNN, also on a random-init VGG-16 at a small input size).

:func:`method_factories` is shared with the ``sanity`` section.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import Deconvolution, GuidedBackprop, Saliency
from torch import nn

from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import markdown_table
from captum_ext_report.verdicts import Claim, Criterion
from quantus_metrics.csc import CSC

ORDER = 50
KEY = "csc"

Factory = Callable[[nn.Module], Any]
CONVERGED = 0.99


def _optional(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _pattern_factories(ctx: ReportContext, refit: bool = False) -> dict[str, tuple[Factory, str]]:
    """PatternNet / PatternAttribution factories.

    ``refit=False``: the patterns are fitted once on ``ctx.model`` and loaded into every
    instance (right when the model does not change, as in CSC). ``refit=True``: every
    instance fits its own patterns on the model it is given -- required by the randomisation
    sanity check, where reusing the original model's patterns on a randomised model would make
    the test unable to fail.
    """
    pattern_net = _optional("captum_ext.pattern", "PatternNet")
    pattern_attribution = _optional("captum_ext.pattern", "PatternAttribution")
    if pattern_net is None or pattern_attribution is None:
        return {}
    data = ctx.pattern_data
    options = {**ctx.pattern_fit, "progress": False}
    if refit:
        return {
            "PatternNet": (lambda m: pattern_net(m).fit(data, **options), "sum"),
            "PatternAttribution": (lambda m: pattern_attribution(m).fit(data, **options), "sum"),
        }
    state = pattern_attribution(ctx.model).fit(data, **options).patterns_state_dict()
    return {
        "PatternNet": (lambda m: pattern_net(m).load_patterns(state), "sum"),
        "PatternAttribution": (lambda m: pattern_attribution(m).load_patterns(state), "sum"),
    }


def method_factories(
    ctx: ReportContext, patterns: bool = True, quick_subset: bool = False, refit: bool = False
) -> dict[str, tuple[Factory, str]]:
    """``{name: (model -> Attribution, channel reduction)}`` for the methods installed here.

    The channel reduction follows Sixt et al. (2020): max |·| for gradient-like methods, sum for
    LRP, Pattern and DeepLIFT. Missing optional methods are left out.
    """
    methods: dict[str, tuple[Factory, str]] = {
        "Gradient": (Saliency, "max_abs"),
        "GuidedBackprop": (GuidedBackprop, "max_abs"),
        "Deconvolution": (Deconvolution, "max_abs"),
    }
    rectgrad = _optional("captum_ext.rectgrad", "RectGrad")
    if rectgrad is not None:
        methods["RectGrad"] = (rectgrad, "max_abs")
    lrp = _optional("captum_ext.lrp", "LRP")
    if lrp is not None:
        rules = importlib.import_module("captum_ext.lrp")
        methods["LRP-z"] = (lambda m: lrp(m, rule_set=rules.Epsilon(1e-9)), "sum")
        methods["LRP-α1β0"] = (lambda m: lrp(m, rule_set=rules.Alpha1Beta0()), "sum")
        methods["LRP-α2β1"] = (lambda m: lrp(m, rule_set=rules.AlphaBeta(2.0, 1.0)), "sum")
        methods["LRP-ε+"] = (lambda m: lrp(m, rule_set=rules.EpsilonPlus()), "sum")
        methods["LRP-α5β4"] = (lambda m: lrp(m, rule_set=rules.Alpha5Beta4()), "sum")
        methods["LRP-CMP"] = (lambda m: lrp(m, rule_set=rules.LRPCMP()), "sum")
        methods["ExcitationBackprop"] = (
            lambda m: lrp(m, rule_set=rules.ExcitationBackprop()),
            "sum",
        )
        methods["DTD"] = (lambda m: lrp(m, rule_set=rules.DeepTaylor()), "sum")
    if patterns:
        methods.update(_pattern_factories(ctx, refit=refit))
    for module, name in (
        ("captum.attr", "DeepLift"),
        ("captum_ext.deeplift_linear", "DeepLiftLinear"),
        ("captum_ext.deeplift_linear", "DeepLiftAblation"),
        ("captum_ext.contrastive", "ContrastiveLRP"),
        ("captum_ext.contrastive", "ContrastiveExcitationBackprop"),
    ):
        cls = _optional(module, name)
        if cls is not None:
            methods[name] = (cls, "sum")
    if quick_subset:
        keep = ("Gradient", "GuidedBackprop", "LRP-z", "LRP-α1β0")
        methods = {k: v for k, v in methods.items() if k in keep}
    return {name: value for name, value in methods.items() if ctx.wants_method(name)}


def _run_model(
    ctx: ReportContext, label: str, model: nn.Module, images: torch.Tensor, methods: dict
) -> tuple[dict[str, CSC], list[str]]:
    metrics, skipped = {}, []
    for offset, (name, (factory, _)) in enumerate(methods.items()):
        metric = CSC(method=factory, seed=ctx.seed + offset, return_distributions=True)
        try:
            metric(model=model, x_batch=images.detach().cpu().numpy(), y_batch=None)
        except (TypeError, ValueError, RuntimeError, NotImplementedError, ArithmeticError) as err:
            # a method this model does not support (no modified backward for one of its
            # layers, a non-finite result): reported as skipped with the reason
            skipped.append(f"{name} on {label}: {type(err).__name__}: {str(err)[:160]}")
            continue
        metrics[name] = metric
    return metrics, skipped


def _figure(ctx: ReportContext, panels: dict[str, dict[str, CSC]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from captum_ext_report.plotting import METHOD_COLOURS

    fig, axes = plt.subplots(1, len(panels), figsize=(8.5 * len(panels), 4.2), squeeze=False)
    for ax, (label, metrics) in zip(axes[0], panels.items(), strict=True):
        ax.set_prop_cycle(color=METHOD_COLOURS)  # more methods than the default 10 colours
        for index, (name, metric) in enumerate(metrics.items()):
            metric.plot(ax=ax, label=name, baseline=index == 0, markersize=3)
        ax.axhline(1 - CONVERGED, color="red", linewidth=0.8, linestyle="--", label="|cos| = 0.99")
        ax.set_title(f"CSC from the logits: {label}", fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3)
        # outside the axes so that it covers no curve
        ax.legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ctx.save_figure(fig, "csc_per_layer", dpi=110)


def _vgg16(ctx: ReportContext) -> nn.Module:
    # ctx.torchvision() cannot be used: lru_cache on the (unhashable) dataclass raises
    # TypeError; reported for the shared context. Same seeded model, built directly.
    from captum_ext.zoo import torchvision_model

    return torchvision_model("vgg16", seed=ctx.seed).to(ctx.device)


# Sixt et al. (2020), Sec. 5: "Except for LRP_z and DeepLIFT, all methods show convergence up
# to at least 0.99 cosine similarity"; LRP-α1β0 converges fastest; the gradient (and so LRP-z,
# which equals gradient × input for ReLU nets) does not converge.
CONVERGING = (
    "LRP-α1β0", "LRP-α2β1", "LRP-ε+", "GuidedBackprop", "Deconvolution", "RectGrad",
    "PatternNet", "PatternAttribution", "DeepLiftAblation",
)  # fmt: skip
NOT_CONVERGING = ("Gradient", "LRP-z", "DeepLift")
CORE = ("LRP-α1β0", "Gradient")
BASELINE_MAX = 0.5  # negative control: random vectors must sit well below the threshold


def build_claim(medians: dict[str, float], baselines: dict[str, float], skipped: dict) -> Claim:
    """CSC claim with its pre-registered criteria, from the first-layer medians per method."""
    claim = Claim(CLAIM)
    for name in CONVERGING + NOT_CONVERGING:
        op = ">=" if name in CONVERGING else "<"
        criterion = Criterion(
            name, "median |cos| at the first layer", op, CONVERGED, core=name in CORE,
            value=medians.get(name), skipped=skipped.get(name),
        )  # fmt: skip
        if name not in medians and name not in skipped:
            criterion.skipped = "not installed or not selected"
        claim.add(criterion)
    if baselines:
        claim.add(
            Criterion(
                "random vectors (baseline)",
                "largest median |cos| at the first layer",
                "<",
                BASELINE_MAX,
                control=True,
                value=max(baselines.values()),
            )  # fmt: skip
        )
    return claim


CLAIM = (
    "Random relevance vectors injected at the logits align while being back-propagated by "
    "modified-BP rules: every method except LRP-z and DeepLIFT reaches a median |cos| ≥ 0.99 "
    "(LRP-α1β0, PatternNet and the DeepLIFT ablation fastest); the gradient does not converge "
    '(Sixt, Granz and Landgraf 2020, "When Explanations Lie", Sec. 5 and Figure 5).'
)


def run(ctx: ReportContext) -> Section:
    images = ctx.images[: ctx.size(16, 4, large=6)]
    panels: dict[str, dict[str, CSC]] = {}
    skipped: list[str] = []
    workloads = [(ctx.model_name, ctx.model, images, True)]
    if not ctx.quick and ctx.is_digits:  # a second, deeper net next to the small CNN
        natural = F.interpolate(ctx.natural_images[:2], size=(64, 64), mode="area")
        workloads.append(("VGG-16, random init, 64×64", _vgg16(ctx), natural, False))
    for label, model, batch, patterns in workloads:
        methods = method_factories(ctx, patterns=patterns)
        panels[label], missing = _run_model(ctx, label, model, batch, methods)
        skipped += missing
    # the per-layer |cos| distributions of the report's model, for the histogram section
    ctx.extra["csc_distributions"] = (
        len(images),
        {name: metric.distributions for name, metric in panels[ctx.model_name].items()},
    )
    rows, numbers = [], {}
    for label, metrics in panels.items():
        for name, metric in metrics.items():
            medians = metric.layer_medians()
            layers = list(medians)
            first = layers[1] if len(layers) > 1 else layers[0]  # the first layer's output
            lowest = min(medians[n] for n in layers[1:-1]) if len(layers) > 2 else np.nan
            rows.append(
                [label, name, first, medians[first], metric.baselines[first], lowest,
                 "yes" if medians[first] >= CONVERGED else "no"]
            )  # fmt: skip
            numbers[f"{label} / {name}"] = medians
    main = [r for r in rows if r[0] == ctx.model_name]
    skipped_main = {
        item.split(" on ")[0]: item.split(": ", 1)[1]
        for item in skipped
        if f" on {ctx.model_name}:" in item
    }
    claim = build_claim({r[1]: r[3] for r in main}, {r[1]: r[4] for r in main}, skipped_main)
    verdict = claim.decide()
    by = {r[1]: r for r in main}
    converged = sorted(r[1] for r in main if r[6] == "yes")
    finding = (
        f"On {ctx.model_name} ({len(images)} images), median |cos| at the first layer reaches "
        f"≥ {CONVERGED} for: {', '.join(converged) or 'none'}. "
    )
    if "Gradient" in by:
        g = by["Gradient"]
        finding += f"The gradient sits at {g[3]:.3f} against a random baseline of {g[4]:.3f}: " + (
            "well above chance yet below 0.99 -- a trained network's early layers make "
            "gradients of different output directions partly alike (shared ReLU gating), "
            "which is partial alignment, not the rank-1 convergence of modified BP. "
            if g[3] > 2 * g[4]
            else "close to chance, as the paper expects. "
        )
    finding += f"Verdict: {verdict.outcome}."
    if skipped:
        finding += f" Not run on some models: {len(skipped)} method/model pairs (listed below)."
    table = markdown_table(
        ["model", "method", "first layer", "median |cos|", "random baseline",
         "min median over layers", f"converged (≥ {CONVERGED})"],
        rows,
    )  # fmt: skip
    return Section(
        key=KEY,
        title="Cosine similarity convergence (Sixt et al. 2020, Figure 5)",
        claim=CLAIM,
        finding=finding,
        verdict=claim,
        figures=[_figure(ctx, panels)],
        captions=[
            "1 − median |cos| between two back-propagated random relevance vectors, per layer "
            "(input on the left, injection at the logits on the right; log axis, converged at "
            "the top). Grey dotted: random vectors (chance); red dashed: |cos| = 0.99. Look at "
            "the first layer: methods above the red line converged."
        ],
        tables=[table],
        skipped=skipped,
        numbers={"median_abs_cos": numbers, "skipped": skipped},
    )
