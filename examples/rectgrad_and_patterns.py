"""RectGrad, PatternNet, PatternAttribution and DeepLift on the digits CNN, in a few lines.

Fits the patterns on part of the digits training set, explains four test digits with each
method (as ordinary Captum attributions, also inside a NoiseTunnel) and shows how the CSC metric
injects relevance through ``modified_backward``. Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import torch
from captum.attr import DeepLift, NoiseTunnel

from captum_ext import PatternAttribution, PatternNet, RectGrad, modified_backward
from captum_ext.zoo import DigitsDataset, train_digits_cnn


def main() -> None:
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
    for name, attribution in explanations.items():
        print(f"{name:>20}: shape {tuple(attribution.shape)}, |sum| {attribution.abs().sum():.4f}")

    # What CSC does: inject a random relevance vector at the logits, read it at the input.
    relevance = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    for method in (RectGrad(model), pattern_attribution, DeepLift(model)):
        with modified_backward(method) as forward:
            leaf = images.clone().requires_grad_(True)
            (propagated,) = torch.autograd.grad(forward(leaf), leaf, relevance)
        print(f"{type(method).__name__:>20}: propagated relevance norm {propagated.norm():.4f}")


if __name__ == "__main__":
    main()
