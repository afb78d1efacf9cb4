"""LRP coverage table: which rule sets run on which architecture, conservation, zennit, speed.

For every torchvision architecture in the table (random initialisation, batch 1, 64×64 input
where the model allows; ``vit_b_16`` is built with ``image_size=64``), the pretrained ImageNet
``efficientnet_lite0`` of ``captum_ext.zoo`` (``real`` extra; one foolbox photo, 224×224,
TF-Lite scaling) and the hand-written functional models of
:mod:`captum_ext.zoo.functional_models`, on the automatic path:

* the number of op modules in the traced graph (functional operations, and the hook points
  at the boundaries of traced-through modules),
* whether ``EpsilonPlus``, ``EpsilonGammaBox`` and the transformer set ``AttnLRP`` run (float32);
  a refused model shows the refusal (operation and reason),
* the conservation error ``max |Σ R − f_c| / |f_c|`` of bias-free ``Epsilon(1e-30)`` in float64
  (ε and stabiliser 1e-30: randomly initialised deep models have logits down to 1e-14)
  (all biases, class tokens and position embeddings zeroed; BatchNorm running means zeroed,
  i.e. a per-channel scaling without shift; the transformer models use ``CPLRP``, which
  conserves, since AttnLRP's softmax rule absorbs relevance by design),
* the maximum relative difference to zennit's ``EpsilonPlus`` where zennit has a canonizer
  for the architecture (torchvision ResNets, VGG with BatchNorm), float64, BatchNorm ``eps=0``
  (zennit's BatchNorm canonizer keeps ``eps``, see tests/test_lrp_rule_sets.py),
* the time of ``EpsilonPlus`` (traced graph cached) over a plain gradient, float32, batch 1,
  best of 7 interleaved runs, and the first call's extra time (tracing, rule resolution).

Run ``python -m benchmarks.lrp_coverage`` (writes ``benchmarks/LRP_COVERAGE.md``); ``--only
resnet18,densenet121`` restricts the rows, ``--retime`` refreshes only the timings. Timings on
a shared CPU are indicative.
"""

from __future__ import annotations

import argparse
import copy
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks._timing import best_time
from captum_ext.lrp import CPLRP, LRP, AttnLRP, Epsilon, EpsilonGammaBox, EpsilonPlus, tracing
from captum_ext.zoo.functional_models import FUNCTIONAL_MODELS, TextTransformer, functional_model

TORCHVISION = [
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "vgg16_bn",
    "densenet121",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "regnet_y_400mf",
    "convnext_tiny",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "googlenet",
    "swin_t",
    "vit_b_16",
]
PRETRAINED = ["efficientnet_lite0"]
TRANSFORMERS = {"swin_t", "vit_b_16", "TextTransformer"}
_ZENNIT = {
    "resnet18": "resnet",
    "resnet50": "resnet",
    "resnext50_32x4d": "resnet",
    "wide_resnet50_2": "resnet",
    "vgg16_bn": "sequential",
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, Callable[[torch.dtype], Any]]:
    """``(model, make_input(dtype))`` for a coverage row (float32, eval mode)."""
    if name in FUNCTIONAL_MODELS:
        model = functional_model(name, seed).float()
        return model, lambda dtype: _image(1, 8, dtype)
    if name == "TextTransformer":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TextTransformer(bias=True).eval()
        tokens = torch.randint(0, 40, (1, 12), generator=torch.Generator().manual_seed(seed))
        return model, lambda dtype: tokens
    if name == "efficientnet_lite0":
        from captum_ext.zoo import efficientnet_lite0, imagenet_samples

        model = efficientnet_lite0(pretrained=True)
        images, _ = imagenet_samples(size=224, normalize=False)
        photo = (images[:1] * 255.0 - 127.0) / 128.0  # the TF-Lite scaling of these weights
        return model, lambda dtype: photo.to(dtype)
    import torchvision

    kwargs: dict[str, Any] = {"weights": None, "num_classes": 10}
    if name == "vit_b_16":
        kwargs["image_size"] = 64
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(torchvision.models, name)(**kwargs).eval()
        if name == "vit_b_16":  # torchvision initialises the head to zero: f_c would be 0
            nn.init.normal_(model.heads.head.weight, std=0.1)
    return model, lambda dtype: _image(1, 64, dtype)


