"""AdaptGrad (Zhou et al. 2025): data-adapted noise against SmoothGrad's inherent noise."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from captum_ext.noise.adaptgrad import (
    AdaptGrad,
    SeededNoiseTunnel,
    inherent_noise,
    noise_std,
    smoothgrad_std,
)
from captum_ext.zoo import imagenet_bounds, torchvision_model
from captum_ext_report.context import ReportContext, Section
from captum_ext_report.plotting import heatmap_grid, line_plot, markdown_table, pyplot
from captum_ext_report.verdicts import Claim, Criterion, bootstrap_ci

ORDER = 30
KEY = "adaptgrad"

FIG3 = (-2.12, 2.64)  # the paper's Figure-3 range (ImageNet-normalised)
ORACLE = {"SG α=0.2": 0.159576, "AG c=0.95 (code κ)": 0.027067, "AG c=0.95 (eq. 13 κ)": 0.013353}
PAPER = {"SG α=0.2": 0.1596, "AG c=0.95 (code κ)": 0.01424, "AG c=0.95 (eq. 13 κ)": 0.01424}

Explain = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _figure3(ctx: ReportContext) -> tuple[dict[str, float], str]:
    """Inherent noise A(x) over the Figure-3 range and its mean (midpoint rule, 200 000 cells)."""
    n = 200_000
    step = (FIG3[1] - FIG3[0]) / n
    x = (FIG3[0] + step * (torch.arange(n, dtype=torch.float64) + 0.5)).unsqueeze(1)
    curves = {
        "SG α=0.2": inherent_noise(x, smoothgrad_std(FIG3), FIG3).per_feature[:, 0],
        "AG c=0.95 (code κ)": inherent_noise(x, noise_std(x, FIG3), FIG3).per_feature[:, 0],
        "AG c=0.95 (eq. 13 κ)": inherent_noise(
            x, noise_std(x, FIG3, kappa="as_printed"), FIG3
        ).per_feature[:, 0],
    }
    means = {name: float(curve.mean()) for name, curve in curves.items()}
    every = n // 400
    path = line_plot(
        ctx.figure_path("adaptgrad_figure3"),
        x[::every, 0].tolist(),
        {f"{k} (mean {means[k]:.4f})": v[::every].tolist() for k, v in curves.items()},
        xlabel="feature value x_i (ImageNet-normalised range [−2.12, 2.64])",
        ylabel="out-of-bounds probability A_i",
        title="Inherent noise per feature (Figure 3 setting)",
    )
    return means, ctx.relative(path)


def _methods(
    model: nn.Module, bounds, samples: int, steps: int, seed: int, batch_limit: int = 256
) -> dict[str, Explain]:
    """Grad / SG / AG and the GI, IG(B), IG(W) families (Zhou et al. 2025, Table 2 naming).

    No forward pass takes more than ``batch_limit`` images (noise copies and path steps)."""
    sigma = smoothgrad_std(bounds)
    low, high = bounds

    def copies(x, kw) -> int:
        # noisy copies per pass: IG inside the tunnel multiplies each copy by its steps
        return max(1, batch_limit // (len(x) * (steps if "n_steps" in kw else 1)))

    def sg(method):
        return lambda x, t, **kw: SeededNoiseTunnel(method).attribute(
            x, nt_samples=samples, nt_samples_batch_size=copies(x, kw),
            stdevs=_channelwise(sigma), target=t, seed=seed, **kw,
        )  # fmt: skip

    def ag(method):
        return lambda x, t, **kw: AdaptGrad(method, bounds).attribute(
            x, nt_samples=samples, nt_samples_batch_size=copies(x, kw), target=t, seed=seed,
            **kw,
        )  # fmt: skip

    def ig_kw(value, x):
        # black (x_min) or white (x_max) image of x's shape as the IG baseline
        image = _channelwise(torch.as_tensor(value)).to(x).expand_as(x).contiguous()
        return {"baselines": image, "n_steps": steps, "internal_batch_size": batch_limit}

    grad, gi, ig = Saliency(model), InputXGradient(model), IntegratedGradients(model)
    return {
        "Grad": lambda x, t: grad.attribute(x, target=t, abs=False),
        "SG": lambda x, t: sg(grad)(x, t, abs=False),
        "AG": lambda x, t: ag(grad)(x, t, abs=False),
        "GI": lambda x, t: gi.attribute(x, target=t),
        "S-GI": lambda x, t: sg(gi)(x, t),
        "A-GI": lambda x, t: ag(gi)(x, t),
        "IG(B)": lambda x, t: ig.attribute(x, target=t, **ig_kw(low, x)),
        "A-IG(B)": lambda x, t: ag(ig)(x, t, **ig_kw(low, x)),
        "IG(W)": lambda x, t: ig.attribute(x, target=t, **ig_kw(high, x)),
        "A-IG(W)": lambda x, t: ag(ig)(x, t, **ig_kw(high, x)),
    }


def _channelwise(value):
    """Per-channel 1-D tensors as (1, C, 1, 1) so they broadcast against images."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return value.view(1, -1, 1, 1)
    return value


