"""CAFO and CASO (seed 004) on the trained digits CNN: sparse maps with a per-example λ₁.

Run: ``.venv/bin/python examples/cafo_caso.py`` (well under a minute on CPU).
"""

from __future__ import annotations

import torch

from captum_ext import CAFO, CASO
from captum_ext.context_aware.cafo import pair_normalize
from captum_ext.context_aware.hessian import rank_one_error
from captum_ext.zoo import DigitsDataset, train_digits_cnn


def main() -> None:
    model = train_digits_cnn(progress=False).model.eval()
    images, labels = (t[:4] for t in DigitsDataset("test").tensors())

    # λ₁ chosen per image by the sparsity criterion (η ∈ [0.75, 1)), all candidates batched
    cafo = CAFO(model)
    sparse = cafo.attribute(images, lambda1_search=True)
    print("CAFO λ₁ per image:", [f"{v:.2e}" for v in cafo.last_lambda1.tolist()])
    print("CAFO sparsity η:   ", [f"{v:.3f}" for v in cafo.last_sparsity.tolist()])

    # CASO: closed-form ReLU Hessian (the CNN is piecewise linear), λ₂ = L/2 + 10 per image
    caso = CASO(model)
    second = caso.attribute(images, n_iter=30)
    first = CAFO(model).attribute(images)
    # normalise first: at p → 1 the maps are tiny and cosine_similarity clamps norms at 1e-8
    unit = [m.flatten(1) / m.flatten(1).norm(dim=1, keepdim=True) for m in (second, first)]
    cos = (unit[0] * unit[1]).sum(1)
    with torch.no_grad():
        p_max = model(images).softmax(1).amax(1)
    error, angle = rank_one_error(model, images)
    for i in range(len(images)):
        print(
            f"image {i} (label {int(labels[i])}): p_max={float(p_max[i]):.4f}  "
            f"cos(CASO, CAFO)={float(cos[i]):.5f}  λ₂={float(caso.last_lambda2[i]):.3f}  "
            f"rank-one error={float(error[i]):.3f}  ∠(u₁, g)={float(angle[i]):.1f}°"
        )

    # the paper's visualisation: Σ_c|Δ|, clipped at the 99th percentile, in [0, 1]
    shown = pair_normalize(sparse)
    print("normalised map range:", float(shown.min()), float(shown.max()), tuple(shown.shape))


if __name__ == "__main__":
    main()
