"""Zhou et al. (2025), AdaptGrad Table 2 on a pretrained ImageNet EfficientNet-Lite0.

Every row family of the paper's table — Grad, SG, AG; GI, S-GI, A-GI; IG(W), S-IG(W), A-IG(W);
IG(B), S-IG(B), A-IG(B); NG, S-NG, A-NG — on foolbox's ImageNet photos (``_efficientnet.py``)
instead of VGG16 / InceptionV3 / ResNet50, scored with Quantus' Sparseness (Chalasani et al.,
2020; higher = sparser) and, as a second view, the Expected Frequency (Mehrpanah et al., 2025).
The IG rows also get the paper's Information Level: the area under the Softmax Information Curve
of Kapishnikov et al. (2019) (``quantus_metrics.SoftmaxInformationCurve``; the Accuracy
Information Curve beside it), pixels ranked by the channel-summed |attribution|, the reference
implementation's 13 thresholds and 1 % random mask, this project's pull–push bokeh images.

Settings (reduced for a CPU report, paper values in brackets): N = 4 noise samples [50, the
authors' code default], IG steps 8, NoiseGrad models M = 2 [10], 10 photos at 224 px (``SIZES``;
quick run: 2 photos at 96 px, N = 2, 4 steps), SG σ = 0.2 of the range,
AdaptGrad c = 0.95 with the global bounds of the TF-Lite input range.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import quantus
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency

from captum_ext.noise.adaptgrad import AdaptGrad, SeededNoiseTunnel
from captum_ext.noise.noisegrad import NoiseGrad
from captum_ext_report.context import ReportContext, Section, fixed_workload_skip
from captum_ext_report.plotting import heatmap_grid, markdown_table
from captum_ext_report.sections._common import FixedSeed, SignedSaliency, paired_bootstrap
from captum_ext_report.sections._efficientnet import BOUNDS, efficientnet_lite0, imagenet_photos
from quantus_metrics.information_level import information_curves
from quantus_metrics.spectral import expected_frequency

ORDER = 36
KEY = "adaptgrad_table2"

FAMILIES = ("Grad", "GI", "IG(W)", "IG(B)", "NG")
# Full-run sizes (CPU budget; the paper's code: N = 50 samples, M = 10 NoiseGrad models)
SIZES = {"photos": 10, "samples": 4, "steps": 8, "models": 2}
PAPER_SS = {  # Zhou et al. (2025), Table 2, Sparseness: VGG16, InceptionV3, ResNet50
    "Grad": (0.5421, 0.5546, 0.5626), "SG": (0.5334, 0.5422, 0.5536),
    "AG": (0.5608, 0.5621, 0.5659), "GI": (0.6198, 0.6152, 0.6304),
    "S-GI": (0.6074, 0.5994, 0.6176), "A-GI": (0.6487, 0.6425, 0.6479),
    "IG(W)": (0.6284, 0.7083, 0.6178), "S-IG(W)": (0.6229, 0.7562, 0.6171),
    "A-IG(W)": (0.6327, 0.7586, 0.6205), "IG(B)": (0.6391, 0.6348, 0.6288),
    "S-IG(B)": (0.6371, 0.6392, 0.6250), "A-IG(B)": (0.6397, 0.6439, 0.6266),
    "NG": (0.5519, 0.5566, 0.5626), "S-NG": (0.5551, 0.5734, 0.5591),
    "A-NG": (0.5823, 0.5917, 0.5738),
}  # fmt: skip
IL_FAMILIES = ("IG(W)", "IG(B)")
IL_CURVES = (("SIC", "softmax"), ("AIC", "accuracy"))
IL_ROWS = tuple(f"{p}{f}" for f in IL_FAMILIES for p in ("", "S-", "A-"))
PAPER_IL = {  # Zhou et al. (2025), Table 2, Information Level: VGG16, InceptionV3, ResNet50
    "IG(W)": (0.5635, 0.6677, 0.5491), "S-IG(W)": (0.5741, 0.7179, 0.5718),
    "A-IG(W)": (0.5846, 0.7221, 0.5849), "IG(B)": (0.5823, 0.6751, 0.5355),
    "S-IG(B)": (0.6035, 0.7166, 0.5731), "A-IG(B)": (0.6121, 0.7193, 0.5673),
}  # fmt: skip
CRITERION = (
    "Per family F: paired Sparseness difference A-F − S-F over photos; 95 % bootstrap interval "
    "above 0 → confirmed; mean above 0 but interval reaching 0 → partly confirmed; mean ≤ 0 → "
    "not confirmed. Information Level (IG(W), IG(B)): the same rule on the paired SIC-AUC "
    "difference A-F − S-F over the photos both curves score (no such photo → not tested). "
    "Overall, over the five Sparseness and the two Information Level verdicts: all confirmed "
    "→ confirmed; at least one with a positive mean → partly confirmed; none → not confirmed."
)


def _family_verdict(m: float, lo: float) -> str:
    return "confirmed" if lo > 0 else "partly confirmed" if m > 0 else "not confirmed"


def _information_level(model, x, y, maps, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """SIC and AIC AUC per photo for the IG rows (NaN where the curve excludes a photo).

    Pixels are ranked by the channel-summed |attribution|; both curves come from one set of
    bokeh images (pull–push fill, WebP-lossless information over the TF-Lite input range), and
    every row is scored on the same random masks (keyed to the photo's index and ``seed``).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in IL_ROWS:
        curves = information_curves(
            model, x, y, maps[name].abs(), curves=("softmax", "accuracy"), value_range=BOUNDS,
            seed=seed,
        )  # fmt: skip
        out[name] = {kind: curves[c].auc.cpu().numpy() for kind, c in IL_CURVES}
    return out


def _methods(model, samples: int, steps: int, n_models: int, seed: int, copies: int = 1):
    """The table's rows; ``copies``: noisy copies per forward pass (bounds the memory)."""
    low, high = BOUNDS
    sigma = 0.2 * (high - low)

    def sg(method, **options):
        return FixedSeed(SeededNoiseTunnel(method), seed, nt_samples=samples, stdevs=sigma,
                         nt_samples_batch_size=copies, **options)  # fmt: skip

    def ag(method, **options):
        return FixedSeed(AdaptGrad(method, bounds=BOUNDS), seed, nt_samples=samples,
                         nt_samples_batch_size=copies, **options)  # fmt: skip

    def ig(value):
        return {"baselines": value, "n_steps": steps, "internal_batch_size": 16}

    def ng(factory):
        return NoiseGrad(factory, model=model, n_models=n_models, std=0.2, seed=seed)

    grad, gi, igm = Saliency(model), InputXGradient(model), IntegratedGradients(model)
    plain = {
        "Grad": (grad, {"abs": False}),
        "GI": (gi, {}),
        "IG(W)": (igm, ig(high)),
        "IG(B)": (igm, ig(low)),
    }
    methods = {}
    for family, (method, options) in plain.items():
        methods[family] = FixedSeed(_Plain(method), seed, **options)
        methods["S-" + family if family != "Grad" else "SG"] = sg(method, **options)
        methods["A-" + family if family != "Grad" else "AG"] = ag(method, **options)
    methods["NG"] = ng(lambda m: FixedSeed(SignedSaliency(m), seed))
    methods["S-NG"] = ng(lambda m: sg(Saliency(m), abs=False))
    methods["A-NG"] = ng(lambda m: ag(Saliency(m), abs=False))
    return methods


class _Plain:
    """A Captum method that accepts (and ignores) a ``seed``, so every row composes alike."""

    def __init__(self, method) -> None:
        self.method = method

    def attribute(self, inputs, target=None, additional_forward_args=None, seed=None, **kw):
        return self.method.attribute(
            inputs, target=target, additional_forward_args=additional_forward_args, **kw
        )


def _sparseness(model, x, y, a) -> np.ndarray:
    metric = quantus.Sparseness(disable_warnings=True, display_progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(
            metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                   device="cpu")
        )  # fmt: skip


def run(ctx: ReportContext) -> Section:
    skipped = fixed_workload_skip(ctx, KEY, "AdaptGrad Table 2 families on EfficientNet-Lite0")
    if skipped is not None:
        return skipped
    start = time.perf_counter()
    size = ctx.size(224, 96)  # the network's own resolution (the paper: 224/299)
    photos, _ = imagenet_photos(size)
    model = efficientnet_lite0()
    n = ctx.size(SIZES["photos"], 2)
    x = photos[:n]
    with torch.no_grad():
        y = model(x).argmax(1)
    methods = _methods(
        model, ctx.size(SIZES["samples"], 2), ctx.size(SIZES["steps"], 4),
        SIZES["models"], ctx.seed, copies=max(1, 16 // n),
    )  # fmt: skip
    maps, sparse, ef = {}, {}, {}
    for name, method in methods.items():
        kwargs = {"progress": False} if isinstance(method, NoiseGrad) else {}
        a = method.attribute(x, target=y, **kwargs).detach()
        maps[name] = a
        sparse[name] = _sparseness(model, x, y, a)
        ef[name] = expected_frequency(a.double()).numpy()
    gen = ctx.generator(36)
    rows = []
    for name in methods:
        m, lo, hi = paired_bootstrap(torch.from_numpy(sparse[name]), gen)
        rows.append([name, m, lo, hi, *PAPER_SS[name], float(ef[name].mean())])
    verdicts, fam_rows = {}, []
    for family in FAMILIES:
        s_name = "SG" if family == "Grad" else f"S-{family}"
        a_name = "AG" if family == "Grad" else f"A-{family}"
        diff = torch.from_numpy(sparse[a_name] - sparse[s_name])
        m, lo, hi = paired_bootstrap(diff, gen)
        verdicts[family] = _family_verdict(m, lo)
        paper_wins = sum(a > s for a, s in zip(PAPER_SS[a_name], PAPER_SS[s_name]))
        fam_rows.append([family, m, lo, hi, f"{paper_wins}/3", verdicts[family]])
    il_start = time.perf_counter()
    il = _information_level(model, x, y, maps, ctx.seed)
    il_seconds = time.perf_counter() - il_start
    il_rows = [
        [name, float(np.nanmean(il[name]["SIC"])) if np.isfinite(il[name]["SIC"]).any()
         else float("nan"), int(np.isfinite(il[name]["SIC"]).sum()),
         float(np.nanmean(il[name]["AIC"])) if np.isfinite(il[name]["AIC"]).any()
         else float("nan"), *PAPER_IL[name]]
        for name in IL_ROWS
    ]  # fmt: skip
    il_fam_rows, il_verdicts = [], {}
    for family in IL_FAMILIES:
        diff = il[f"A-{family}"]["SIC"] - il[f"S-{family}"]["SIC"]
        diff = diff[np.isfinite(diff)]
        paper_wins = sum(a > s for a, s in zip(PAPER_IL[f"A-{family}"], PAPER_IL[f"S-{family}"]))
        if len(diff) == 0:
            il_verdicts[family] = "not tested"
            il_fam_rows.append([family, float("nan"), float("nan"), float("nan"), 0,
                                f"{paper_wins}/3", "not tested"])  # fmt: skip
            continue
        m, lo, hi = paired_bootstrap(torch.from_numpy(diff), gen)
        il_verdicts[family] = _family_verdict(m, lo)
        il_fam_rows.append([family, m, lo, hi, len(diff), f"{paper_wins}/3", il_verdicts[family]])
    values = list(verdicts.values()) + [v for v in il_verdicts.values() if v != "not tested"]
    if all(v == "confirmed" for v in values):
        overall = "confirmed"
    elif any(v != "not confirmed" for v in values):
        overall = "partly confirmed"
    else:
        overall = "not confirmed"
    table = markdown_table(
        ["method", "Sparseness", "95 % low", "95 % high", "paper VGG16", "paper InceptionV3",
         "paper ResNet50", "EF (mean)"],
        rows,
    )  # fmt: skip
    family_table = markdown_table(
        ["family", "A − S Sparseness", "95 % low", "95 % high", "paper: A > S", "verdict"],
        fam_rows,
    )
    il_table = markdown_table(
        ["method", "IL = SIC AUC (mean)", "photos scored", "AIC AUC (mean)", "paper IL VGG16",
         "paper IL InceptionV3", "paper IL ResNet50"],
        il_rows,
    )  # fmt: skip
    il_family_table = markdown_table(
        ["family", "A − S IL (SIC AUC)", "95 % low", "95 % high", "photos", "paper: A > S",
         "verdict"],
        il_fam_rows,
    )  # fmt: skip
    grid = heatmap_grid(
        ctx.figure_path("adaptgrad_table2_maps"),
        (x[: min(2, n)] * 0.5 / BOUNDS[1] + 0.5).clamp(0, 1),
        {k: v[: min(2, n)] for k, v in maps.items()},
        title="AdaptGrad Table 2 families on EfficientNet-Lite0 (foolbox ImageNet photos)",
        signed=False,
    )
    return Section(
        key=KEY,
        title=(
            "AdaptGrad Table 2 on EfficientNet-Lite0: Sparseness and Information Level per "
            "method family (Zhou 2025)"
        ),
        claim=(
            "AdaptGrad gives sparser maps than SmoothGrad in every method family (Grad, GI, "
            "IG(W), IG(B), NG), with one case slightly worse in the paper, and mostly a higher "
            "Information Level on the IG rows (the paper: A > S in 5 of 6 model × family "
            "cells). Criterion: " + CRITERION
        ),
        finding=(
            f"{n} photos at {size} px. Per family (A − S Sparseness): "
            + ", ".join(f"{r[0]} {r[1]:+.4f} [{r[2]:+.4f}, {r[3]:+.4f}] {r[5]}" for r in fam_rows)
            + ". Information Level (A − S SIC AUC): "
            + ", ".join(
                f"{r[0]} {r[1]:+.4f} [{r[2]:+.4f}, {r[3]:+.4f}] on {r[4]} photos {r[6]}"
                for r in il_fam_rows
            )
            + f" → **{overall}**. The paper's IL is on VGG16/InceptionV3/ResNet50 at full "
            "resolution, ours on EfficientNet-Lite0 at the reduced size: compare directions, "
            "not levels."
        ),
        confirmed=True if overall == "confirmed" else False if overall == "not confirmed" else None,
        outcome=overall,
        figures=[ctx.relative(grid)],
        tables=[table, family_table, il_table, il_family_table],
        numbers={
            "rows": rows,
            "families": fam_rows,
            "information_level": il_rows,
            "information_level_families": il_fam_rows,
            "information_level_seconds": il_seconds,
            "verdict": overall,
            "seconds": time.perf_counter() - start,
        },
    )
