"""AdaptGrad vs Captum's NoiseTunnel (SmoothGrad) on digits: inherent noise and the maps.

Run: ``.venv/bin/python examples/adaptgrad_vs_noisetunnel.py``. It explains four test digits
with the cached trained CNN, prints the inherent noise (seed 003, eq. 9/10) of SmoothGrad
(σ = 0.2·range) and AdaptGrad (c = 0.95), analytic and as measured on the actual noisy samples,
and how much each smoothed map differs from the plain gradient.
"""

from __future__ import annotations

import torch
from captum.attr import NoiseTunnel, Saliency

from captum_ext import AdaptGrad
from captum_ext.noise.adaptgrad import inherent_noise, noise_std, smoothgrad_std
from captum_ext.zoo import DigitsDataset, train_digits_cnn


def main() -> None:
    model = train_digits_cnn(progress=False).model.eval()
    data = DigitsDataset("test")
    images, labels = data.images[:4], data.labels[:4]
    bounds = data.bounds  # per-channel (0, 1), as MNIST in the authors' code

    grad = Saliency(model).attribute(images, target=labels, abs=False)
    sg_sigma = float(smoothgrad_std(bounds, alpha=0.2))
    with torch.random.fork_rng(devices=[]):  # Captum draws from the global RNG
        torch.manual_seed(0)
        sg = NoiseTunnel(Saliency(model)).attribute(
            images, nt_samples=32, stdevs=sg_sigma, target=labels, abs=False
        )
    ag = AdaptGrad(Saliency(model), bounds, confidence=0.95).attribute(
        images, nt_samples=32, target=labels, abs=False, seed=0
    )

    ag_sigma = noise_std(images, bounds, confidence=0.95)
    gen = torch.Generator().manual_seed(1)
    print("method      analytic A  empirical A  cos(map, grad)")
    for name, sigma, smap in (("SmoothGrad", sg_sigma, sg), ("AdaptGrad", ag_sigma, ag)):
        analytic = inherent_noise(images, sigma, bounds).mean.item()
        samples = images + torch.randn((64, *images.shape), generator=gen) * sigma
        empirical = ((samples < 0) | (samples > 1)).float().mean().item()
        cosine = torch.nn.functional.cosine_similarity(smap.flatten(1), grad.flatten(1)).mean()
        print(f"{name:<11} {analytic:10.4f}  {empirical:11.4f}  {cosine.item():14.3f}")


if __name__ == "__main__":
    main()