def _noise_rows(name: str, images: torch.Tensor, bounds, gen: torch.Generator) -> list[list]:
    """Analytic and empirical (32 draws per feature) inherent noise of SG and AG."""
    low = _channelwise(bounds[0]).to(images)
    high = _channelwise(bounds[1]).to(images)
    stds = {
        "SG α=0.2": torch.as_tensor(_channelwise(smoothgrad_std(bounds))).to(images),
        "AG c=0.95 (code κ)": noise_std(images, bounds),
        "AG c=0.95 (eq. 13 κ)": noise_std(images, bounds, kappa="as_printed"),
    }
    rows = []
    for method, std in stds.items():
        analytic = inherent_noise(images, std, bounds)
        draws = torch.randn((32, *images.shape), generator=gen, dtype=images.dtype)
        samples = images + draws.to(images.device) * std
        empirical = ((samples < low) | (samples > high)).double().mean().item()
        rows.append([name, method, float(analytic.mean), empirical])
    return rows


def _sparseness(maps: dict[str, torch.Tensor], model, images, labels) -> dict[str, np.ndarray]:
    """Quantus Sparseness (Chalasani et al.; Gini of |a|, higher is sparser), per image."""
    import quantus

    metric = quantus.Sparseness(disable_warnings=True, display_progressbar=False)
    x, y = images.detach().cpu().numpy(), labels.detach().cpu().numpy()
    out = {}
    for name, a in maps.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = metric(
                model=model,
                x_batch=x,
                y_batch=y,
                a_batch=a.cpu().numpy(),
                device=str(images.device),
            )
        out[name] = np.asarray(scores, dtype=np.float64)
    return out


def _bars(ctx: ReportContext, rows: list[list]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [f"{r[0]}\n{r[1]}" for r in rows]
    positions = np.arange(len(rows))
    ax.bar(positions - 0.2, [r[2] for r in rows], width=0.4, label="analytic (eq. 9/10)")
    ax.bar(positions + 0.2, [r[3] for r in rows], width=0.4, label="empirical (32 draws)")
    ax.axhline(0.05, color="grey", linestyle="--", linewidth=1, label="1 − c = 0.05")
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, fontsize=6)
    ax.set_ylabel("fraction of noisy features out of bounds")
    ax.set_title("Inherent noise on the report's images")
    ax.legend(fontsize=7)
    return ctx.save_figure(fig, "adaptgrad_inherent_noise", dpi=120)


