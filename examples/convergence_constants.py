"""How many noisy draws does an averaged explanation need? Convergence constants on digits.

Binder et al. (2025) bound attribution components to get the constants that govern how fast
SmoothGrad-like
averages converge. This script measures them for the gradient and LRP-αβ on the trained digits
CNN (Gaussian noise, σ = 0.15) and prints, per method, the empirical bound B relative to the
explained logit, Hoeffding's number of draws for 5 % relative accuracy at 95 % confidence, the
fitted constant of error ≈ C/√N and the analytic bound (docs/convergence_bounds.md) next to B.

Run: ``.venv/bin/python examples/convergence_constants.py`` (about half a minute on 2 cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from captum.attr import Saliency
from matplotlib.figure import Figure

from captum_ext.lrp import LRP, AlphaBeta
from captum_ext.visualization import save_figure
from captum_ext.zoo import DigitsDataset, train_digits_cnn
from quantus_metrics import ConvergenceConstants
from quantus_metrics.explain import explain_func_from

IMAGES = 4
GRID = (1, 2, 4, 8)
REFERENCE = 16
NORM_ITERATIONS = 16  # Krylov steps per conv layer for the gradient's Π‖W_l‖₂


FIGURES = Path(__file__).parent / "figures"


def _out_dir(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=FIGURES, help="folder for the figure (default: %(default)s)"
    )
    return parser.parse_known_args(argv)[0].out


def main(out: str | Path = FIGURES) -> None:
    torch.set_num_threads(2)
    model = train_digits_cnn(progress=False).model.eval()
    images, labels = DigitsDataset("test").tensors()
    x, y = images[:IMAGES], labels[:IMAGES]
    methods = {
        "Gradient": ("gradient", explain_func_from(Saliency, abs=False)),
        "LRP-α2β1": ("lrp_alphabeta", explain_func_from(lambda m: LRP(m, rule_set=AlphaBeta()))),
    }
    figure = Figure(figsize=(5, 3.5))
    ax = figure.subplots()
    print(f"{'method':10s} {'B/|f|':>8s} {'theory/|f|':>11s} {'Hoeffding N':>12s} {'C/|f|':>8s}")
    for name, (kind, explain) in methods.items():
        metric = ConvergenceConstants(
            sigma=0.15,
            n_grid=GRID,
            n_reference=REFERENCE,
            t=0.05,
            delta=0.05,
            theoretical=kind,
            beta=1.0,
            norm_iterations=NORM_ITERATIONS,
            seed=0,
            disable_warnings=True,
        )
        metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=explain)
        result = metric.results[0]
        metric.plot(ax=ax, label=name)
        print(
            f"{name:10s} {result.relative_bound.mean():8.3f} "
            f"{result.theoretical_relative.mean():11.3g} {result.hoeffding_n.mean():12.0f} "
            f"{result.relative_constant.mean():8.4f}"
        )

    print("(B: largest |attribution| over the draws; Hoeffding N: draws for 5 % accuracy at 95 %)")
    path = save_figure(figure, Path(out) / "convergence_constants.png")
    print(f"figure: {path}")


if __name__ == "__main__":
    main(_out_dir())
