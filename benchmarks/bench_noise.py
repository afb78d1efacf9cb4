"""AdaptGrad and NoiseGrad against Captum's NoiseTunnel at the same sample count.

Full size: resnet50 (random init), a batch of 4 scikit-image photos at 224×224, CPU,
nt_samples = 10, Saliency as the wrapped method. AdaptGrad's only extra work is σ (eq. 13) and
the bounds check, so its target is ratio ≤ 1.05. NoiseGrad uses 10 model draws against
NoiseTunnel's 10 input draws (same number of forward/backward passes, plus weight noise and
one deep copy); it has no target. ``quick=True`` uses a tiny CNN on 32×32 inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import NoiseTunnel, Saliency

from benchmarks._timing import best_time, print_rows, row
from captum_ext.noise.adaptgrad import AdaptGrad, smoothgrad_std
from captum_ext.noise.noisegrad import NoiseGrad
from captum_ext.zoo import SmallVGG, imagenet_bounds, natural_image_batch, torchvision_model

BENCH = "noise"


def _workload(quick: bool) -> tuple[str, torch.nn.Module, torch.Tensor, int, int]:
    if quick:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = SmallVGG(3, 10, width=4).eval()
        images = natural_image_batch(size=32)[:2]
        return "SmallVGG(w=4) 2×3×32×32", model, images, 4, 1
    model = torchvision_model("resnet50", n_classes=1000, seed=0)
    return "resnet50 4×3×224×224", model, natural_image_batch(size=224), 10, 1


def main(quick: bool = False) -> list[dict[str, Any]]:
    name, model, images, samples, warmup = _workload(quick)
    repeats = 1 if quick else 3
    bounds = imagenet_bounds()
    with torch.no_grad():
        target = model(images).argmax(1)
    # SmoothGrad's σ for Captum (scalar bounds of the authors' code: the widest channel range)
    sigma = float(smoothgrad_std((bounds[0].min().item(), bounds[1].max().item())))
    kwargs = {"target": target, "nt_samples": samples, "abs": False}

    def captum() -> None:
        with torch.random.fork_rng(devices=[]):  # Captum draws from the global RNG
            NoiseTunnel(Saliency(model)).attribute(images, stdevs=sigma, **kwargs)

    def adaptgrad() -> None:
        AdaptGrad(Saliency(model), bounds).attribute(images, seed=0, **kwargs)

    def noisegrad() -> None:
        NoiseGrad(Saliency(model), n_models=samples).attribute(
            images, target=target, abs=False, seed=0, progress=False
        )

    # interleaved rounds: the machine's load drifts, so each round times all three back to back
    fns = {"captum": captum, "adaptgrad": adaptgrad, "noisegrad": noisegrad}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {key: float("inf") for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            best[key] = min(best[key], best_time(fn, repeats=1, warmup=0))
    base, ours, ng = best["captum"], best["adaptgrad"], best["noisegrad"]
    label = f"NoiseTunnel(Saliency), {samples} samples"
    rows = [
        row(BENCH, name, f"AdaptGrad(Saliency), {samples} samples", ours, label, base, 1.05),
        row(BENCH, name, f"NoiseGrad(Saliency), {samples} models", ng, label, base),
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