def run(ctx: ReportContext) -> Section:
    means, fig3 = _figure3(ctx)
    oracle_error = max(abs(means[k] - ORACLE[k]) for k in ORACLE)
    gen = ctx.generator(30)
    # A-IG costs samples × steps gradients per image: sizes a 224-pixel ImageNet network
    # explains within the report's budget (Table 2's section evaluates these families in full)
    samples, steps = ctx.size(8, 4), ctx.size(8, 6)
    images = ctx.images[: ctx.size(4, 4)]  # the report's own images (any model)
    with torch.no_grad():
        image_target = ctx.model(images).argmax(1)
    methods = _methods(ctx.model, ctx.bounds, samples, steps, ctx.seed, ctx.batch_limit)
    skipped = []
    if ctx.large_inputs and not ctx.quick:
        # A-IG costs samples × steps backward passes per image; on an ImageNet-sized network the
        # IG families are scored in the Table 2 section (on the bundled EfficientNet-Lite0)
        skipped = [
            "IG(B), A-IG(B), IG(W), A-IG(W): left to the AdaptGrad Table 2 section "
            "(samples × steps backward passes per image on ImageNet-sized inputs)"
        ]
        methods = {k: v for k, v in methods.items() if "IG" not in k}
    image_maps = {name: explain(images, image_target).detach() for name, explain in methods.items()}
    figures = [fig3]
    figures.append(
        ctx.relative(
            heatmap_grid(
                ctx.figure_path("adaptgrad_images"),
                images[: ctx.n_show],
                {k: v[: ctx.n_show] for k, v in image_maps.items()},
                title=", ".join(image_maps),
            )
        )
    )

    captions = [
        "Inherent noise A(x) per feature over the paper's Figure-3 range: SmoothGrad's "
        "noise leaves the data range near the bounds, AdaptGrad's stays at ≤ 1 − c.",
        "Maps of each family on the model under study (columns in pairs: base, SmoothGrad, "
        "AdaptGrad).",
    ]
    noise_rows = _noise_rows("report images", images, ctx.bounds, gen)
    if ctx.is_digits:  # digits are no photos: also measure on photos, with a larger net
        photos = ctx.natural_images[: ctx.size(2, 1)]
        photo_bounds = tuple(b.to(photos) for b in imagenet_bounds(photos.dtype))
        resnet = torchvision_model("resnet18", seed=ctx.seed).to(ctx.device)
        with torch.no_grad():
            photo_target = resnet(photos).argmax(1)
        keep = ("Grad", "SG", "AG", "A-GI", "A-IG(B)", "A-IG(W)")
        photo_methods = _methods(resnet, photo_bounds, ctx.size(8, 2), ctx.size(8, 4), ctx.seed)
        photo_maps = {k: photo_methods[k](photos, photo_target).detach() for k in keep}
        figures.append(
            ctx.relative(
                heatmap_grid(
                    ctx.figure_path("adaptgrad_photos"),
                    photos,
                    photo_maps,
                    title="Random-init resnet18 on scikit-image photos",
                )
            )
        )
        captions.append("Random-init resnet18 on scikit-image photos (ImageNet-normalised).")
        noise_rows += _noise_rows("photos", photos, photo_bounds, gen)
    figures.append(_bars(ctx, noise_rows))
    captions.append(
        "Analytic vs measured fraction of noisy features out of bounds; grey line: 1 − c."
    )

    per_image = _sparseness(image_maps, ctx.model, images, image_target)
    sparse = {k: float(v.mean()) for k, v in per_image.items()}
    by = {(r[0], r[1]): r for r in noise_rows}
    claim = build_claim(means, oracle_error, by, per_image, len(images), ctx.seed)
    verdict = claim.decide()
    oracle_table = markdown_table(
        ["setting", "paper prints", "closed-form oracle", "this run", "|error|"],
        [[k, PAPER[k], ORACLE[k], means[k], abs(means[k] - ORACLE[k])] for k in ORACLE],
    )
    noise_table = markdown_table(
        ["images", "noise", "analytic A", "empirical A"], [list(r) for r in noise_rows]
    )
    sparse_table = markdown_table(
        ["method", "Sparseness (↑), mean over images"], [[k, v] for k, v in sparse.items()]
    )
    sg_images = by[("report images", "SG α=0.2")][3]
    ag_images = by[("report images", "AG c=0.95 (code κ)")][3]
    on_photos = (
        f"; on the photos: SG {by[('photos', 'SG α=0.2')][3]:.3f} vs AG "
        f"{by[('photos', 'AG c=0.95 (code κ)')][3]:.3f}"
        if ("photos", "SG α=0.2") in by
        else ""
    )
    return Section(
        key=KEY,
        title="AdaptGrad: smoothing without inherent noise (Zhou et al. 2025)",
        claim=CLAIM,
        finding=(
            f"Figure-3 oracle reproduced to {oracle_error:.1e} (SG {means['SG α=0.2']:.6f}, "
            f"AG {means['AG c=0.95 (code κ)']:.6f} with the code's κ, "
            f"{means['AG c=0.95 (eq. 13 κ)']:.6f} with eq. 13's; the paper prints 0.01424, "
            f"which matches neither). Measured inherent noise (noise actually drawn, 32 draws "
            f"per feature) on the report's images: SG {sg_images:.3f} vs AG {ag_images:.3f}"
            f"{on_photos}. Sparseness (mean over {len(images)} images): "
            + ", ".join(f"{k} {v:.4f}" for k, v in sparse.items())
            + ". Table 2 of the paper used ImageNet VGG16/ResNet50/InceptionV3; this is a "
            f"small sample on {ctx.model_name}. Verdict: {verdict.outcome}."
        ),
        verdict=claim,
        skipped=skipped,
        figures=figures,
        captions=captions,
        tables=[oracle_table, noise_table, sparse_table],
        numbers={
            "figure3_means": means,
            "figure3_oracle_max_abs_error": oracle_error,
            "inherent_noise": [
                {"images": r[0], "noise": r[1], "analytic": r[2], "empirical": r[3]}
                for r in noise_rows
            ],
            "sparseness": sparse,
            "nt_samples": samples,
        },
    )


