"""CSC and SSIM sanity checks of Sixt et al. (2020) ("When Explanations Lie") on the trained digits
CNN.

Run: ``.venv/bin/python examples/csc_and_sanity_checks.py``. It prints

1. the per-layer median |cos| of random relevance vectors injected at the logits (CSC) for the
   gradient, Guided Backprop and LRP-α1β0 (if ``captum_ext.lrp`` is installed), next to the
   random baseline of each layer's channel count;
2. cascading-randomisation SSIM and random-logit SSIM with 99 % bootstrap intervals, computed
   inside ``quantus.evaluate`` with explain functions built from Captum classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import quantus
from captum.attr import GuidedBackprop, Saliency
from matplotlib.figure import Figure

from captum_ext.visualization import save_figure
from captum_ext.zoo import DigitsDataset, train_digits_cnn
from quantus_metrics.csc import CSC
from quantus_metrics.explain import explain_func_from
from quantus_metrics.randomisation import ModelRandomisationSSIM, RandomLogitSSIM

FIGURES = Path(__file__).parent / "figures"


def _out_dir(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=FIGURES, help="folder for the figure (default: %(default)s)"
    )
    return parser.parse_known_args(argv)[0].out


def _methods() -> dict:
    methods = {"Gradient": Saliency, "GuidedBackprop": GuidedBackprop}
    try:
        from captum_ext.lrp import LRP, Alpha1Beta0

        methods["LRP-α1β0"] = lambda model: LRP(model, rule_set=Alpha1Beta0())
    except ImportError:
        pass
    return methods


def main(out: str | Path = FIGURES) -> None:
    model = train_digits_cnn(progress=False).model.eval()
    data = DigitsDataset("test")
    x, y = data.images[:4].numpy(), data.labels[:4].numpy()
    methods = _methods()

    figure = Figure(figsize=(11, 3.8))
    csc_ax, ssim_ax = figure.subplots(1, 2)
    print("CSC: median |cos| per layer (input → logits), random baseline in brackets")
    for name, method in methods.items():
        metric = CSC(method=method, n_vectors=5, seed=0, return_distributions=True)
        metric(model=model, x_batch=x, y_batch=None)
        medians = metric.layer_medians()
        cells = [f"{k} {v:.4f} [{metric.baselines[k]:.3f}]" for k, v in medians.items()]
        print(f"  {name:15s} " + ", ".join(cells))
        metric.plot(ax=csc_ax, label=name, baseline=name == "Gradient")

    randomisation = ModelRandomisationSSIM(n_resamples=2000)
    results = quantus.evaluate(
        metrics={
            "randomisation": randomisation,
            "random_logit": RandomLogitSSIM(n_resamples=2000),
        },
        xai_methods={name: explain_func_from(method) for name, method in methods.items()},
        model=model,
        x_batch=x,
        y_batch=y,
        explain_func_kwargs={},
    )
    print("\nSSIM (sign-invariant, percentile-normalised maps, window 5, data_range 2)")
    for name, scores in results.items():
        layers = list(scores["randomisation"][0])
        last = np.mean([s[layers[0]] for s in scores["randomisation"]])
        everything = np.mean([s[layers[-1]] for s in scores["randomisation"]])
        print(
            f"  {name:15s} random logit {np.mean(scores['random_logit']):.3f}, "
            f"after randomising {layers[0]}: {last:.3f}, down to {layers[-1]}: {everything:.3f}"
        )
    print("  (lower SSIM = the map depends on the weights / the class, as a faithful map must)")
    # quantus.evaluate keeps only the scores; the metric object holds the last method's run.
    randomisation.plot(ax=ssim_ax, label=f"{list(methods)[-1]}")
    csc_ax.set_title("CSC (Sixt et al. 2020, Fig. 5)", fontsize=9)
    ssim_ax.set_title("cascading randomisation (Fig. 4b)", fontsize=9)
    figure.tight_layout()
    path = save_figure(figure, Path(out) / "csc_and_sanity_checks.png")
    print(f"figure: {path}")


if __name__ == "__main__":
    main(_out_dir())
