"""A pretrained ImageNet network: EfficientNet-Lite0 on labelled ImageNet photos.

Run: ``python -m examples.imagenet_pretrained [--out FOLDER]`` (needs the ``real`` extra, about a
minute on a CPU). The network and the 20 labelled ImageNet photos ship inside registry packages,
so nothing is downloaded. The inputs are ImageNet-normalised, so AdaptGrad and InherentNoise get
the per-channel bounds of the normalised pixel range (``captum_ext.data.imagenet_bounds``).

Saves ``imagenet_pretrained.png`` (photos with Saliency, SmoothGrad and AdaptGrad maps of the
predicted class) and prints the top-1 accuracy on the photos and a Quantus table: random-logit
SSIM (lower = the map depends on the explained class), inherent noise (probability that a noisy
draw leaves the valid pixel range) and Quantus' Sparseness (higher = more concentrated).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import quantus
import torch
from captum.attr import Saliency

from captum_ext import AdaptGrad, SeededNoiseTunnel
from captum_ext.data import imagenet_bounds
from captum_ext.visualization import heatmap_grid
from captum_ext.zoo import efficientnet_lite0, imagenet_samples
from quantus_metrics import InherentNoise, RandomLogitSSIM, explain_func_from

N_PHOTOS = 4
SAMPLES = 8  # noise draws per photo (SmoothGrad, AdaptGrad)


def _out_dir(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="captum-ext on a pretrained ImageNet network")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "figures")
    return parser.parse_known_args(argv)[0].out


def main(out: str | Path | None = None) -> dict:
    out = Path(out) if out is not None else Path(__file__).parent / "figures"
    model = efficientnet_lite0(pretrained=True)
    images, labels = imagenet_samples()
    low, high = imagenet_bounds()
    with torch.no_grad():
        predicted = model(images).argmax(1)
    accuracy = float((predicted == labels).double().mean())
    print(f"EfficientNet-Lite0: top-1 {accuracy:.2f} on {len(labels)} labelled ImageNet photos")

    x, target = images[:N_PHOTOS], predicted[:N_PHOTOS]
    # SmoothGrad's σ = 0.15·(x_max − x_min) per channel; AdaptGrad adapts it to each pixel
    sigma = (0.15 * (high - low)).view(1, -1, 1, 1)
    smooth = SeededNoiseTunnel(Saliency(model))
    adapt = AdaptGrad(Saliency(model), bounds=(low, high))
    maps = {
        "Saliency": Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=False),
        "SmoothGrad": smooth.attribute(
            x, nt_samples=SAMPLES, stdevs=sigma, seed=0, target=target, abs=False
        ),
        "AdaptGrad": adapt.attribute(x, nt_samples=SAMPLES, seed=0, target=target, abs=False),
    }
    figure = heatmap_grid(
        maps,
        x,
        bounds=(low.view(-1, 1, 1), high.view(-1, 1, 1)),
        row_labels=[f"class {int(t)}" for t in target],
        path=out / "imagenet_pretrained.png",
    )
    print(f"figure: {out / 'imagenet_pretrained.png'} ({len(figure.axes)} panels)")

    xai = {
        "Saliency": explain_func_from(Saliency, abs=False),
        "SmoothGrad": explain_func_from(
            lambda m: SeededNoiseTunnel(Saliency(m)),
            nt_samples=SAMPLES,
            stdevs=sigma,
            seed=0,
            abs=False,
        ),
        "AdaptGrad": explain_func_from(
            lambda m: AdaptGrad(Saliency(m), bounds=(low, high)),
            nt_samples=SAMPLES,
            seed=0,
            abs=False,
        ),
    }
    table = quantus.evaluate(
        metrics={
            "logit SSIM": RandomLogitSSIM(n_resamples=1000),
            "inherent noise": InherentNoise(bounds=(low, high), n_draws=SAMPLES),
            "sparseness": quantus.Sparseness(disable_warnings=True),
        },
        xai_methods=xai,
        model=model,
        x_batch=x.numpy(),
        y_batch=target.numpy(),
        explain_func_kwargs={},
        agg_func=lambda scores: scores,
    )
    summary = {
        method: {name: float(np.mean(values)) for name, values in row.items()}
        for method, row in table.items()
    }
    print(f"\n{'method':<11} {'logit SSIM ↓':>13} {'inherent noise ↓':>17} {'sparseness ↑':>13}")
    for method, row in summary.items():
        print(
            f"{method:<11} {row['logit SSIM']:13.3f} {row['inherent noise']:17.4f} "
            f"{row['sparseness']:13.3f}"
        )
    return {"accuracy": accuracy, **summary}


if __name__ == "__main__":
    main(_out_dir())
