"""Quick start: explain a trained CNN, save a heatmap figure, evaluate with Quantus.

Run: ``python -m examples.quick_start [--out FOLDER]`` (under a minute on a CPU; the digits CNN
is trained once in about 30 s and cached). Saves ``quick_start.png`` (inputs, LRP, AdaptGrad and
Saliency maps) and prints a Quantus table: randomisation SSIM (lower = the map depends on the
weights, as it should), random-logit SSIM (lower = the map depends on the explained class) and
inherent noise (probability that a noisy draw leaves the data range; 0 for noise-free methods).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import quantus
from captum.attr import Saliency

from captum_ext import LRP, AdaptGrad
from captum_ext.lrp import EpsilonPlus
from captum_ext.visualization import heatmap_grid
from captum_ext.zoo import DigitsDataset, train_digits_cnn
from quantus_metrics import (
    InherentNoise,
    ModelRandomisationSSIM,
    RandomLogitSSIM,
    explain_func_from,
)


def _out_dir(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="captum-ext quick start")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "figures")
    return parser.parse_known_args(argv)[0].out


def main(out: str | Path | None = None) -> dict:
    out = Path(out) if out is not None else Path(__file__).parent / "figures"
    model = train_digits_cnn(progress=False).model.eval()
    x, y = (t[:8] for t in DigitsDataset("test").tensors())

    # 1. explain: the methods are Captum attributions
    lrp = LRP(model, rule_set=EpsilonPlus())
    adaptgrad = AdaptGrad(Saliency(model), bounds=(0.0, 1.0))
    maps = {
        "LRP-ε+": lrp.attribute(x, target=y),
        "AdaptGrad": adaptgrad.attribute(x, target=y, nt_samples=16, seed=0, abs=False),
        "Saliency": Saliency(model).attribute(x.clone().requires_grad_(), target=y, abs=False),
    }
    print(f"explained {len(x)} digits with {lrp!r}")

    # 2. draw: batches go in as the methods return them (N, C, H, W)
    figure = heatmap_grid(
        {name: m[:4] for name, m in maps.items()}, x[:4], sign="all",
        row_labels=[f"label {int(t)}" for t in y[:4]], path=out / "quick_start.png",
    )  # fmt: skip
    print(f"figure: {out / 'quick_start.png'} ({len(figure.axes)} panels)")

    # 3. evaluate: the metrics are Quantus metrics
    xai = {
        "LRP-ε+": explain_func_from(lambda m: LRP(m, rule_set=EpsilonPlus())),
        "AdaptGrad": explain_func_from(
            lambda m: AdaptGrad(Saliency(m), bounds=(0.0, 1.0)), nt_samples=8, seed=0, abs=False
        ),
        "Saliency": explain_func_from(Saliency, abs=False),
    }
    table = quantus.evaluate(
        metrics={
            "rand. SSIM": ModelRandomisationSSIM(
                return_average_correlation=True, n_resamples=1000, display_progressbar=False
            ),
            "logit SSIM": RandomLogitSSIM(n_resamples=1000),
            "inherent noise": InherentNoise(bounds=(0.0, 1.0), n_draws=8),
        },
        xai_methods=xai,
        model=model,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        explain_func_kwargs={},
        agg_func=lambda scores: scores,
    )
    summary = {
        method: {
            "rand. SSIM": float(np.mean(row["rand. SSIM"])),
            "logit SSIM": float(np.mean(row["logit SSIM"])),
            "inherent noise": float(np.mean(row["inherent noise"])),
        }
        for method, row in table.items()
    }
    print(f"\n{'method':<10} {'rand. SSIM ↓':>13} {'logit SSIM ↓':>13} {'inherent noise ↓':>17}")
    for method, row in summary.items():
        print(
            f"{method:<10} {row['rand. SSIM']:13.3f} {row['logit SSIM']:13.3f} "
            f"{row['inherent noise']:17.4f}"
        )
    return summary


if __name__ == "__main__":
    main(_out_dir())
