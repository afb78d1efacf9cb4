"""CAFO / CASO cost in plain gradients, and the batched λ₁ search vs separate solves (Singla et
al., 2019).

Targets: CASO with 10 FISTA iterations ≤ 25 gradients with double-backward HVPs and
≤ c + 5 gradients with the closed-form Hessian (c ≤ 100 classes); the λ₁ search with 8 values
solved in one batch ≥ 3× faster than 8 separate solves. Run: ``python -m benchmarks.bench_caso``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks._timing import best_time, print_rows, row
from captum_ext import CAFO, CASO
from captum_ext.zoo import SmallCNN, torchvision_model


def _gradient(model: torch.nn.Module, x: torch.Tensor) -> None:
    xx = x.clone().requires_grad_(True)
    logits = model(xx)
    torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1), reduction="sum"), xx)


def _quiet(fn):
    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # tol=0 forces all 10 iterations
            return fn()

    return run


def _workload(name, model, x, n_classes, repeats) -> list[dict]:
    bench = "caso cost"
    warm = int(repeats > 1)
    base = best_time(lambda: _gradient(model, x), repeats=repeats, warmup=warm)
    solve = {"n_iter": 10, "tol": 0.0}
    cases = {
        "CAFO": lambda: CAFO(model).attribute(x, **solve),
        "CASO autograd HVP": lambda: CASO(model).attribute(x, hessian="autograd", **solve),
        # λ₁ > 0 leaves the Krylov space the cache remembers: the honest cost of sparsity
        "CASO autograd HVP, λ₁ = 1e-4": lambda: CASO(model).attribute(
            x, hessian="autograd", lambda1=1e-4, **solve
        ),
    }
    cases["CASO closed form (expand)"] = lambda: CASO(model).attribute(
        x, hessian="closed_form", jacobian="expand", **solve
    )
    if n_classes <= 100 and repeats > 1:
        cases["CASO closed form (vmap)"] = lambda: CASO(model).attribute(
            x, hessian="closed_form", jacobian="vmap", **solve
        )
    targets = {"CASO autograd HVP": 25.0}
    if n_classes <= 100:
        targets["CASO closed form (expand)"] = n_classes + 5.0
        targets["CASO closed form (vmap)"] = n_classes + 5.0
    rows = [row(bench, name, "gradient", base, "gradient", base)]
    for method, fn in cases.items():
        reps = 1 if "closed" in method and n_classes > 100 else repeats
        seconds = best_time(_quiet(fn), repeats=reps, warmup=int(reps > 1))
        rows.append(row(bench, name, method, seconds, "gradient", base, targets.get(method)))
    return rows


def _search(name, model, x, repeats, hessian, n_values=8) -> list[dict]:
    lambdas = [1e-5 * 10.0**j for j in range(n_values)]
    method = CASO(model)

    def batched() -> None:
        method.attribute(x, lambda1_search=True, n_lambda1=n_values, hessian=hessian, n_iter=10)

    def separate() -> None:
        for lam in lambdas:
            method.attribute(x, lambda1=lam, hessian=hessian, n_iter=10)

    # a search (one or more batched rounds) against its first round's values solved one by one
    warm = int(repeats > 1)
    sep = best_time(_quiet(separate), repeats=repeats, warmup=warm)
    bat = best_time(_quiet(batched), repeats=repeats, warmup=warm)
    label = f"λ₁ search, {n_values} values batched (CASO {hessian})"
    base = f"{n_values} separate solves"
    return [
        row("caso λ₁ search", name, base, sep, base, sep),
        row("caso λ₁ search", name, label, bat, base, sep, 1 / 3),
    ]


def main(quick: bool = False) -> list[dict]:
    torch.set_num_threads(2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = SmallCNN(1, 10).eval()
    batch = 1 if quick else 8
    x = torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    repeats = 1 if quick else 3
    rows = _workload("small CNN, 32×32, c=10", cnn, x, 10, repeats)
    rows += _search("small CNN, 32×32, c=10", cnn, x, repeats, "closed_form", 2 if quick else 8)
    if not quick:
        rows += _search("small CNN, 32×32, c=10", cnn, x, repeats, "autograd")
    print_rows(rows)  # the small workload first: the 1000-class closed form takes minutes
    if not quick:
        resnet = torchvision_model("resnet18", n_classes=1000, seed=0).eval()
        xr = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        more = _workload("resnet18, 64×64, c=1000", resnet, xr, 1000, repeats)
        print_rows(more)
        rows += more
    return rows


if __name__ == "__main__":
    main()
