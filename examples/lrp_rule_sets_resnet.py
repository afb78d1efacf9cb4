"""LRP rule sets on a torchvision ResNet through Captum's API (captum_ext.lrp).

Runs every named rule set on resnet18 (random init; BatchNorm folding and the residual
additions are handled by the default canonizers), builds a custom rule set, reads relevance at
an inner layer with ``modified_backward`` and checks that the model is left untouched.

Run: ``.venv/bin/python examples/lrp_rule_sets_resnet.py``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from captum_ext.core import ModelSnapshot, modified_backward
from captum_ext.data import imagenet_bounds
from captum_ext.lrp import (
    LRP,
    LRPCMP,
    Alpha1Beta0,
    DeepTaylor,
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    EpsilonRule,
    FlatRule,
    GammaRule,
    RuleSet,
)
from captum_ext.visualization import heatmap_grid
from captum_ext.zoo import natural_image_batch, torchvision_model

FIGURES = Path(__file__).parent / "figures"


def _out_dir(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=FIGURES, help="folder for the figure (default: %(default)s)"
    )
    return parser.parse_known_args(argv)[0].out


def main(out: str | Path = FIGURES) -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = torchvision_model("resnet18", n_classes=1000, seed=0)
    images = natural_image_batch(size=32)[:2]
    low, high = imagenet_bounds()  # per-channel bounds of normalised images
    snapshot = ModelSnapshot.of(model)
    with torch.no_grad():
        target = model(images).argmax(1)

    custom = RuleSet(
        layer_map=[(nn.Conv2d, GammaRule(0.5)), (nn.Linear, EpsilonRule(0.1))],
        first_map=[(nn.Conv2d, FlatRule())],
    )
    rule_sets = {
        "EpsilonPlus": EpsilonPlus(),
        "EpsilonPlusFlat": EpsilonPlusFlat(),
        "EpsilonAlpha2Beta1": EpsilonAlpha2Beta1(),
        "EpsilonGammaBox": EpsilonGammaBox(low, high),
        "Alpha1Beta0": Alpha1Beta0(),
        "LRPCMP": LRPCMP(),
        "DeepTaylor": DeepTaylor(low, high),
        "custom": custom,
    }
    print(f"{'rule set':20s} {'Σ relevance':>12s} {'f_c(x)':>10s}")
    maps = {}
    for name, rule_set in rule_sets.items():
        relevance, delta = LRP(model, rule_set=rule_set).attribute(
            images, target=target, return_convergence_delta=True
        )
        maps[name] = relevance
        total = relevance.sum((1, 2, 3))
        print(f"{name:20s} {total[0].item():12.4f} {(total + delta)[0].item():10.4f}")
    print(f"e.g. {rule_sets['EpsilonGammaBox']!r}")
    path = Path(out) / "lrp_rule_sets_resnet.png"
    heatmap_grid(maps, images, sign="all", bounds=(low, high), path=path, cell_size=1.4)
    print(f"figure: {path}")

    # Relevance at an inner tensor: inject it at the logits, read it as the gradient.
    taps: dict[str, torch.Tensor] = {}
    handle = model.layer2.register_forward_hook(lambda m, a, out: taps.setdefault("layer2", out))
    try:
        with modified_backward(LRP(model, rule_set=EpsilonPlus())) as forward:
            out = forward(images)
            start = torch.zeros_like(out)
            start[range(len(images)), target] = out[range(len(images)), target].detach()
            (r_layer2,) = torch.autograd.grad(out, taps["layer2"], start)
    finally:
        handle.remove()
    print(f"relevance at layer2: shape {tuple(r_layer2.shape)}, sum {r_layer2[0].sum():.4f}")
    print("model unchanged:", not snapshot.diff(ModelSnapshot.of(model)))


if __name__ == "__main__":
    main(_out_dir())
