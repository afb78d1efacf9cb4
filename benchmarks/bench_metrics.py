"""Randomisation SSIM vs ``quantus.MPRT``, and CSC vs plain attributions.

Rows (see ``benchmarks/__init__.py`` for the contract):

- ``randomisation``: our :class:`~quantus_metrics.ModelRandomisationSSIM` end to end, as a ratio
  to ``quantus.MPRT`` on the same model, data, explain function and number of randomised layers
  (norm layers included, as MPRT randomises every module with ``reset_parameters``). Target
  ≤ 0.2 (≥ 5× faster). Both are warmed up on two samples, then run alternately; best run each.
- ``randomisation overhead``: for ours and for MPRT, the seconds of that best run spent outside
  the explain function (total minus the time inside its explain calls), as a ratio to the time
  inside them. Ours makes L + 1 explain calls, MPRT L + 2.
- ``csc``: :class:`~quantus_metrics.CSC` with ``n_vectors`` = 5 and one injection layer (the
  logits), as a ratio to the cost of ``n_vectors`` plain attributions of the same batch (the
  cheaper of ``n_vectors`` ``attribute`` calls and one call on the batch repeated ``n_vectors``
  times; interleaved with the CSC runs). Target ≤ 1.5.

Run: ``.venv/bin/python -m benchmarks.bench_metrics [--quick]``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import quantus
import torch
from captum.attr import Saliency
from torch import nn

from benchmarks._timing import best_time, print_rows, row
from captum_ext.zoo import SmallCNN, torchvision_model
from quantus_metrics.csc import CSC
from quantus_metrics.explain import explain_func_from
from quantus_metrics.randomisation import ModelRandomisationSSIM

N_VECTORS = 5


def _methods() -> dict[str, Callable[[nn.Module], Any]]:
    methods: dict[str, Callable[[nn.Module], Any]] = {"Saliency": Saliency}
    try:  # captum_ext's LRP handles Flatten, BatchNorm and residual blocks (Captum's does not)
        from captum_ext.lrp import LRP, EpsilonPlus

        # The rule set these numbers were measured with (LRP's default is now Captum's).
        methods["LRP"] = lambda model: LRP(model, rule_set=EpsilonPlus())
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
        cnn = SmallCNN(1, 10).eval()
    resnet = torchvision_model("resnet18", 10, seed=0)
    return [("small CNN 32×32", cnn, (1, 32, 32)), ("resnet18 64×64", resnet, (3, 64, 64))]


def _time_model(
    model_name: str, model: nn.Module, shape: tuple[int, ...], quick: bool
) -> list[dict]:
    n_samples = 4 if quick else 64
    repeats = 1 if quick else 3  # the metric runs take seconds each and are timed once
    x = torch.rand(n_samples, *shape, generator=torch.Generator().manual_seed(0)).numpy()
    y = (np.arange(n_samples) % 10).astype(np.int64)
    xt, target = torch.as_tensor(x), torch.as_tensor(y)
    xt_repeated = xt.repeat(N_VECTORS, *([1] * (xt.dim() - 1)))
    target_repeated = target.repeat(N_VECTORS)
    rows = []
    for method_name, factory in _methods().items():
        if quick and method_name != "Saliency":
            continue
        explain = explain_func_from(factory)

        def attributions(factory=factory) -> None:
            for _ in range(N_VECTORS):
                factory(model).attribute(xt, target=target)

        def batched_attributions(factory=factory) -> None:
            factory(model).attribute(xt_repeated, target=target_repeated)

        def csc(factory=factory) -> None:
            CSC(method=factory, n_vectors=N_VECTORS)(
                model=model, x_batch=x, y_batch=y, batch_size=len(x)
            )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, mprt = _randomisation_runs(model, x, y, explain, 1 if quick else 2)
            # CSC and its baseline interleaved (a busy CPU affects both alike); the baseline is
            # the cheaper way to get n_vectors attributions: separate calls or one on a
            # batch repeated n_vectors times.
            plain = ours_csc = float("inf")
            for i in range(repeats):
                warmup = 1 if i == 0 else 0
                plain = min(
                    plain,
                    best_time(attributions, 1, warmup=warmup),
                    best_time(batched_attributions, 1, warmup=warmup),
                )
                ours_csc = min(ours_csc, best_time(csc, 1, warmup=warmup))
        rows += _randomisation_rows(model_name, method_name, ours, mprt)
        rows.append(
            row("csc", model_name, method_name, ours_csc, f"{N_VECTORS} attributions", plain, 1.5)
        )
    return rows


class _TimedExplain:
    """An explain function that adds up its own wall time and records each call's batch size."""

    def __init__(self, explain: Callable) -> None:
        self.explain, self.seconds, self.calls = explain, 0.0, []

    def __call__(self, model, inputs, targets, **kwargs) -> np.ndarray:
        start = time.perf_counter()
        out = self.explain(model=model, inputs=inputs, targets=targets, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls.append(len(inputs))
        return out


def _randomisation_runs(model, x, y, explain, repeats: int) -> tuple[dict, dict]:
    """Best run of ours and of MPRT: warmed up, alternating order, explain time measured inside.

    Each result holds ``total`` seconds, ``explain`` seconds (inside the explain function) and
    the explain ``calls`` (batch sizes) of the fastest run.
    """
    for fn in (_ours, _mprt):  # warm-up on two samples: lazy imports and first-call setup
        fn(model, x[:2], y[:2], explain)
    best = {_ours: {"total": float("inf")}, _mprt: {"total": float("inf")}}
    for repeat in range(repeats):
        for fn in (_ours, _mprt) if repeat % 2 == 0 else (_mprt, _ours):
            timed = _TimedExplain(explain)
            start = time.perf_counter()
            fn(model, x, y, timed)
            total = time.perf_counter() - start
            if total < best[fn]["total"]:
                best[fn] = {"total": total, "explain": timed.seconds, "calls": timed.calls}
    return best[_ours], best[_mprt]


def _randomisation_rows(model_name: str, method_name: str, ours: dict, mprt: dict) -> list[dict]:
    """End-to-end ratio, plus each metric's overhead beyond its explanation calls (same run)."""
    rows = [
        row(
            "randomisation",
            model_name,
            method_name,
            ours["total"],
            "quantus.MPRT",
            mprt["total"],
            0.2,
        )
    ]
    for who, run in (("ours", ours), ("quantus.MPRT", mprt)):
        overhead = max(run["total"] - run["explain"], 1e-9)
        rows.append(
            row(
                "randomisation overhead",
                model_name,
                f"{method_name}: {who}, overhead beyond explanation calls",
                overhead,
                f"its {len(run['calls'])} explain calls (batch {max(run['calls'])}), "
                f"{run['explain']:.2f} s",
                run["explain"],
            )
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
