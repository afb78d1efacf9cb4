"""The remaining pieces of Sixt et al. (2020), "When Explanations Lie", in a few lines.

Run: ``.venv/bin/python examples/explanations_lie.py``. It prints

1. DeepLIFT with the separating linear rule (eq. 13) and its ablation: the summation-to-delta
   gap (exact without max pooling; the CNN's max pooling passes its gradient) and
   the random-logit cosine between the maps of two classes;
2. contrastive LRP (eq. 15) and contrastive Excitation Backprop (eq. 16) maps' shapes and sums;
3. CSC at the first layer for DeepLIFT vs its ablation (the ablation converges);
4. Appendix B: σ₂/σ₁ of z⁺ and gradient matrix chains after 20 layers, with the fitted rates.
"""

from __future__ import annotations

import torch.nn.functional as F

from captum_ext import (
    ContrastiveExcitationBackprop,
    ContrastiveLRP,
    DeepLiftAblation,
    DeepLiftLinear,
)
from captum_ext.analysis import decay_rate, simulate_chains
from captum_ext.zoo import DigitsDataset, train_digits_cnn
from quantus_metrics.csc import cosine_similarity_convergence


def main() -> None:
    model = train_digits_cnn(progress=False).model.eval()
    data = DigitsDataset("test")
    x, y = data.images[:8], data.labels[:8]
    other = (y + 1) % 10

    for cls in (DeepLiftLinear, DeepLiftAblation):
        method = cls(model)
        own, delta = method.attribute(x, target=y, return_convergence_delta=True)
        second = method.attribute(x, target=other)
        cos = F.cosine_similarity(own.flatten(1), second.flatten(1)).abs().median()
        print(
            f"{cls.__name__:17s} max |Σ attribution − Δf| {delta.abs().max():.2e}, "
            f"median |cos| true vs other class {cos:.3f}"
        )

    clrp = ContrastiveLRP(model).attribute(x, target=y)
    ceb = ContrastiveExcitationBackprop(model).attribute(x, target=y)
    print(f"CLRP maps {tuple(clrp.shape)}, per-map sums ≈ {clrp.flatten(1).sum(1)[:3].tolist()}")
    print(
        f"c-EB maps {tuple(ceb.shape)}, share of negative relevance {(ceb < 0).float().mean():.3f}"
    )

    for cls in (DeepLiftLinear, DeepLiftAblation):
        result = cosine_similarity_convergence(cls(model), x[:2], n_vectors=5)
        layer = list(result.values)[1]
        median = result.medians()[layer].median()
        print(f"CSC {cls.__name__:17s} median |cos| at {layer}: {median:.4f}")

    chains = simulate_chains(width=32, depth=20, n_trials=10, seed=0)
    for kind in ("zplus", "gradient"):
        rate, _ = decay_rate(chains.median(kind))
        print(
            f"Appendix B {kind:8s}: σ₂/σ₁ after 20 = {chains.median(kind)[-1]:.2e}, "
            f"factor per layer {rate:.3f}"
        )


if __name__ == "__main__":
    main()
