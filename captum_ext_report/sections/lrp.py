"""Section: LRP rule sets on the model under study (Sixt et al. 2020, "When Explanations Lie").

Shows a grid of rule-set heatmaps, checks each rule set against zennit (the reference
implementation) in float64 on the shown images, measures conservation and how much each map
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
from captum_ext_report.verdicts import Claim, Criterion, bootstrap_ci

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


CLAIM = (
    'Sixt, Granz and Landgraf (2020, "When Explanations Lie"): rules built on z⁺ (LRP-α1β0, '
    "Deep Taylor) give maps that barely change with the explained class; LRP-ε does not "
    "converge and stays class-sensitive; LRP_CMP/EpsilonPlus (z⁺ or αβ on convolutions, ε on "
    "dense layers) regains some class sensitivity because its dense layers are not z⁺. And: "
    "our Captum-native rule sets reproduce the reference implementation (zennit)."
)
INSENSITIVE = 0.9  # cos(map_c, map_runner-up) of a class-insensitive rule
ZENNIT_TOL = 1e-5


def build_claim(
    cos: dict[str, tuple[float, tuple[float, float]]], zennit: dict, same: float | None
):
    """Criteria from per-rule-set mean cosines (with CI), zennit errors and LRPCMP ≡ EpsilonPlus."""
    claim = Claim(CLAIM)
    for name, error in zennit.items():
        claim.add(
            Criterion(
                name, "max relative error vs zennit (float64)", "<=", ZENNIT_TOL, core=True,
                value=error if not isinstance(error, str) else None,
                skipped=error if isinstance(error, str) else None,
            )
        )  # fmt: skip
    ab = cos.get("Alpha1Beta0")
    for name in ("Alpha1Beta0", "DeepTaylor (z^B)"):
        value = cos.get(name)
        claim.add(
            Criterion(
                name, "mean cos(map_c, map_runner-up)", ">=", INSENSITIVE,
                value=None if value is None else value[0], ci=None if value is None else value[1],
                skipped=None if value is not None else "did not run on this model",
            )
        )  # fmt: skip
    for name, core in (("Epsilon (LRP-ε)", True), ("EpsilonPlus", False)):
        value = cos.get(name)
        ok = value is not None and ab is not None
        claim.add(
            Criterion(
                name, "mean cos minus Alpha1Beta0's (more class-sensitive)", "<", 0.0, core=core,
                value=value[0] - ab[0] if ok else None,
                skipped=None if ok else "did not run on this model",
            )
        )  # fmt: skip
    claim.add(
        Criterion(
            "LRPCMP (α1β0)", "max relative difference to EpsilonPlus (same rules by definition)",
            "<=", 1e-6, value=same, skipped=None if same is not None else "did not run",
        )
    )  # fmt: skip
    return claim


def run(ctx: ReportContext) -> Section:
    images = ctx.images[: ctx.size(8, 4, large=4)]
    low, high = (b.to(images) for b in ctx.bounds)
    with torch.no_grad():
        logits = ctx.model(images)
    target = logits.argmax(1)
    # The "other class": the runner-up logit, so both maps explain a plausible decision.
    other = logits.topk(2, dim=1).indices[:, 1]
    # The float64 zennit check is the expensive part: one image in a quick run.
    n_check = ctx.size(min(len(images), 4), 1, large=1)
    model64, x64, t64 = (
        copy.deepcopy(ctx.model).double(),
        images[:n_check].double(),
        target[:n_check],
    )
    # zennit's box rule wants bounds of the input's full shape, not per channel
    shape = (1, -1, 1, 1)
    z_low = low.double().view(shape).expand_as(x64).contiguous()
    z_high = high.double().view(shape).expand_as(x64).contiguous()
    zennit = _zennit_composites(z_low, z_high)
    plain = (
        torch.nn.Conv2d, torch.nn.Linear, torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.AvgPool2d,
        torch.nn.Flatten, torch.nn.Dropout, torch.nn.Identity,
    )  # fmt: skip
    leaves = [m for m in ctx.model.modules() if not list(m.children())]
    needs_canonizer = sorted({type(m).__name__ for m in leaves if not isinstance(m, plain)})
    zennit_skip = None
    if needs_canonizer:
        # zennit's composites without canonizers treat these layers differently (e.g.
        # BatchNorm as pass-through): a difference would not be a bug of either side
        zennit_skip = (
            f"zennit comparison not run: the model has {', '.join(needs_canonizer)} layers, which "
            "zennit's plain composites need canonizers for"
        )
        zennit = {}
    maps, rows, numbers, skipped = {}, [], {}, []
    cos: dict[str, tuple[float, tuple[float, float]]] = {}
    zennit_errors: dict[str, float | str] = {}
    for name, factory in _rule_sets(low, high).items():
        lrp = LRP(ctx.model, rule_set=factory())
        start = time.perf_counter()
        try:
            relevance, delta = lrp.attribute(images, target=target, return_convergence_delta=True)
            other_map = lrp.attribute(images, target=other)
        except (TypeError, ValueError, RuntimeError, NotImplementedError, ArithmeticError) as err:
            skipped.append(f"{name}: {type(err).__name__}: {str(err)[:160]}")
            continue
        ms = 1000 * (time.perf_counter() - start) / (2 * len(images))
        maps[name] = relevance.detach()
        conservation = float((delta.abs() / logits[range(len(images)), target].abs()).mean())
        per_image = torch.nn.functional.cosine_similarity(
            relevance.flatten(1).double(), other_map.flatten(1).double()
        )
        cosine = float(per_image.mean())
        cos[name] = (cosine, bootstrap_ci(per_image.cpu().numpy(), "mean", seed=ctx.seed))
        error: float | str | None = None
        if name in zennit:
            try:
                ours64 = LRP(model64, rule_set=_rule_sets(low.double(), high.double())[name]())
                ours64 = ours64.attribute(x64, target=t64)
                error = _zennit_error(model64, zennit[name](), x64, t64, ours64)
            except Exception as err:  # zennit's own limits (e.g. residual adds) are reported
                error = f"zennit comparison failed: {type(err).__name__}: {str(err)[:120]}"
            zennit_errors[name] = error
        zennit_cell = (
            ("not run (see skipped)" if zennit_skip else "zennit missing")
            if error is None
            else error
            if isinstance(error, str)
            else f"{error:.1e}"
        )
        rows.append(
            [name, f"{ms:.1f}", f"{conservation:.1e}",
             f"{cosine:.3f} [{cos[name][1][0]:.3f}, {cos[name][1][1]:.3f}]", zennit_cell]
        )  # fmt: skip
        numbers[name] = {
            "ms_per_image": ms,
            "relative_conservation_error": conservation,
            "cosine_true_vs_runner_up": cosine,
            "zennit_max_relative_error": error,
        }
    same = None
    if "LRPCMP (α1β0)" in maps and "EpsilonPlus" in maps:
        a, b = maps["LRPCMP (α1β0)"].double(), maps["EpsilonPlus"].double()
        same = float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
    numbers["lrpcmp_vs_epsilonplus_max_rel_diff"] = same
    if zennit_skip is not None:
        zennit_errors = {name: zennit_skip for name in maps}
        skipped.append(zennit_skip)
    captum = _captum_status(ctx.model, images, target)
    numbers["captum_lrp_on_model"] = captum
    if not maps:
        raise RuntimeError("no LRP rule set ran on this model: " + "; ".join(skipped))
    figure = heatmap_grid(
        ctx.figure_path("lrp_rule_sets"),
        images[: ctx.n_show],
        {k: v[: ctx.n_show] for k, v in maps.items()},
        title="LRP rule sets (predicted class)",
    )
    claim = build_claim(cos, zennit_errors, same)
    verdict = claim.decide()
    measured = [e for e in zennit_errors.values() if isinstance(e, float)]
    worst = max(measured, default=float("nan"))

    def c(name: str) -> str:
        return f"{cos[name][0]:.3f}" if name in cos else "n/a"

    finding = (
        f"{len(measured)} rule sets compared with zennit in float64: max relative error "
        f"{worst:.1e}. Mean cosine between the maps of the predicted and the runner-up class: "
        f"Alpha1Beta0 {c('Alpha1Beta0')}, DeepTaylor {c('DeepTaylor (z^B)')}, EpsilonPlus "
        f"{c('EpsilonPlus')}, LRP-ε {c('Epsilon (LRP-ε)')}. EpsilonPlus is not "
        "class-insensitive: its dense layers use ε, whose relevance vectors do not converge and "
        "can still rescale regions by class, as Sixt et al. (2020) say of LRP_CMP. The LRPCMP "
        "(α1β0) row repeats EpsilonPlus in every column because it is the same rule set (α1β0 "
        "on convolutions is the z⁺ rule, ε on dense layers); max relative difference "
        + ("n/a" if same is None else f"{same:.1e}")
        + f". Captum's own LRP on this model: {captum}. Verdict: {verdict.outcome}."
    )
    table = markdown_table(
        [
            "rule set",
            "ms / map",
            "mean |Σ R − f_c| / |f_c|",
            "cos(map_c, map_runner-up) [95 % CI]",
            "max rel. error vs zennit",
        ],
        [*rows, ["Captum LRP (default ε rules)", "", "", "", captum]],
    )
    return Section(
        key=KEY,
        title="LRP rules and rule sets (captum_ext.lrp)",
        claim=CLAIM,
        finding=finding,
        verdict=claim,
        skipped=skipped,
        figures=[ctx.relative(figure)],
        captions=[
            "Relevance of each rule set for the predicted class (red positive, blue negative). "
            "Compare how much LRP-ε and the ε-on-dense rule sets differ from the z⁺-type "
            "rules (Alpha1Beta0, DeepTaylor)."
        ],
        tables=[table],
        numbers=numbers,
    )
