"""RectGrad, PatternNet, PatternAttribution and DeepLift on the digits CNN, in a few lines.

Fits the patterns on part of the digits training set, explains four test digits with each
method (as ordinary Captum attributions, also inside a NoiseTunnel) and shows how the CSC metric
injects relevance through ``modified_backward``. Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from captum.attr import DeepLift, NoiseTunnel

from captum_ext import PatternAttribution, PatternNet, RectGrad, modified_backward
from captum_ext.visualization import heatmap_grid
from captum_ext.zoo import DigitsDataset, train_digits_cnn

FIGURES = Path(__file__).parent / "figures"


def _out_dir(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=FIGURES, help="folder for the figure (default: %(default)s)"
    )
    return parser.parse_known_args(argv)[0].out


def main(out: str | Path = FIGURES) -> None:
    model = train_digits_cnn(progress=False).model.eval()
    train_images = DigitsDataset("train").tensors()[0]
    images, labels = (t[:4] for t in DigitsDataset("test").tensors())

    # Patterns: one streaming pass over (part of) the training data, float64 statistics.
    pattern_attribution = PatternAttribution(model).fit(
        train_images, pattern_type="relu", max_batches=1, batch_size=32, progress=False
    )
    pattern_net = PatternNet(model).load_patterns(pattern_attribution.patterns_state_dict())

    explanations = {
        "RectGrad (q=98)": RectGrad(model, percentile=98.0).attribute(images, target=labels),
        "PatternNet": pattern_net.attribute(images, target=labels),
        "PatternAttribution": pattern_attribution.attribute(images, target=labels),
        "SmoothGrad-RectGrad": NoiseTunnel(RectGrad(model)).attribute(
            images, target=labels, nt_samples=4, stdevs=0.1
        ),
    }
    # A scale-free summary: the share of each map's |mass| on the digit's strokes (pixels > 0.5).
    # Raw sums are not comparable across methods: PatternNet returns the estimated *signal* in
    # input space, not a relevance, and it has no fixed scale (each unit's pattern is divided by
    # wᵀcov(x, y), which can be tiny, and the layers compound): ~1e10 on this CNN is ordinary.
    strokes = images > 0.5
    print(f"{'method':>20}  {'|map| on strokes':>16}  {'raw |sum|':>10}")
    for name, attribution in explanations.items():
        mass = attribution.detach().abs()
        share = (mass * strokes).flatten(1).sum(1) / mass.flatten(1).sum(1)
        print(f"{name:>20}  {share.mean():16.1%}  {mass.sum():10.3g}")
    print(f"{'(strokes cover)':>20}  {strokes.double().mean():16.1%}")
    path = Path(out) / "rectgrad_and_patterns.png"
    heatmap_grid(explanations, images, sign="all", path=path)
    print(f"figure: {path}")

    # What CSC does: inject a random relevance vector at the logits, read it at the input.
    relevance = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    print("\nrandom relevance at the logits, read at the input (what CSC measures):")
    for method in (RectGrad(model), pattern_attribution, DeepLift(model)):
        with modified_backward(method) as forward:
            leaf = images.clone().requires_grad_(True)
            (propagated,) = torch.autograd.grad(forward(leaf), leaf, relevance)
        print(f"{type(method).__name__:>20}: propagated relevance norm {propagated.norm():.4f}")


if __name__ == "__main__":
    main(_out_dir())
