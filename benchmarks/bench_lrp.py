"""LRP speed: ours vs Captum's LRP, zennit and lxt, as ratios to a plain gradient.

torchvision models (random init), batch 4 at 224×224, CPU, float32, every method on the same
model and input in one process. Each round runs every method once, in turn, and the best of
``repeats`` rounds is kept, so load from other processes on a shared machine biases no method.
``first call`` is the first attribution of a fresh LRP object on a model never traced before
(torch.fx tracing, graph rewriting and rule resolution included), the other rows are calls with
the traced graph cached.

Targets (ours, second call): vgg16 and resnet50 ``EpsilonPlus`` ≤ 1.5×, ``EpsilonGammaBox``
≤ 2.0×; densenet121, efficientnet_b0, convnext_tiny ``EpsilonPlus`` ≤ 2.5×; vit_b_16 the
transformer sets (``CPLRP``, ``AttnLRP``) ≤ 2.5×. Competitors: zennit's composites with its
canonizers (vgg16/resnet50), Captum's LRP-ε where it runs, and lxt's CP-LRP patches of
torchvision's ViT (gradient × input with stopped gradients) next to ours on vit_b_16.

Run: ``python -m benchmarks.bench_lrp`` (``--quick`` for a smoke run at 32×32/batch 1;
``--only vgg16,resnet50`` to restrict the models).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks._timing import print_rows, row
from captum_ext.lrp import CPLRP, LRP, AttnLRP, EpsilonGammaBox, EpsilonPlus, tracing
from captum_ext.zoo import imagenet_bounds, torchvision_model
from tests.oracles import lxt_cp_lrp

BENCH = "lrp"
TARGETS = {
    ("vgg16", "EpsilonPlus"): 1.5,
    ("resnet50", "EpsilonPlus"): 1.5,
    ("vgg16", "EpsilonGammaBox"): 2.0,
    ("resnet50", "EpsilonGammaBox"): 2.0,
    ("densenet121", "EpsilonPlus"): 2.5,
    ("efficientnet_b0", "EpsilonPlus"): 2.5,
    ("convnext_tiny", "EpsilonPlus"): 2.5,
    ("vit_b_16", "CPLRP"): 2.5,
    ("vit_b_16", "AttnLRP"): 2.5,
}
MODELS = ["vgg16", "resnet50", "densenet121", "efficientnet_b0", "convnext_tiny", "vit_b_16"]


def _gradient(model: nn.Module, x: torch.Tensor, target: int) -> Callable[[], Any]:
    def run() -> torch.Tensor:
        leaf = x.detach().requires_grad_()
        return torch.autograd.grad(model(leaf)[:, target].sum(), leaf)[0]

    return run


def _captum_epsilon(model: nn.Module, x: torch.Tensor, target: int) -> Callable[[], Any]:
    from captum.attr import LRP as CaptumLRP

    def run() -> torch.Tensor:
        return CaptumLRP(model).attribute(x.clone().requires_grad_(), target=target)

    return run


def _zennit(model: nn.Module, x: torch.Tensor, target: int, kind: str, low, high):
    from zennit import composites as zc
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    name = type(model).__name__.lower()
    canonizers = [ResNetCanonizer()] if name.startswith("resnet") else [VGGCanonizer()]
    if kind == "EpsilonPlus":
        composite = zc.EpsilonPlus(canonizers=canonizers)
    else:
        composite = zc.EpsilonGammaBox(low=low, high=high, canonizers=canonizers)

    def run() -> torch.Tensor:
        with Gradient(model, composite) as attributor:
            out = model(x)
            onehot = torch.zeros_like(out)
            onehot[:, target] = 1.0
            return attributor(x, lambda o: o * onehot)[1]

    return run


def _lxt(model: nn.Module, x: torch.Tensor, target: int) -> Callable[[], Any]:
    def run() -> torch.Tensor:
        with lxt_cp_lrp():
            leaf = x.detach().requires_grad_()
            (grad,) = torch.autograd.grad(model(leaf)[:, target].sum(), leaf)
        return leaf.detach() * grad

    return run


def _bounds(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = imagenet_bounds()
    low = torch.as_tensor(low, dtype=x.dtype).reshape(1, -1, 1, 1).expand_as(x[:1])
    high = torch.as_tensor(high, dtype=x.dtype).reshape(1, -1, 1, 1).expand_as(x[:1])
    return low, high


def _build(name: str, size: int) -> nn.Module:
    if name in ("vgg16", "resnet18", "resnet50"):
        return torchvision_model(name, n_classes=1000, seed=0)
    import torchvision

    kwargs = {"image_size": size} if name == "vit_b_16" else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
        if name == "vit_b_16":  # torchvision zero-initialises the head: f_c would be 0
            nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def _methods(name: str, model: nn.Module, x: torch.Tensor, target: int) -> list[tuple]:
    """``(method, fn, rule-set name or None, LRP object or None)`` for one model."""
    low, high = _bounds(x)
    methods: list[tuple] = []
    if name == "vit_b_16":
        sets = {"CPLRP": CPLRP(), "AttnLRP": AttnLRP()}
    elif name in ("vgg16", "resnet50", "resnet18"):
        sets = {"EpsilonPlus": EpsilonPlus(), "EpsilonGammaBox": EpsilonGammaBox(low, high)}
        methods.append(("Captum LRP (ε)", _captum_epsilon(model, x, target), None, None))
        for kind in sets:
            zennit = _zennit(model, x, target, kind, low, high)
            methods.append((f"zennit {kind}", zennit, None, None))
    else:
        sets = {"EpsilonPlus": EpsilonPlus()}
    for kind, rule_set in sets.items():
        lrp = LRP(model, rule_set=rule_set)
        methods.append((f"ours {kind}", lambda lrp=lrp: lrp.attribute(x, target=target), kind, lrp))
    if name == "vit_b_16":
        methods.append(("lxt CP-LRP", _lxt(model, x, target), None, None))
    return methods


def bench_model(name: str, batch: int, size: int, repeats: int) -> list[dict]:
    """Rows of one model: gradient, competitors, ours (first call and cached)."""
    gen = torch.Generator().manual_seed(0)
    model = _build(name, size)
    x = torch.randn(batch, 3, size, size, generator=gen)
    target = 3
    gradient = _gradient(model, x, target)
    gradient()
    methods = _methods(name, model, x, target)
    rows, first = [], {}
    best = {"gradient": float("inf")} | {m[0]: float("inf") for m in methods}
    failed: set[str] = set()
    for method, fn, _, lrp in methods:  # first calls (tracing for ours), then a warm-up
        tracing._CACHE.pop(model, None)
        start = time.perf_counter()
        try:
            fn()
        except Exception as err:  # Captum's LRP does not run on every architecture
            print(f"{method} failed on {name}: {type(err).__name__}: {err}", file=sys.stderr)
            failed.add(method)
            continue
        if lrp is not None:
            first[method] = time.perf_counter() - start
    for method, fn, *_ in methods:
        if method not in failed:
            fn()  # warm-up with the graph cached
    for _ in range(repeats):
        for method, fn in [("gradient", gradient), *((m[0], m[1]) for m in methods)]:
            if method in failed:
                continue
            start = time.perf_counter()
            fn()
            best[method] = min(best[method], time.perf_counter() - start)
    base = best["gradient"]
    label = f"{name} b{batch} {size}²"
    rows.append(row(BENCH, label, "gradient", base, "gradient", base))
    for method, _, kind, _ in methods:
        if method in failed:
            continue
        target_ratio = TARGETS.get((name, kind)) if kind else None
        if method in first:
            rows.append(row(BENCH, label, f"{method}, first call", first[method], "gradient", base))
        rows.append(row(BENCH, label, method, best[method], "gradient", base, target_ratio))
        print(f"{label} {method}: {best[method]:.3f} s (gradient {base:.3f} s)", file=sys.stderr)
    return rows


def main(quick: bool = False, only: list[str] | None = None) -> list[dict]:
    """Time gradient, competitors and ours; return rows in the benchmark contract."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if quick:
        plan = [("resnet18", 1, 32, 1), ("vit_b_16", 1, 32, 1)]
    else:
        # Best of 5 rounds: the machine is often shared, so single runs are noisy.
        plan = [(name, 4, 224, 5) for name in MODELS if not only or name in only]
    rows: list[dict] = []
    for name, batch, size, repeats in plan:
        rows += bench_model(name, batch, size, repeats)
    print_rows(rows)
    return rows


if __name__ == "__main__":
    names = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--only=")), None)
    main(quick="--quick" in sys.argv, only=names)
