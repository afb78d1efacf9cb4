"""Section: LRP rule sets on the trained digits CNN (issue #3; seed 001 "When Explanations Lie").

Shows a grid of rule-set heatmaps, checks each rule set against zennit (the reference
implementation) in float64 on the shown digits, measures conservation and how much each map
depends on the explained class, and records whether Captum's own LRP runs on the CNN.
"""

from __future__ import annotations

import copy
import time

import torch

from captum_ext.lrp import (
    LRP,
    LRPCMP,
    Alpha1Beta0,
    DeepTaylor,
    Epsilon,
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
)
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import heatmap_grid, markdown_table

ORDER = 10
KEY = "lrp"


def _rule_sets(low: torch.Tensor, high: torch.Tensor) -> dict:
    return {
        "Epsilon (LRP-ε)": lambda: Epsilon(1e-6),
        "EpsilonPlus": EpsilonPlus,
        "EpsilonAlpha2Beta1": EpsilonAlpha2Beta1,
        "EpsilonGammaBox": lambda: EpsilonGammaBox(low, high),
        "Alpha1Beta0": Alpha1Beta0,
        "LRPCMP (α1β0)": LRPCMP,
        "DeepTaylor (z^B)": lambda: DeepTaylor(low, high),
    }


def _zennit_composites(low: torch.Tensor, high: torch.Tensor) -> dict:
    """zennit counterparts, or an empty dict when zennit (a test-only dependency) is missing."""
    try:
        from zennit import composites as zc
        from zennit import rules as zr
        from zennit.types import Convolution, Linear
    except ImportError:
        return {}
    base = zc.layer_map_base()
    return {
        "Epsilon (LRP-ε)": lambda: zc.LayerMapComposite([*base, (Linear, zr.Epsilon())]),
        "EpsilonPlus": zc.EpsilonPlus,
        "EpsilonAlpha2Beta1": zc.EpsilonAlpha2Beta1,
        "EpsilonGammaBox": lambda: zc.EpsilonGammaBox(low=low, high=high),
        "Alpha1Beta0": lambda: zc.LayerMapComposite([*base, (Linear, zr.AlphaBeta(1, 0))]),
        "LRPCMP (α1β0)": lambda: zc.LayerMapComposite(
            [*base, (Convolution, zr.AlphaBeta(1, 0)), (torch.nn.Linear, zr.Epsilon())]
        ),
        "DeepTaylor (z^B)": lambda: zc.SpecialFirstLayerMapComposite(
            [*base, (Linear, zr.ZPlus())], [(Linear, zr.ZBox(low, high))]
        ),
    }


def _zennit_error(model, composite, x, target, ours) -> float:
    from zennit.attribution import Gradient

    with Gradient(model, composite) as attributor:  # zennit undoes its hooks on exit
        out = model(x)
        onehot = torch.nn.functional.one_hot(target, out.shape[1]).to(out)
        _, theirs = attributor(x, lambda o: o * onehot)
    return float((ours - theirs).abs().max() / theirs.abs().max())


def _captum_status(model, x, target) -> str:
    from captum.attr import LRP as CaptumLRP

    try:
        CaptumLRP(copy.deepcopy(model)).attribute(x.clone().requires_grad_(), target=target)
    except Exception as err:  # report whatever Captum raises, verbatim
        return f"fails: {type(err).__name__}: {str(err)[:120]}"
    return "runs"


def run(ctx: ReportContext) -> Section:
    images = ctx.images[: ctx.n_show]
    low, high = (b.to(images) for b in ctx.bounds)
    with torch.no_grad():
        logits = ctx.model(images)
    target = logits.argmax(1)
    # The "other class": the runner-up logit, so both maps explain a plausible decision.
    other = logits.topk(2, dim=1).indices[:, 1]
    # The float64 zennit check is the expensive part: one digit in a quick run.
    n_check = 1 if ctx.quick else len(images)
    model64, x64, t64 = (
        copy.deepcopy(ctx.model).double(),
        images[:n_check].double(),
        target[:n_check],
    )
    zennit = _zennit_composites(low.double(), high.double())
    maps, rows, numbers = {}, [], {}
    for name, factory in _rule_sets(low, high).items():
        lrp = LRP(ctx.model, rule_set=factory())
        start = time.perf_counter()
        relevance, delta = lrp.attribute(images, target=target, return_convergence_delta=True)
        ms = 1000 * (time.perf_counter() - start) / len(images)
        maps[name] = relevance.detach()
        conservation = float((delta.abs() / logits[range(len(images)), target].abs()).mean())
        other_map = lrp.attribute(images, target=other)
        cosine = float(
            torch.nn.functional.cosine_similarity(relevance.flatten(1), other_map.flatten(1)).mean()
        )
        error = None
        if name in zennit:
            ours64 = LRP(model64, rule_set=_rule_sets(low.double(), high.double())[name]())
            ours64 = ours64.attribute(x64, target=t64)
            error = _zennit_error(model64, zennit[name](), x64, t64, ours64)
        zennit_cell = "zennit missing" if error is None else f"{error:.1e}"
        rows.append([name, f"{ms:.1f}", f"{conservation:.1e}", f"{cosine:.3f}", zennit_cell])
        numbers[name] = {
            "ms_per_image": ms,
            "relative_conservation_error": conservation,
            "cosine_true_vs_runner_up": cosine,
            "zennit_max_relative_error": error,
        }
    captum = _captum_status(ctx.model, images, target)
    numbers["captum_lrp_on_cnn"] = captum
    figure = heatmap_grid(
        ctx.figure_path("lrp_rule_sets"),
        images,
        maps,
        title="LRP rule sets on the digits CNN (predicted class)",
    )
    errors = [v["zennit_max_relative_error"] for k, v in numbers.items() if isinstance(v, dict)]
    agree = all(e is not None and e <= 1e-5 for e in errors)
    worst = max((e for e in errors if e is not None), default=float("nan"))
    cos_ab = numbers["Alpha1Beta0"]["cosine_true_vs_runner_up"]
    cos_eps = numbers["Epsilon (LRP-ε)"]["cosine_true_vs_runner_up"]
    confirmed = bool(agree and cos_ab > cos_eps)
    finding = (
        f"All {len(errors)} rule sets match zennit to a max relative error of {worst:.1e} "
        f"(float64). The α1β0 map for the runner-up class has cosine {cos_ab:.3f} with the "
        f"predicted class's map, LRP-ε {cos_eps:.3f}: z⁺-type rules are "
        f"{'less' if cos_ab > cos_eps else 'not less'} class-sensitive. Captum's own LRP on this "
        f"CNN: {captum}."
    )
    table = markdown_table(
        [
            "rule set",
            "ms / image",
            "mean |Σ R − f_c| / |f_c|",
            "cos(map_c, map_runner-up)",
            "max rel. error vs zennit",
        ],
        [*rows, ["Captum LRP (default ε rules)", "", "", "", captum]],
    )
    return Section(
        key=KEY,
        title="LRP rules and rule sets (captum_ext.lrp)",
        claim=(
            "Seed 001 (Sixt et al. 2020): LRP rule sets built on z⁺/αβ rules (α1β0, DTD, "
            "EpsilonPlus) produce maps that barely change with the explained class, unlike LRP-ε; "
            "our Captum-native rule sets reproduce the reference implementation (zennit)."
        ),
        finding=finding,
        confirmed=confirmed,
        figures=[ctx.relative(figure)],
        tables=[table],
        numbers=numbers,
    )
