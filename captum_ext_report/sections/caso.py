"""CAFO / CASO (Singla et al. 2019): Figure 1 (Hessian impact vs confidence), Figure 3 (λ₁)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from captum_ext.context_aware.cafo import CAFO, pair_normalize
from captum_ext.context_aware.caso import CASO
from captum_ext.context_aware.hessian import closed_form_hessian, is_piecewise_linear
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import image_for_display, markdown_table, pyplot
from captum_ext_report.verdicts import Claim, Criterion

ORDER = 40
KEY = "caso"


def _unit(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(torch.finfo(flat.dtype).tiny)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _figure1(ctx: ReportContext, p_max: np.ndarray, diffs: dict[str, np.ndarray]) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    distance = -np.log10(np.clip(1 - p_max, 1e-16, None))
    for (label, diff), marker in zip(diffs.items(), ("o", "^"), strict=False):
        axes[0].scatter(p_max, diff, s=14, alpha=0.7, marker=marker, label=label)
        axes[1].scatter(distance, diff, s=14, alpha=0.7, marker=marker, label=label)
    axes[0].set_xlabel("confidence p_max of the prediction")
    axes[1].set_xlabel("−log10(1 − p_max)")
    for ax in axes:
        ax.set_ylabel("‖CASO/‖CASO‖ − CAFO/‖CAFO‖‖₂")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.legend(fontsize=8)
    fig.suptitle("Fig. 1 setting: Hessian impact vs confidence (λ₁ = 0)")
    return ctx.save_figure(fig, "caso_fig1_difference_vs_confidence", dpi=110)


def _figure3(ctx, image, maps, lambdas, etas, chosen_map, chosen_lambda, chosen_eta) -> str:
    plt = pyplot()
    cols = len(lambdas) + 2
    fig, axes = plt.subplots(1, cols, figsize=(1.7 * cols, 2.3))
    axes[0].imshow(image_for_display(image), cmap="gray")  # grey for 1 channel only
    axes[0].set_title("input", fontsize=8)
    for ax, m, lam, eta in zip(axes[1:-1], maps, lambdas, etas, strict=True):
        shown = ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"λ₁={lam:.0e}\nη={eta:.3f}", fontsize=8)
    axes[-1].imshow(chosen_map, cmap="magma", vmin=0, vmax=1)
    axes[-1].set_title(f"selected λ₁={chosen_lambda:.2e}\nη={chosen_eta:.3f}", fontsize=8)
    for spine in axes[-1].spines.values():
        spine.set_edgecolor("limegreen")
        spine.set_linewidth(3)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=list(axes), fraction=0.02, label="PAIR-normalised |Δ|")
    fig.suptitle("Fig. 3 setting: CASO λ₁ sweep; green = sparsity-criterion choice")
    return ctx.save_figure(fig, "caso_fig3_lambda1_sweep", dpi=110, tight=False)


CLAIM = (
    "Singla et al. (2019, second-order and context-aware saliency, Fig. 1 and Theorem 5): for "
    "confident predictions CASO ≈ CAFO (the loss Hessian of a ReLU net is ≈ rank one along the "
    "gradient); they differ at low confidence. Fig. 3: larger λ₁ gives sparser maps. The "
    "verdict uses the paper's λ₂ = L/2 + 10; other λ₂ are extra rows."
)


def _spearman_ci(a: np.ndarray, b: np.ndarray, seed: int, n: int = 1000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of Spearman's ρ over resampled (a, b) pairs."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        index = rng.integers(0, len(a), len(a))
        if np.ptp(a[index]) > 0 and np.ptp(b[index]) > 0:
            values.append(_spearman(a[index], b[index]))
    if not values:
        return float("nan"), float("nan")
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def run(ctx: ReportContext) -> Section:
    if ctx.workload == "efficientnet-lite0":
        reason = "the bundled EfficientNet-Lite0 is studied in the CASO-on-EfficientNet section"
        return Section(
            key=KEY,
            title="CASO vs CAFO (Singla et al. 2019)",
            claim="",
            finding=f"skipped: {reason}.",
            skipped=[f"CASO vs CAFO on the report's model: {reason}"],
        )
    n = ctx.size(64, 16, large=4)
    images = ctx.images[:n]
    n = len(images)  # fewer when the user gives fewer images
    model = ctx.model
    with torch.no_grad():
        p_max = model(images).softmax(1).amax(1).double().cpu().numpy()
    cafo = CAFO(model).attribute(images)
    caso_method = CASO(model)
    tight_method = CASO(model)
    # The paper's fixed iteration counts leave some problems short of tol; that is part of what
    # is reproduced, so the count goes into the section's numbers instead of a console warning.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"CASO: .* did not converge")
        # paper settings (Table 1): λ₁ = 0, λ₂ = L/2 + 10, 10 iterations, closed-form Hessian
        caso = caso_method.attribute(images, tol=1e-6)
        with torch.no_grad():
            n_classes = int(model(images[:1]).shape[1])
        if n_classes <= 40 and is_piecewise_linear(model):  # exact, and cheap for few classes
            top = closed_form_hessian(model, images).top_eigenvalue()
        else:  # CASO's own Lanczos estimate, read back from λ₂ = L/2 + c₁ (c₁ = 10)
            top = (2 * (caso_method.last_lambda2.double() - 10.0)).to(images)
        diffs = {
            "λ₂ = L/2 + 10 (paper)": (_unit(caso) - _unit(cafo)).norm(dim=1).double().cpu().numpy()
        }
        # the digits CNN's curvature is small next to c₁ = 10, so also a Hessian-dominated
        # setting; it needs L resolved, which λ₂ = L/2 + 10 in float32 gives only for L ≳ 1e-3
        if n_classes <= 40 or bool((top > 1e-3).all()):
            tight = tight_method.attribute(
                images, lambda2=(0.55 * top).clamp_min(1e-30), n_iter=300
            )
            diffs["λ₂ = 0.55·L"] = (_unit(tight) - _unit(cafo)).norm(dim=1).double().cpu().numpy()
        # negative control: with λ₂ far above the curvature the Hessian term vanishes, CASO → CAFO
        flat = CASO(model).attribute(images, lambda2=(1e6 * top).clamp_min(1e6), tol=1e-6)
    control = float((_unit(flat) - _unit(cafo)).norm(dim=1).max())
    fig1 = _figure1(ctx, p_max, diffs)
    confident = p_max > 0.99
    rows, numbers = [], {"n_images": int(n), "n_confident": int(confident.sum())}
    for label, diff in diffs.items():
        rho = _spearman(p_max, diff)
        high = float(diff[confident].mean()) if confident.any() else float("nan")
        low = float(diff[~confident].mean()) if (~confident).any() else float("nan")
        rows.append([label, f"{rho:.3f}", f"{high:.3g}", f"{low:.3g}", f"{diff.max():.3g}"])
        numbers[label] = {"spearman": rho, "mean_diff_confident": high, "mean_diff_other": low}
    numbers["top_eigenvalue_median"] = float(top.median())
    numbers["not_converged"] = {
        "λ₂ = L/2 + 10 (paper), 10 iterations": int((~caso_method.last_converged).sum()),
    }
    if "λ₂ = 0.55·L" in diffs:
        numbers["not_converged"]["λ₂ = 0.55·L, 300 iterations"] = int(
            (~tight_method.last_converged).sum()
        )

    # Figure 3: one image, a decade sweep of λ₁ solved in one batch, and the search's choice
    image = images[:1]
    lambdas = [10.0**e for e in range(-7, -7 + ctx.size(7, 5))]
    sweep = CASO(model).attribute(image.expand(len(lambdas), *image.shape[1:]), lambda1=lambdas)
    etas = (sweep.flatten(1) == 0).double().mean(1).tolist()
    search = CASO(model)
    chosen = search.attribute(image, lambda1_search=True)
    fig3 = _figure3(
        ctx,
        image[0],
        pair_normalize(sweep)[:, 0].cpu().numpy(),
        lambdas,
        etas,
        pair_normalize(chosen)[0, 0].cpu().numpy(),
        float(search.last_lambda1[0]),
        float(search.last_sparsity[0]),
    )
    numbers["selected_lambda1"] = float(search.last_lambda1[0])
    numbers["selected_sparsity"] = float(search.last_sparsity[0])
    paper = numbers["λ₂ = L/2 + 10 (paper)"]
    paper_max = float(diffs["λ₂ = L/2 + 10 (paper)"].max())
    tight_n = numbers.get("λ₂ = 0.55·L")
    rho_ci = _spearman_ci(p_max, diffs["λ₂ = L/2 + 10 (paper)"], ctx.seed)
    numbers["spearman_ci_paper"] = rho_ci
    numbers["control_max_diff_lambda2_huge"] = control
    claim = Claim(CLAIM)
    claim.add(
        Criterion(
            "λ₂ = L/2 + 10 (paper)", "Spearman(p_max, ‖CASO − CAFO‖), 95 % CI", "<", 0.0,
            core=True, value=paper["spearman"], ci=rho_ci,
        )
    )  # fmt: skip
    both = confident.any() and (~confident).any()
    claim.add(
        Criterion(
            "λ₂ = L/2 + 10 (paper)", "mean difference p_max > 0.99 minus the others'", "<", 0.0,
            value=paper["mean_diff_confident"] - paper["mean_diff_other"] if both else None,
            skipped=None if both else "needs confident and unconfident predictions",
        )
    )  # fmt: skip
    claim.add(
        Criterion(
            "λ₁ sweep", "sparsity η at the largest λ₁ minus at the smallest", ">", 0.0,
            value=etas[-1] - etas[0],
        )
    )  # fmt: skip
    claim.add(
        Criterion(
            "λ₂ = 10⁶·L (Hessian term off)", "max ‖CASO − CAFO‖ (must vanish)", "<", 1e-3,
            control=True, value=control,
        )
    )  # fmt: skip
    verdict = claim.decide()
    finding = (
        f"On {n} images ({int(confident.sum())} with p_max > 0.99) the median top Hessian "
        f"eigenvalue is L = {numbers['top_eigenvalue_median']:.3g}. With the paper's λ₂ = L/2 + "
        f"10: Spearman(p_max, difference) = {paper['spearman']:.2f} (95 % CI "
        f"[{rho_ci[0]:.2f}, {rho_ci[1]:.2f}]), mean difference {paper['mean_diff_confident']:.3g} "
        f"for confident vs {paper['mean_diff_other']:.3g} for the others, max {paper_max:.2g}. "
        + (
            f"Extra setting λ₂ = 0.55·L (Hessian-dominated): Spearman {tight_n['spearman']:.2f}. "
            if tight_n
            else "The extra setting λ₂ = 0.55·L is left out: L is below float32's resolution "
            "of λ₂ = L/2 + 10. "
        )
        + f"With λ₂ = 10⁶·L CASO equals CAFO to {control:.1e} (control). The λ₁ sweep's sparsity "
        f"goes from {etas[0]:.3f} to {etas[-1]:.3f}; the search picked λ₁ = "
        f"{numbers['selected_lambda1']:.2e} (η = {numbers['selected_sparsity']:.3f}). Only "
        f"{int(model(images[:1]).shape[1])} classes here; Theorem 5 is asymptotic in the "
        f"number of classes. Verdict: {verdict.outcome}."
    )
    return Section(
        key=KEY,
        title="CAFO / CASO: Hessian impact and context-aware sparsity (Singla et al. 2019)",
        claim=CLAIM,
        finding=finding,
        verdict=claim,
        figures=[fig1, fig3],
        captions=[
            "Difference between the unit-normalised CASO and CAFO maps against the prediction's "
            "confidence (λ₁ = 0): the paper expects it to shrink as p_max → 1.",
            "CASO maps for a decade sweep of λ₁ (PAIR-normalised |Δ|); green: the λ₁ the "
            "sparsity criterion selects. Larger λ₁ should give sparser maps (η = share of zeros).",
        ],
        tables=[
            markdown_table(
                ["setting", "Spearman(p_max, diff)", "mean diff p>0.99", "mean diff other", "max"],
                rows,
            ),
            markdown_table(
                ["λ₁", "sparsity η"],
                [[f"{lam:.0e}", f"{eta:.3f}"] for lam, eta in zip(lambdas, etas, strict=True)],
            ),
        ],
        numbers=numbers,
    )
