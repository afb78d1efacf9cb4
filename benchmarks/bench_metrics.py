"""Randomisation SSIM vs ``quantus.MPRT``, and CSC vs plain attributions (issue #7).

Rows (see ``benchmarks/__init__.py`` for the contract):

- ``randomisation``: our :class:`~quantus_metrics.ModelRandomisationSSIM` end to end, as a ratio
  to ``quantus.MPRT`` on the same model, data, explain function and number of randomised layers
  (norm layers included, as MPRT randomises every module with ``reset_parameters``). Target
  ≤ 0.2 (≥ 5× faster).
- ``csc``: :class:`~quantus_metrics.CSC` with ``n_vectors`` = 5 and one injection layer (the
  logits), as a ratio to ``n_vectors`` plain ``attribute`` calls on the same batch. Target ≤ 1.5.

Run: ``.venv/bin/python -m benchmarks.bench_metrics [--quick]``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import quantus
import torch
from captum.attr import Saliency
from torch import nn

from benchmarks._timing import best_time, print_rows, row
from captum_ext.zoo import Seed001CNN, torchvision_model
from quantus_metrics.csc import CSC
from quantus_metrics.explain import explain_func_from
from quantus_metrics.randomisation import ModelRandomisationSSIM

N_VECTORS = 5


def _methods() -> dict[str, Callable[[nn.Module], Any]]:
    methods: dict[str, Callable[[nn.Module], Any]] = {"Saliency": Saliency}
    try:  # captum_ext's LRP handles Flatten, BatchNorm and residual blocks (Captum's does not)
        from captum_ext.lrp import LRP

        methods["LRP"] = LRP
    except ImportError:
        pass
    return methods


def _models(quick: bool) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if quick:  # smoke test only: a tiny CNN keeps the run to a few seconds
            tiny = nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 10)
            )
            return [("tiny CNN 16×16", tiny.eval(), (1, 16, 16))]
        cnn = Seed001CNN(1, 10).eval()
    resnet = torchvision_model("resnet18", 10, seed=0)
    return [("seed-001 CNN 32×32", cnn, (1, 32, 32)), ("resnet18 64×64", resnet, (3, 64, 64))]


def _time_model(
    model_name: str, model: nn.Module, shape: tuple[int, ...], quick: bool
) -> list[dict]:
    n_samples = 4 if quick else 64
    repeats = 1 if quick else 3  # the metric runs take seconds each and are timed once
    x = torch.rand(n_samples, *shape, generator=torch.Generator().manual_seed(0)).numpy()
    y = (np.arange(n_samples) % 10).astype(np.int64)
    xt, target = torch.as_tensor(x), torch.as_tensor(y)
    rows = []
    for method_name, factory in _methods().items():
        if quick and method_name != "Saliency":
            continue
        explain = explain_func_from(factory)

        def attributions(factory=factory) -> None:
            for _ in range(N_VECTORS):
                factory(model).attribute(xt, target=target)

        def csc(factory=factory) -> None:
            CSC(method=factory, n_vectors=N_VECTORS)(
                model=model, x_batch=x, y_batch=y, batch_size=len(x)
            )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mprt = best_time(lambda e=explain: _mprt(model, x, y, e), 1, warmup=0)
            ours = best_time(lambda e=explain: _ours(model, x, y, e), 1, warmup=0)
            plain = best_time(attributions, repeats)
            ours_csc = best_time(csc, repeats)
        rows.append(row("randomisation", model_name, method_name, ours, "quantus.MPRT", mprt, 0.2))
        rows.append(
            row("csc", model_name, method_name, ours_csc, f"{N_VECTORS} attributions", plain, 1.5)
        )
    return rows


def _ours(model, x, y, explain) -> list:
    metric = ModelRandomisationSSIM(randomise_norm_layers=True)
    return metric(model=model, x_batch=x, y_batch=y, explain_func=explain, batch_size=len(x))


def _mprt(model, x, y, explain) -> Any:
    metric = quantus.MPRT(disable_warnings=True, display_progressbar=False)
    return metric(
        model=model,
        x_batch=x,
        y_batch=y,
        a_batch=None,
        explain_func=explain,
        explain_func_kwargs={},
        channel_first=True,
        batch_size=len(x),
    )


def main(quick: bool = False) -> list[dict]:
    """Time both comparisons; ``quick`` uses a tiny CNN, 4 samples and one repeat."""
    rows = []
    for model_name, model, shape in _models(quick):
        rows += _time_model(model_name, model, shape, quick)
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
