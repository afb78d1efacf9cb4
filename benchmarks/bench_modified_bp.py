"""Modified-backprop attributions vs a plain gradient, and pattern fitting throughput.

RectGrad, PatternNet, PatternAttribution and Captum's GuidedBackprop on torchvision vgg16 and
resnet50 (random init, batch 4, 224×224, CPU), each as a ratio to a plain gradient (Captum
``Saliency(abs=False)``) timed in the same process. Attribution speed does not depend on the
pattern values, so the pattern methods load the weights as patterns instead of fitting on
224×224 data. Pattern fitting throughput is measured on the digits CNN and digits training set.
Quick mode: resnet18 at 32×32, batch 1, one repeat, 16 digits.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from captum.attr import GuidedBackprop, Saliency

from benchmarks._timing import best_time, print_rows, row
from captum_ext import PatternAttribution, PatternNet, RectGrad
from captum_ext.zoo import DigitsDataset, SmallCNN, torchvision_model

TARGET = 1.5


def _weights_as_patterns(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: module.weight.detach()
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
    }


def _attribution_rows(name: str, size: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    model = torchvision_model(name, n_classes=1000, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen)
    target = torch.arange(batch)
    patterns = _weights_as_patterns(model)
    methods = {
        "RectGrad (q=98)": RectGrad(model),
        "PatternNet": PatternNet(model).load_patterns(patterns),
        "PatternAttribution": PatternAttribution(model).load_patterns(patterns),
        "Captum GuidedBackprop": GuidedBackprop(model),
    }
    baseline = best_time(
        lambda: Saliency(model).attribute(x, target=target, abs=False), repeats=repeats
    )
    label = f"{name} b{batch} {size}²"
    rows = [row("modified_bp", label, "gradient", baseline, "gradient", baseline)]
    for method, explainer in methods.items():
        seconds = best_time(lambda e=explainer: e.attribute(x, target=target), repeats=repeats)
        rows.append(row("modified_bp", label, method, seconds, "gradient", baseline, TARGET))
    return rows


def _fit_throughput(n_images: int, repeats: int) -> dict[str, Any]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCNN(1, 10).eval()
    images = DigitsDataset("train").tensors()[0][:n_images]
    seconds = best_time(
        lambda: PatternAttribution(model).fit(images, progress=False, batch_size=64),
        repeats=repeats,
        warmup=0,
    )
    result = row("pattern_fit", "digits CNN", f"fit {n_images} images", seconds, "-", seconds)
    result["images_per_second"] = n_images / seconds
    return result


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark; ``quick=True`` is a seconds-long smoke run."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()
    if quick:
        models, fit_images, repeats = [("resnet18", 32, 1)], 16, 1
    else:
        models, fit_images, repeats = [("vgg16", 224, 4), ("resnet50", 224, 4)], 256, 2
    rows = []
    for name, size, batch in models:
        rows += _attribution_rows(name, size, batch, repeats=repeats)
        print_rows(rows[-5:])  # progress: one table per model
    fit = _fit_throughput(fit_images, repeats=1)
    rows.append(fit)
    print("\nall rows:")
    print_rows(rows)
    print(
        f"\npattern fitting throughput: {fit['images_per_second']:.1f} images/s "
        f"(digits CNN, 32×32); total {time.perf_counter() - start:.1f} s"
    )
    return rows


if __name__ == "__main__":
    main()
