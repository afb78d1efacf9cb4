"""LRP speed: ours vs Captum's LRP and zennit's composites, as ratios to a plain gradient.

torchvision vgg16 and resnet50 (random init), batch 4 at 224×224, CPU, float32 .
Targets: ours ≤ 2.0× the gradient for EpsilonPlus, ≤ 2.5× for EpsilonGammaBox. zennit is the
competitor of record (a test-only dependency); Captum's LRP runs with its default ε rules
(it has no z⁺ or box rules) where it runs at all.

Run: ``.venv/bin/python -m benchmarks.bench_lrp`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from benchmarks._timing import best_time, print_rows, row
from captum_ext.lrp import LRP, EpsilonGammaBox, EpsilonPlus
from captum_ext.zoo import imagenet_bounds, torchvision_model

BENCH = "lrp"


def _gradient(model: torch.nn.Module, x: torch.Tensor, target: int) -> Callable[[], Any]:
    def run() -> torch.Tensor:
        leaf = x.detach().requires_grad_()
        return torch.autograd.grad(model(leaf)[:, target].sum(), leaf)[0]

    return run


def _captum_epsilon(model: torch.nn.Module, x: torch.Tensor, target: int) -> Callable[[], Any]:
    from captum.attr import LRP as CaptumLRP

    def run() -> torch.Tensor:
        return CaptumLRP(model).attribute(x.clone().requires_grad_(), target=target)

    return run


def _zennit(model: torch.nn.Module, x: torch.Tensor, target: int, kind: str, low, high):
    from zennit import composites as zc
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    name = type(model).__name__.lower()
    canonizers = [ResNetCanonizer()] if name.startswith("resnet") else [VGGCanonizer()]
    if kind == "EpsilonPlus":
        composite = zc.EpsilonPlus(canonizers=canonizers)
    else:
        composite = zc.EpsilonGammaBox(low=low, high=high, canonizers=canonizers)
    from zennit.attribution import Gradient

    def run() -> torch.Tensor:
        with Gradient(model, composite) as attributor:
            out = model(x)
            onehot = torch.zeros_like(out)
            onehot[:, target] = 1.0
            return attributor(x, lambda o: o * onehot)[1]

    return run


def _ours(model: torch.nn.Module, x: torch.Tensor, target: int, rule_set) -> Callable[[], Any]:
    lrp = LRP(model, rule_set=rule_set)
    return lambda: lrp.attribute(x, target=target)


def _timed(fn: Callable[[], Any], gradient: Callable[[], Any], repeats: int) -> tuple:
    """Best seconds of ``fn`` and of ``gradient``, timed alternately after one warm-up each.

    Alternating keeps the ratio fair when the (shared) machine's load changes during the run.
    """
    fn()
    gradient()
    best, base = float("inf"), float("inf")
    for _ in range(repeats):
        best = min(best, best_time(fn, repeats=1, warmup=0))
        base = min(base, best_time(gradient, repeats=1, warmup=0))
    return best, base


def _bounds(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = imagenet_bounds()
    low = torch.as_tensor(low, dtype=x.dtype).reshape(1, -1, 1, 1).expand_as(x[:1])
    high = torch.as_tensor(high, dtype=x.dtype).reshape(1, -1, 1, 1).expand_as(x[:1])
    return low, high


def main(quick: bool = False) -> list[dict]:
    """Time gradient, Captum LRP-ε, zennit and ours; return rows in the benchmark contract."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if quick:
        models, batch, size, repeats = ["resnet18"], 1, 32, 1
    else:
        # Best of 3 (after a warm-up): the machine is often shared, so single runs are noisy.
        models, batch, size, repeats = ["vgg16", "resnet50"], 4, 224, 3
    rows: list[dict] = []

    gen = torch.Generator().manual_seed(0)
    for name in models:
        model = torchvision_model(name, n_classes=1000, seed=0)
        x = torch.randn(batch, 3, size, size, generator=gen)
        low, high = _bounds(x)
        target = 3
        gradient = _gradient(model, x, target)
        base = best_time(gradient, repeats=repeats)
        methods: list[tuple[str, Callable[[], Any], float | None]] = [
            ("Captum LRP (ε)", _captum_epsilon(model, x, target), None)
        ]
        for kind, target_ratio, rule_set in (
            ("EpsilonPlus", 2.0, EpsilonPlus()),
            ("EpsilonGammaBox", 2.5, EpsilonGammaBox(low, high)),
        ):
            methods.append((f"zennit {kind}", _zennit(model, x, target, kind, low, high), None))
            methods.append((f"ours {kind}", _ours(model, x, target, rule_set), target_ratio))
        timed = []
        for method, fn, target_ratio in methods:
            try:
                seconds, base_now = _timed(fn, gradient, repeats)
            except Exception as err:  # Captum's LRP does not run on every architecture
                print(f"{method} failed on {name}: {type(err).__name__}: {err}", file=sys.stderr)
                continue
            base = min(base, base_now)  # the gradient's best time over the whole model's run
            timed.append((method, seconds, target_ratio))
            # Progress on stderr: the full run takes minutes on a shared CPU.
            print(f"{name} {method}: {seconds:.3f} s (gradient {base_now:.3f} s)", file=sys.stderr)
        rows.append(row(BENCH, name, "gradient", base, "gradient", base))
        for method, seconds, target_ratio in timed:
            rows.append(row(BENCH, name, method, seconds, "gradient", base, target_ratio))
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
