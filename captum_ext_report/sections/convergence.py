"""Convergence constants of averaged attributions (Binder et al. 2025), weight rescalings."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from captum.attr import Saliency
from torch import nn

from captum_ext.lrp import LRP, AlphaBeta, Epsilon
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import line_plot, markdown_table
from captum_ext_report.verdicts import Claim, Criterion
from quantus_metrics.convergence import (
    adaptgrad_perturbation,
    convergence_constants,
    gaussian_perturbation,
)
from quantus_metrics.explain import explain_func_from

ORDER = 70
KEY = "convergence"

SIGMA = 0.15  # Gaussian noise on [0, 1] images (SmoothGrad's α = 0.15 of the range)
EPSILON = 0.25
BETA = 1.0
SCALE = 10.0


def _methods(bounds) -> dict[str, tuple[str, Callable[..., np.ndarray], Callable]]:
    """name → (analytic bound kind, explain function, perturbation)."""
    gradient = explain_func_from(Saliency, abs=False)
    return {
        "Gradient": ("gradient", gradient, gaussian_perturbation(SIGMA)),
        f"LRP-ε (ε={EPSILON})": (
            "lrp_epsilon",
            explain_func_from(lambda m: LRP(m, rule_set=Epsilon(EPSILON))),
            gaussian_perturbation(SIGMA),
        ),
        "LRP-α2β1": (
            "lrp_alphabeta",
            explain_func_from(lambda m: LRP(m, rule_set=AlphaBeta(1 + BETA, BETA))),
            gaussian_perturbation(SIGMA),
        ),
        "AdaptGrad (gradient, c=0.95)": ("gradient", gradient, adaptgrad_perturbation(bounds)),
    }


def _measure(ctx, model, x, y, kind, explain, perturb, grid, n_ref, iterations):
    try:
        return _measure_kind(ctx, model, x, y, kind, explain, perturb, grid, n_ref, iterations)
    except ValueError as err:
        if "theoretical bound" not in str(err):
            raise
        # the analytic chain bound does not cover this architecture (e.g. a residual net):
        # measure the empirical constants alone and say why the bound is missing
        ctx.extra.setdefault("convergence_no_bound", str(err)[:200])
        return _measure_kind(ctx, model, x, y, None, explain, perturb, grid, n_ref, iterations)


def _measure_kind(ctx, model, x, y, kind, explain, perturb, grid, n_ref, iterations):
    return convergence_constants(
        model,
        x,
        y,
        explain,
        perturb,
        n_grid=grid,
        n_reference=n_ref,
        t=0.05,
        delta=0.05,
        theoretical=kind,
        beta=BETA,
        epsilon=EPSILON,
        draws_per_call=8,
        norm_iterations=iterations,
        generator=ctx.generator(70),
        progress=False,
    )


def _classifier_variant(model: nn.Module, how: str) -> nn.Module:
    """A copy of the bundled CNN with its dense hidden layer rescaled.

    ``"scale"``: layer ×s (weights and bias) and the output bias ×s, so f ↦ s·f exactly (ReLU
    is positively homogeneous); ``"balance"``: layer ×s, next layer's weights ×1/s (same f);
    ``"per-neuron"``: unit j ×s_j, next layer's column j ×1/s_j, s_j log-spaced in [1/s, s]
    (same f, different weight norms). The convolutional part is shared, not copied, so its
    cached operator norms are reused; it is never modified.
    """
    variant = copy.copy(model)
    variant._modules = dict(model._modules)
    variant.classifier = copy.deepcopy(model.classifier)
    hidden, out = variant.classifier[1], variant.classifier[3]
    with torch.no_grad():
        if how == "per-neuron":
            factors = torch.logspace(-1, 1, hidden.out_features, dtype=hidden.weight.dtype)
        else:
            factors = torch.full((hidden.out_features,), SCALE, dtype=hidden.weight.dtype)
        factors = factors.to(hidden.weight.device)
        hidden.weight.mul_(factors[:, None])
        hidden.bias.mul_(factors)
        if how == "scale":
            out.bias.mul_(SCALE)
        else:
            out.weight.div_(factors[None, :])
    return variant


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean())


CLAIM = (
    'Binder et al. (2025), "Value bounds and convergence analysis for averages of LRP '
    'attributions": component-wise bounds on attribution values give the constants that govern '
    "how fast means over noise or augmentations converge; LRP-β's constants do not depend on "
    "the weight norms, the gradient's and LRP-ε's do. Tested: the analytic bounds hold "
    "(measured B ≤ analytic), and under rescalings of the dense hidden layer (s = 10: f ↦ s·f; "
    "and function-preserving per-neuron rescaling) the measured relative constants of "
    "LRP-α2β1 stay, LRP-ε's move, and the gradient's analytic bound moves -- and whether the "
    "gradient's measured constant moves too."
)
TOL = 1e-2


def _factor(numbers: dict, key: str, index: int) -> float | None:
    values = numbers["scaling"].get(key)
    return None if values is None else values[index]


def build_claim(ratios: dict[str, float | None], numbers: dict, skip_scaling: str | None) -> Claim:
    """Criteria from the measured B/analytic ratios and the rescaling factors.

    ``numbers["scaling"]["how/method"] = [×B, ×B/|f_c|, ×analytic, ×analytic/|f_c|]``.
    """
    claim = Claim(CLAIM)
    for name, ratio in ratios.items():
        claim.add(
            Criterion(
                name, "measured B / analytic bound", "<=", 1.0, core=True, value=ratio,
                skipped=None if ratio is not None else "no analytic bound for this model",
            )
        )  # fmt: skip
    eps, ab = f"LRP-ε (ε={EPSILON})", "LRP-α2β1"
    hows = sorted({k.split("/")[0] for k in numbers["scaling"]})
    for how in hows or ["scale", "per-neuron"]:
        skip = skip_scaling
        value = _factor(numbers, f"{how}/{ab}", 1)
        claim.add(
            Criterion(
                ab, f"|measured ×B/|f_c| − 1| under '{how}'", "<", TOL, core=True,
                value=None if value is None else abs(value - 1), skipped=skip,
            )
        )  # fmt: skip
        value = _factor(numbers, f"{how}/{ab}", 3)
        claim.add(
            Criterion(
                ab, f"|analytic ×bound/|f_c| − 1| under '{how}'", "<", TOL,
                value=None if value is None else abs(value - 1), skipped=skip,
            )
        )  # fmt: skip
    value = _factor(numbers, f"scale/{eps}", 1)
    claim.add(
        Criterion(
            eps, "|measured ×B/|f_c| − 1| under 'scale' (ε does not scale)", ">", 1e-3,
            value=None if value is None else abs(value - 1), skipped=skip_scaling,
        )
    )  # fmt: skip
    value = _factor(numbers, "per-neuron/Gradient", 3)
    claim.add(
        Criterion(
            "Gradient", "|analytic ×bound/|f_c| − 1| under 'per-neuron'", ">", 0.1,
            value=None if value is None else abs(value - 1), skipped=skip_scaling,
        )
    )  # fmt: skip
    value = _factor(numbers, "per-neuron/Gradient", 1)
    claim.add(
        Criterion(
            "Gradient", "|measured ×B/|f_c| − 1| under 'per-neuron'", ">", TOL,
            value=None if value is None else abs(value - 1), skipped=skip_scaling,
            note="a function-preserving rescaling leaves the gradient itself unchanged",
        )
    )  # fmt: skip
    return claim


def _has_dense_hidden(model: nn.Module) -> bool:
    classifier = getattr(model, "classifier", None)
    return (
        isinstance(classifier, nn.Sequential)
        and len(classifier) > 3
        and isinstance(classifier[1], nn.Linear)
        and isinstance(classifier[3], nn.Linear)
    )


def run(ctx: ReportContext) -> Section:
    n = ctx.size(3, 1, large=1)
    x = ctx.images[:n]
    n = len(x)
    with torch.no_grad():
        y = ctx.model(x).argmax(1)
    grid = (1, 2) if ctx.quick else (1, 2, 4, 8) if ctx.large_inputs else (1, 2, 4, 8, 16)
    n_ref = ctx.size(16, 2, large=8)
    iterations = ctx.size(24, 4, large=8)
    methods = _methods(ctx.bounds)
    results = {
        name: _measure(ctx, ctx.model, x, y, kind, explain, perturb, grid, n_ref, iterations)
        for name, (kind, explain, perturb) in methods.items()
    }
    no_bound = ctx.extra.pop("convergence_no_bound", None)
    rows, curves, numbers = [], {}, {"constants": {}, "scaling": {}}
    ratios: dict[str, float | None] = {}
    for name, r in results.items():
        scale = r.output.abs()
        has = r.theoretical is not None
        ratio = _mean(r.bound / r.theoretical) if has else None
        ratios[name] = ratio
        rows.append(
            [name, _mean(r.bound), _mean(r.relative_bound), _mean(r.hoeffding_n),
             _mean(r.relative_constant), _mean(r.theoretical_relative) if has else "n/a",
             ratio if has else "n/a"]
        )  # fmt: skip
        curves[f"{name}: measured"] = (r.errors / scale).mean(1).tolist()
        fit = r.relative_constant.mean().item()
        curves[f"{name}: C·√(1/N+1/N_ref)"] = [fit * math.sqrt(1 / k + 1 / n_ref) for k in grid]
        keys = ["B", "B_rel", "hoeffding_n", "C_rel", "theory_rel", "B_over_theory"]
        numbers["constants"][name] = dict(zip(keys, rows[-1][1:], strict=True))
    figure = line_plot(
        ctx.figure_path("convergence_curves"),
        list(grid),
        curves,
        xlabel="number of averaged draws N",
        ylabel="RMS error of the N-draw mean / |f_c(x)|",
        title=f"Convergence of averaged attributions (σ = {SIGMA})",
        logy=True,
    )
    table = markdown_table(
        ["method", "B", "B/|f_c|", "Hoeffding N (t=5 % of |f_c|, δ=0.05)", "C/|f_c|",
         "analytic bound/|f_c|", "B / analytic"],
        rows,
    )  # fmt: skip

    skip_scaling = None
    if not _has_dense_hidden(ctx.model):
        skip_scaling = "the rescaling experiment needs a dense hidden layer at classifier[1]"
    elif no_bound is not None:
        skip_scaling = "no analytic bound for this model"
    scale_rows = []
    if skip_scaling is None:
        # factors of deterministic bounds need few draws: same draws for every variant
        small = ctx.size(2, 1)
        xs, ys = x[:small], y[:small]
        sgrid, sref = ((1, 2), 2) if not ctx.quick else ((1,), 1)
        keep = {k: methods[k] for k in ("Gradient", f"LRP-ε (ε={EPSILON})", "LRP-α2β1")}
        base = {
            name: _measure(ctx, ctx.model, xs, ys, kind, ex, p, sgrid, sref, iterations)
            for name, (kind, ex, p) in keep.items()
        }
        for how in ("scale", "balance", "per-neuron") if not ctx.quick else ("scale", "per-neuron"):
            variant = _classifier_variant(ctx.model, how)
            for name, (kind, ex, p) in keep.items():
                r = _measure(ctx, variant, xs, ys, kind, ex, p, sgrid, sref, iterations)
                b0 = base[name]
                factors = [
                    _mean(r.bound / b0.bound),
                    _mean(r.relative_bound / b0.relative_bound),
                    _mean(r.theoretical / b0.theoretical),
                    _mean(r.theoretical_relative / b0.theoretical_relative),
                ]
                scale_rows.append([how, name, *factors])
                numbers["scaling"][f"{how}/{name}"] = factors
    claim = build_claim(ratios, numbers, skip_scaling)
    verdict = claim.decide()
    tables = [table]
    if scale_rows:
        tables.append(
            markdown_table(
                [
                    "rescaling (s = 10)",
                    "method",
                    "measured ×B",
                    "measured ×B/|f_c|",
                    "×analytic",
                    "×analytic/|f_c|",
                ],
                scale_rows,
            )  # fmt: skip
        )
    measured = [r for r in ratios.values() if r is not None]
    finding = f"On {n} image(s) (σ = {SIGMA}) "
    if measured:
        worst = max(measured)
        finding += (
            f"the measured bounds stay {'below' if worst <= 1 else 'NOT below'} the analytic "
            f"ones (largest B/analytic {worst:.3g}); the analytic bounds are loose by orders of "
            "magnitude, LRP-ε's most (it grows like 1/ε per layer). "
        )
    else:
        finding += f"no analytic bound applies ({no_bound}); only measured constants are shown. "
    if scale_rows:
        f = numbers["scaling"]
        finding += (
            "Rescaling the dense hidden layer: measured ×B/|f_c| for LRP-α2β1 "
            + ", ".join(f"{k.split('/')[0]} {v[1]:.4f}" for k, v in f.items() if "α2β1" in k)
            + "; LRP-ε "
            + ", ".join(f"{k.split('/')[0]} {v[1]:.4f}" for k, v in f.items() if "LRP-ε" in k)
            + "; gradient "
            + ", ".join(f"{k.split('/')[0]} {v[1]:.4f}" for k, v in f.items() if "Gradient" in k)
            + " while its analytic bound/|f_c| moves ×"
            + ", ".join(f"{v[3]:.3g}" for k, v in f.items() if "Gradient" in k)
            + ". The gradient is a function of f alone, so a function-preserving rescaling "
            "cannot move its measured constant: the weight-norm dependence the paper states "
            "is a property of the gradient's bound, not of its measured behaviour, and on "
            "these rescalings the measured constants do not separate the gradient from LRP-β."
        )
    finding += f" Verdict: {verdict.outcome}."
    return Section(
        key=KEY,
        title="Convergence constants of averaged attributions (Binder et al. 2025)",
        claim=CLAIM,
        finding=finding,
        verdict=claim,
        skipped=[f"weight-rescaling experiment: {skip_scaling}"] if skip_scaling else [],
        figures=[ctx.relative(figure)],
        captions=[
            "RMS error of the N-draw mean relative to |f_c| (points) and the fitted "
            "C·√(1/N + 1/N_ref) law (lines): the points should follow their line's slope."
        ],
        tables=tables,
        numbers=numbers,
    )