def _image(batch: int, size: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(dtype)


def bias_free(model: nn.Module) -> nn.Module:
    """A float64 copy with every bias, class token, position embedding and BatchNorm running
    mean set to zero (BatchNorm then scales each channel, without shift)."""
    model = copy.deepcopy(model).double()
    with torch.no_grad():
        for module in model.modules():
            if (
                isinstance(module, nn.modules.batchnorm._BatchNorm)
                and module.running_mean is not None
            ):
                module.running_mean.zero_()
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("bias", "class_token", "pos_embedding", "in_proj_bias"):
                p.zero_()
            elif "relative_position_bias" in name:
                p.zero_()
    return model


def _short(err: BaseException) -> str:
    text = str(err).split(". Give it a rule")[0].split("; give it a rule")[0]
    text = text.replace("LRP cannot propagate relevance through ", "refused: ")
    text = re.sub(r"/\S*/", "", text)  # file names without their directories
    return text.replace("\n", " ").replace("|", "\\|")[:160]


def _attribute(model, rule_set, x, **kwargs) -> torch.Tensor:
    if isinstance(model, TextTransformer):
        from captum_ext.lrp import LayerLRP

        return LayerLRP(model, model.embedding, rule_set=rule_set, **kwargs).attribute(x, target=0)
    return LRP(model, rule_set=rule_set, **kwargs).attribute(x, target=0)


def _runs(model, rule_set, x) -> str:
    try:
        r = _attribute(model, rule_set, x)
    except Exception as err:  # a cell of the table: refusals and failures are reported
        return f"✗ {_short(err)}"
    return "✓" if bool(torch.isfinite(r).all()) else "✗ non-finite"


def _conservation(name: str, model: nn.Module, make_input) -> str:
    exact = bias_free(model)
    x = make_input(torch.float64)
    if name in TRANSFORMERS:
        rule_set = CPLRP(1e-30, 1e-30)
    else:
        rule_set = Epsilon(1e-30, stabilizer=1e-30)
    try:
        r = _attribute(exact, rule_set, x)
    except Exception as err:  # reported in the table
        return f"✗ {_short(err)}"
    with torch.no_grad():
        f = exact(x)[:, 0]
    error = ((r.reshape(len(f), -1).sum(1) - f).abs() / f.abs()).max()
    return f"{float(error):.1e}"


def zennit_agreement(name: str, model: nn.Module, make_input) -> str:
    kind = _ZENNIT.get(name)
    if kind is None:
        return "— (no zennit canonizer)"
    from zennit import composites as zc
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    exact = copy.deepcopy(model).double()
    for module in exact.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 0.0
    x = make_input(torch.float64)
    ours = LRP(exact, rule_set=EpsilonPlus()).attribute(x, target=0)
    canonizer = ResNetCanonizer() if kind == "resnet" else SequentialMergeBatchNorm()
    reference = copy.deepcopy(exact)
    with Gradient(reference, zc.EpsilonPlus(canonizers=[canonizer])) as attributor:
        out = reference(x)
        onehot = torch.zeros_like(out)
        onehot[:, 0] = 1.0
        _, theirs = attributor(x, lambda o: o * onehot)
    return f"{float((ours - theirs).abs().max() / theirs.abs().max()):.1e}"


def _timing(model: nn.Module, make_input, repeats: int = 7) -> tuple[str, str]:
    """(EpsilonPlus time / gradient time, first call's extra seconds), runs interleaved.

    Gradient and LRP runs alternate and the best of each is kept, so load from other
    processes on a shared CPU biases neither side.
    """
    x = make_input(torch.float32)
    if not x.is_floating_point():
        return "—", "—"
    tracing._CACHE.pop(model, None)
    lrp = LRP(model, rule_set=EpsilonPlus())
    start = time.perf_counter()
    try:
        lrp.attribute(x, target=0)
    except Exception:  # refused models have no timing
        return "—", "—"
    first = time.perf_counter() - start

    def gradient():
        leaf = x.detach().requires_grad_()
        torch.autograd.grad(model(leaf)[:, 0].sum(), leaf)

    grad_s = lrp_s = float("inf")
    gradient()
    for _ in range(repeats):
        grad_s = min(grad_s, best_time(gradient, repeats=1, warmup=0))
        lrp_s = min(lrp_s, best_time(lambda: lrp.attribute(x, target=0), repeats=1, warmup=0))
    return f"{lrp_s / grad_s:.2f}", f"{max(first - lrp_s, 0.0):.2f} s"


def coverage_row(name: str) -> dict[str, str]:
    """The table row of one model."""
    model, make_input = build(name)
    x = make_input(torch.float32)
    ops = "—"
    try:
        traced = tracing.trace(model, 1)
        ops = str(sum(isinstance(m, tracing.FunctionalOp) for m in traced.modules()))
    except Exception:  # reported by the rule set cells
        pass
    row = {
        "model": name,
        "op modules": ops,
        "EpsilonPlus": _runs(model, EpsilonPlus(), x),
        "EpsilonGammaBox": _runs(model, EpsilonGammaBox(-1.0, 1.0), x)
        if x.is_floating_point()
        else "— (token input)",
        "AttnLRP": _runs(model, AttnLRP(), x),
        "Σ R error (ε≈0, f64)": _conservation(name, model, make_input),
        "zennit EpsilonPlus": zennit_agreement(name, model, make_input),
    }
    row["time / gradient"], row["first call extra"] = _timing(model, make_input)
    return row


def render(rows: list[dict[str, str]]) -> str:
    columns = list(rows[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _read(path: Path) -> list[dict[str, str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    head = [h.strip() for h in lines[0].strip("|").split(" | ")]
    return [dict(zip(head, (c.strip() for c in line[2:-2].split(" | ")))) for line in lines[1:]]


def retime(out: Path, only: list[str] | None = None) -> list[dict[str, str]]:
    """Refresh only the timing columns of an existing table."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = _read(out)
    for row in rows:
        if only and row["model"] not in only:
            continue
        model, make_input = build(row["model"])
        row["time / gradient"], row["first call extra"] = _timing(model, make_input)
        print(row["model"], row["time / gradient"], row["first call extra"], flush=True)
        _write(out, rows)
    return rows


def main(only: list[str] | None = None, out: Path | None = None) -> list[dict[str, str]]:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    names = [*TORCHVISION, *PRETRAINED, *FUNCTIONAL_MODELS, "TextTransformer"]
    if only:
        names = [n for n in names if n in only]
    rows = []
    if only and out is not None and out.exists():
        # Refresh the named rows of an existing table, keep the others (in the usual order).
        kept = {row["model"]: row for row in _read(out) if row["model"] not in names}
        order = [*TORCHVISION, *PRETRAINED, *FUNCTIONAL_MODELS, "TextTransformer"]
        for name in names:
            kept[name] = coverage_row(name)
            print(name, flush=True)
        rows = [kept[n] for n in order if n in kept]
        _write(out, rows)
        return rows
    for name in names:
        start = time.perf_counter()
        rows.append(coverage_row(name))
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
        if out is not None:  # after every row, so a long run leaves its results behind
            _write(out, rows)
    print(render(rows))
    return rows


def _write(out: Path, rows: list[dict[str, str]]) -> None:
    header = (__doc__ or "").split("\n\n", 1)[1].split("\nRun ")[0]
    out.write_text(
        "# LRP coverage (automatic canonization)\n\n"
        + header.replace("``", "`").replace(":mod:", "")
        + "\n"
        + render(rows)
        + "\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--out", default=str(Path(__file__).with_name("LRP_COVERAGE.md")))
    parser.add_argument("--retime", action="store_true", help="only refresh the timings")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or None
    if args.retime:
        retime(Path(args.out), names)
    else:
        main(names, Path(args.out))