CLAIM = (
    "Zhou et al. (2025, AdaptGrad): SmoothGrad's isotropic noise (σ = 0.2·range) sends ~16 % of "
    "the sampled feature values outside the data range (Figure 3: 0.1596); AdaptGrad's "
    "per-feature σ (eq. 13, c = 0.95) keeps this inherent noise below 1 − c (Figure 3: 0.01424), "
    "and its maps are sparser than SmoothGrad's and than the unsmoothed baselines, with at "
    "most one exception (Table 2, Sparseness). Measured: the noise AdaptGrad actually draws "
    "(not the σ it was built from), and Sparseness per image with a 95 % bootstrap CI."
)
C_LEVEL = 0.95
PAPER_AG = 0.01424


def build_claim(means, oracle_error, noise, sparse, n_images, seed) -> Claim:
    """Criteria: Figure-3 oracle, measured inherent noise, printed number, Sparseness pairs."""
    claim = Claim(CLAIM)
    claim.add(Criterion("Figure 3", "|our mean − closed-form oracle|", "<", 1e-5, core=True,
                        value=oracle_error))  # fmt: skip
    claim.add(Criterion("Figure 3", "|AG mean (code κ) − paper's 0.01424|", "<", 1e-3,
                        value=abs(means["AG c=0.95 (code κ)"] - PAPER_AG)))  # fmt: skip
    for label in dict.fromkeys(images for images, _ in noise):
        sg, ag = noise[(label, "SG α=0.2")], noise[(label, "AG c=0.95 (code κ)")]
        claim.add(Criterion(f"AG on {label}", "measured out-of-bounds fraction minus SG's", "<",
                            0.0, core=True, value=ag[3] - sg[3]))  # fmt: skip
        claim.add(Criterion(f"AG on {label}", "measured out-of-bounds fraction", "<=",
                            1 - C_LEVEL + 0.005, value=ag[3]))  # fmt: skip

    def paired(better: str, worse: str) -> None:
        if better not in sparse or worse not in sparse:
            return
        diff = sparse[better] - sparse[worse]
        claim.add(
            Criterion(
                better, f"Sparseness minus {worse}'s", ">", 0.0, value=float(diff.mean()),
                ci=bootstrap_ci(diff, "mean", seed=seed) if n_images > 1 else None,
            )
        )  # fmt: skip

    for ag, sg in (("AG", "SG"), ("A-GI", "S-GI")):
        paired(ag, sg)
    for ag, base in (("AG", "Grad"), ("A-GI", "GI"), ("A-IG(B)", "IG(B)"), ("A-IG(W)", "IG(W)")):
        paired(ag, base)
    return claim
