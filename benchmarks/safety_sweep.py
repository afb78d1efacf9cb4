# ruff: noqa: B023, E501  (closures are called at once; the method table reads best unwrapped)
"""Adversarial safety sweep: how many cases per group keep the README's promises.

Every case either gives the right answer (checked against an independent reference: the
single-threaded result, the eval-mode result, the model output, the unbatched score) or is
refused with a ``ValueError``/``TypeError``/``FloatingPointError`` whose message names the
problem. Anything else counts as a violation: a wrong result, a harmed model, a touched global
RNG, a raw error from deep inside torch or Captum. Uses only public names that existed before
the isolation layer, so the same script measures the code before and after it. The models and the
method table are the safety tests' own (``tests/safety_models.py``)::

    python -m benchmarks.safety_sweep            # table + benchmarks/SAFETY_SWEEP.json
    python -m benchmarks.safety_sweep --json out.json --groups threads,targets

Small models and sizes: the whole sweep runs in a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.attr import Saliency
from torch import nn

from captum_ext import (
    CASO,
    LRP,
    LayerLRP,
    ModelSnapshot,
    PatternNet,
    RectGrad,
)
from captum_ext.lrp import Epsilon, EpsilonRule, GradientRule, MergeBatchNorm, PassRule, RuleSet
from tests.safety_models import (
    BATCHED_METRICS,
    Act,
    Attention,
    C,
    D,
    DenseStyle,
    Scaled,
    TupleOut,
    inputs,
    metric_scores,
    mlp,
)
from tests.safety_models import METHODS as SAFETY_METHODS

Verdict = str  # "ok" or a short description of the violation


def refused(fn: Callable[[], Any], *words: str) -> Verdict:
    """ok if ``fn`` raises a clear error mentioning every word (case-insensitive)."""
    try:
        fn()
    except (ValueError, TypeError, FloatingPointError) as err:
        text = str(err).lower()
        missing = [w for w in words if w.lower() not in text]
        return "ok" if not missing else f"unclear {type(err).__name__}: {str(err)[:90]}"
    except Exception as err:  # noqa: BLE001 - any other error is a finding
        return f"raw {type(err).__name__}: {str(err)[:90]}"
    return "silent: no error"


def same(fn: Callable[[], Any], reference: Any, rtol: float = 1e-7, atol: float = 1e-10) -> Verdict:
    try:
        out = fn()
    except Exception as err:  # noqa: BLE001
        return f"raw {type(err).__name__}: {str(err)[:90]}"
    a = torch.as_tensor(np.asarray(out, dtype=np.float64) if not torch.is_tensor(out) else out)
    b = torch.as_tensor(
        np.asarray(reference, dtype=np.float64) if not torch.is_tensor(reference) else reference
    )
    if a.shape != b.shape:
        return f"wrong shape {tuple(a.shape)} vs {tuple(b.shape)}"
    a, b = a.double(), b.double()
    if not torch.allclose(a, b, rtol=rtol, atol=atol):
        return f"wrong by {float((a - b).abs().max()):.3g}"
    return "ok"


def runs(fn: Callable[[], Any]) -> Verdict:
    try:
        out = fn()
    except Exception as err:  # noqa: BLE001
        return f"raw {type(err).__name__}: {str(err)[:90]}"
    t = out if torch.is_tensor(out) else torch.as_tensor(np.asarray(out, dtype=np.float64))
    return "ok" if torch.isfinite(t.float()).all() else "non-finite result"


# ---- models ----------------------------------------------------------------------------------


def bn_net(seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(8, 5),
    )  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(4, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(4, generator=gen) + 0.5)
    return model.double().eval()


def images(n: int = 3, seed: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed)).double()


METHODS: dict[str, Callable[[nn.Module], Callable[..., Any]]] = {
    name: factory for name, (factory, _) in SAFETY_METHODS.items()
}
NONE_IS_PREDICTED = {name for name, (_, predicted) in SAFETY_METHODS.items() if predicted}


def call(name: str, model: nn.Module, x: Any, target: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return METHODS[name](model)(x, target=target)


# ---- groups ----------------------------------------------------------------------------------


def group_threads() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    model, x, t = bn_net(), images(4), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        logits = model(x)
    ref_lrp, ref_rect = LRP(model).attribute(x, target=t), RectGrad(model).attribute(x, target=t)
    before = ModelSnapshot.of(model)
    wrong = {"LRP": 0, "RectGrad": 0, "inference": 0, "errors": 0}

    def hammer(name: str, fn: Callable[[], torch.Tensor], reference: torch.Tensor, n: int):
        for _ in range(n):
            try:
                if not torch.allclose(fn(), reference, rtol=1e-9, atol=1e-12):
                    wrong[name] += 1
            except Exception:  # noqa: BLE001
                wrong["errors"] += 1

    def infer() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    lrp, rect = LRP(model), RectGrad(model)
    jobs = [
        ("LRP", lambda: lrp.attribute(x, target=t), ref_lrp, 10),
        ("LRP", lambda: LRP(model).attribute(x, target=t), ref_lrp, 10),
        ("RectGrad", lambda: rect.attribute(x, target=t), ref_rect, 10),
        ("inference", infer, logits, 30),
    ]
    threads = [threading.Thread(target=hammer, args=job) for job in jobs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out["LRP results (two threads) match single-threaded"] = (
        "ok" if wrong["LRP"] == 0 else f"{wrong['LRP']}/20 wrong"
    )
    out["RectGrad beside LRP matches"] = (
        "ok" if wrong["RectGrad"] == 0 else f"{wrong['RectGrad']}/10 wrong"
    )
    out["plain inference beside LRP/RectGrad"] = (
        "ok" if wrong["inference"] == 0 else f"{wrong['inference']}/30 wrong logits"
    )
    out["no errors in threads"] = "ok" if wrong["errors"] == 0 else f"{wrong['errors']} errors"
    diff = ModelSnapshot.of(model).diff(before)
    out["model unchanged after threads"] = "ok" if not diff else f"{len(diff)} differences"
    out["later LRP call still right"] = same(lambda: LRP(model).attribute(x, target=t), ref_lrp)
    return out


def group_train_mode() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    model = bn_net()
    x, t = images(3), torch.tensor([1, 2, 3])
    for name in METHODS:
        if name.startswith("Pattern"):
            continue
        model.train()
        before, rng = ModelSnapshot.of(model), torch.get_rng_state()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                first = METHODS[name](model)(x, target=t)
                second = METHODS[name](model)(x, target=t)
        except Exception as err:  # noqa: BLE001
            for check in ("buffers", "global RNG", "repeatable"):
                out[f"{name}: {check}"] = f"raw {type(err).__name__}: {str(err)[:60]}"
            continue
        diff = ModelSnapshot.of(model).diff(before)
        out[f"{name}: buffers untouched"] = "ok" if not diff else f"{len(diff)} differences"
        out[f"{name}: global RNG untouched"] = (
            "ok" if torch.equal(torch.get_rng_state(), rng) else "global RNG advanced"
        )
        out[f"{name}: repeatable"] = same(lambda s=second: s, first, rtol=0, atol=0)
    model.eval()
    return out


def group_failing_calls() -> dict[str, Verdict]:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(D, C)
            self.relu = nn.ReLU()

        def forward(self, x):
            raise RuntimeError("boom")

    out: dict[str, Verdict] = {}
    for name in METHODS:
        if name.startswith("Pattern"):
            continue
        model = Boom().double()
        x = inputs()
        before = ModelSnapshot.of(model)
        try:
            call(name, model, x, 0)
        except Exception:  # noqa: BLE001 - the model raises by design
            pass
        problems = []
        if x.requires_grad:
            problems.append("input left requiring grad")
        if ModelSnapshot.of(model).diff(before):
            problems.append("model changed")
        out[f"{name}: failing call leaves no trace"] = "ok" if not problems else ", ".join(problems)
    return out


def group_targets() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    model, x = mlp(), inputs()
    t = torch.tensor([0, 3, 1])
    forms = {
        "list": lambda: t.tolist(),
        "int32 tensor": lambda: t.int(),
        "numpy int64": lambda: t.numpy(),
        "numpy int32": lambda: t.numpy().astype(np.int32),
        "list of numpy ints": lambda: list(t.numpy()),
        "0-d tensor": lambda: torch.tensor(2),
        "numpy scalar": lambda: np.int64(2),
    }
    for name in METHODS:
        try:
            ref = call(name, model, x, t)
            ref2 = call(name, model, x, 2)
        except Exception as err:  # noqa: BLE001
            for form in forms:
                out[f"{name}: {form}"] = f"raw {type(err).__name__} on the reference"
            continue
        for form, make in forms.items():
            reference = ref2 if form in ("0-d tensor", "numpy scalar") else ref
            out[f"{name}: {form}"] = same(lambda m=make: call(name, model, x, m()), reference)
    return out


def group_bad_targets() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    model, x = mlp(), inputs()
    bad = {
        "float tensor": (torch.tensor([0.0, 1.0, 2.0]), "integer"),
        "float array": (np.array([0.5, 1.0, 2.0]), "integer"),
        "out of range": (7, "range"),
        "negative out of range": ([0, 1, -9], "range"),
        "wrong length": ([0, 1], "samples"),
        "string": ("cat", "target"),
    }
    for name in METHODS:
        for label, (target, word) in bad.items():
            out[f"{name}: {label}"] = refused(lambda t=target: call(name, model, x, t), word)
    return out


def group_target_none() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    model, x = mlp(), inputs()
    for name in METHODS:
        if name in NONE_IS_PREDICTED:
            predicted = model(x).argmax(1)
            out[f"{name}: None = predicted"] = same(
                lambda: call(name, model, x, None), call(name, model, x, predicted)
            )
        else:
            out[f"{name}: None refused"] = refused(lambda: call(name, model, x, None), "target")
    return out


def group_outputs() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    for kind in ("tuple", "dict"):
        model = TupleOut(kind).double().eval()
        for name in METHODS:
            if name.startswith("Pattern"):
                continue
            out[f"{name}: {kind} output"] = refused(
                lambda m=model: call(name, m, inputs(), 1), kind, "select"
            )
    return out


def group_inputs() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    model, x = mlp(), inputs()
    for name in METHODS:
        out[f"{name}: missing batch axis"] = refused(lambda: call(name, model, x[0], 1), "batch")
        out[f"{name}: dtype mismatch"] = refused(lambda: call(name, model, x.float(), 1), "float")
        out[f"{name}: empty batch"] = refused(lambda: call(name, model, x[:0], 1), "0")
    return out


def conservation_or_refusal(fn: Callable[[], torch.Tensor], total: torch.Tensor) -> Verdict:
    try:
        r = fn()
    except (TypeError, ValueError) as err:
        return "ok" if "module" in str(err) else f"unclear: {str(err)[:80]}"
    except Exception as err:  # noqa: BLE001
        return f"raw {type(err).__name__}: {str(err)[:80]}"
    got = r.flatten(1).sum(1)
    return (
        "ok"
        if torch.allclose(got, total, rtol=1e-6)
        else f"silently wrong: ΣR {got.tolist()} vs {total.tolist()}"
    )


def group_lrp() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    model, x, t = Scaled().double().eval(), inputs(), torch.tensor([0, 1, 2])
    scale = torch.tensor(2.0, dtype=torch.float64)
    f = model(x, scale).gather(1, t[:, None]).squeeze(1)
    eps0 = Epsilon(0.0)
    out["LRP: scale in additional_forward_args"] = same(
        lambda: (
            LRP(model, rule_set=eps0).attribute(x, target=t, additional_forward_args=scale).sum(1)
        ),
        f,
    )
    out["LayerLRP: scale in additional_forward_args"] = same(
        lambda: (
            LayerLRP(model, model.net[2], rule_set=eps0)
            .attribute(x, target=t, additional_forward_args=(scale,))
            .sum(1)
        ),
        f,
    )
    dense = DenseStyle(zero_bias=True).double().eval()
    xi = torch.rand(2, 1, 5, 5, dtype=torch.float64)
    fd = dense(xi)[:, 1].detach()
    out["LRP: F.relu + pooling in forward"] = conservation_or_refusal(
        lambda: LRP(dense, rule_set=eps0).attribute(xi, target=1), fd
    )
    try:
        from torchvision.models import densenet121

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            dn = densenet121(num_classes=10).double().eval()
        for m in dn.modules():
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        xd = torch.rand(1, 3, 32, 32, dtype=torch.float64)
        out["LRP: densenet121 (zero biases)"] = conservation_or_refusal(
            lambda: LRP(dn, rule_set=eps0).attribute(xd, target=1), dn(xd)[:, 1].detach()
        )
    except ImportError:
        pass
    net = mlp()
    out["RuleSet: name_map typo"] = refused(
        lambda: LRP(net, rule_set=RuleSet(name_map={"3": EpsilonRule()})).attribute(inputs(), target=0),
        "3",
        "'2'",
    )
    nested = nn.Sequential(mlp()).double()
    out["RuleSet: name_map names a container"] = refused(
        lambda: LRP(nested, rule_set=Epsilon(name_map={"0": PassRule()})).attribute(inputs(), target=0),
        "container",
    )
    bn = nn.Sequential(
        nn.Linear(D, 5), nn.BatchNorm1d(5), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, C)
    )
    bn = bn.double().eval()
    out["MergeBatchNorm: conflicting pair"] = refused(
        lambda: LRP(bn, canonizers=[MergeBatchNorm(pairs=[("2", "1")])]).attribute(inputs(), target=0),
        "both",
    )
    out["MergeBatchNorm: unknown name"] = refused(
        lambda: LRP(bn, canonizers=[MergeBatchNorm(pairs=[("0", "bn")])]).attribute(inputs(), target=0),
        "bn",
        "valid",
    )
    ref = LayerLRP(net, net[2]).attribute(inputs(), target=1)
    out["LayerLRP: layer given by name"] = same(
        lambda: LayerLRP(net, "2").attribute(inputs(), target=1), ref
    )
    out["LayerLRP: layer of another model"] = refused(
        lambda: LayerLRP(net, nn.Linear(5, C)).attribute(inputs(), target=1), "submodule"
    )
    out["LayerLRP: unknown layer name"] = refused(
        lambda: LayerLRP(net, "conv2").attribute(inputs(), target=1), "conv2"
    )
    emb = nn.Sequential(nn.Embedding(7, 3), nn.Flatten(), nn.Linear(6, C)).double().eval()
    nn.init.zeros_(emb[2].bias)
    tokens = torch.tensor([[1, 2], [3, 6]])
    out["LayerLRP: token ids through an embedding"] = same(
        lambda: (
            LayerLRP(emb, emb[1], rule_set=Epsilon(0.0, name_map={"0": GradientRule()}))
            .attribute(tokens, target=2)
            .sum(1)
        ),
        emb(tokens)[:, 2].detach(),
    )
    return out


def group_metrics() -> dict[str, Verdict]:
    from quantus_metrics import (
        ModelRandomisationSSIM,
        RandomLogitSSIM,
        SpectralComplexity,
        explain_func_from,
        ssim_batch,
    )

    out: dict[str, Verdict] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 3)
        ).eval()
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 1, 8, 8)).astype(np.float32), np.array([0, 1, 2, 0])
    maps = rng.random((4, 1, 8, 8))
    ef = explain_func_from(Saliency)
    quiet = {"disable_warnings": True, "display_progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cls in (ModelRandomisationSSIM, RandomLogitSSIM):
            out[f"{cls.__name__}: float16 maps"] = runs(
                lambda c=cls: [
                    np.mean(list(s.values())) if isinstance(s, dict) else s
                    for s in c(**quiet)(cnn, x, y, a_batch=maps.astype(np.float16), explain_func=ef)
                ]
            )
        out["SpectralComplexity: float16 maps"] = runs(
            lambda: SpectralComplexity(**quiet)(cnn, x, y, a_batch=maps.astype(np.float16))
        )
        out["ModelRandomisationSSIM: a_batch, no explain_func"] = refused(
            lambda: ModelRandomisationSSIM(**quiet)(cnn, x, y, a_batch=maps), "explain_func"
        )
    out["ssim: 1-D maps refused as 1-D"] = refused(
        lambda: ssim_batch(torch.rand(4, 1, 20), torch.rand(4, 1, 20)), "1-D"
    )
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    pn = PatternNet(net).fit(torch.rand(16, 3, dtype=torch.float64), progress=False)
    state = pn.patterns_state_dict()
    for k in state:
        state[k].fill_(1e200)
    pn.load_patterns(state)
    verdict = refused(lambda: pn.attribute(torch.rand(2, 3, dtype=torch.float64), target=0))
    if verdict == "ok":
        try:
            pn.attribute(torch.rand(2, 3, dtype=torch.float64), target=0)
        except FloatingPointError as err:
            verdict = "advises a parameter PatternNet lacks" if "epsilon" in str(err) else "ok"
    out["PatternNet: non-finite advice"] = verdict
    return out


def group_batching() -> dict[str, Verdict]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = (
            nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(192, 4))
            .double()
            .eval()
        )
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 1, 8, 8)), rng.integers(0, 4, 8)
    out: dict[str, Verdict] = {}
    for metric in BATCHED_METRICS:
        scores = {}
        try:
            for bs in (1, 3, 8):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scores[bs] = metric_scores(metric, cnn, x, y, bs)
        except Exception as err:  # noqa: BLE001
            out[f"{metric}: batch_size 1/3/8"] = f"raw {type(err).__name__}: {str(err)[:80]}"
            continue
        worst = max(float(np.abs(scores[b] - scores[8]).max()) for b in (1, 3))
        out[f"{metric}: batch_size 1/3/8"] = (
            "ok" if worst < 1e-9 else f"scores differ by {worst:.3g}"
        )
    return out


def group_caso() -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0)) * 3
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        for act in (nn.Hardsigmoid(), nn.Hardswish()):
            model = Act(act).eval()
            out[f"CASO: {type(act).__name__} (double backward)"] = runs(
                lambda m=model: CASO(m).attribute(x, target=1, hessian="autograd", n_iter=2)
            )
        att = Attention().eval()
        out["CASO: attention (double backward)"] = runs(
            lambda: CASO(att).attribute(
                torch.randn(2, 3, 4), target=1, hessian="autograd", n_iter=2
            )
        )
        for dt in (torch.float16, torch.bfloat16):
            m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5)).to(dt).eval()
            out[f"CASO: {dt} closed-form eigh"] = runs(
                lambda m=m, dt=dt: CASO(m).attribute(x.to(dt), target=1, n_iter=2)
            )
    return out


GROUPS = {
    "threads": group_threads,
    "train mode": group_train_mode,
    "failing calls": group_failing_calls,
    "target forms": group_targets,
    "bad targets": group_bad_targets,
    "target=None": group_target_none,
    "tuple/dict outputs": group_outputs,
    "batch axis/dtype/B=0": group_inputs,
    "LRP silent cases": group_lrp,
    "metrics": group_metrics,
    "batch-size invariance": group_batching,
    "CASO second order": group_caso,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write all verdicts here")
    parser.add_argument("--groups", default=None, help="comma-separated subset of groups")
    args = parser.parse_args()
    torch.set_num_threads(2)
    chosen = GROUPS if args.groups is None else {g: GROUPS[g] for g in args.groups.split(",")}
    results: dict[str, dict[str, Verdict]] = {}
    print(f"{'group':24s} {'ok':>4s} / {'cases':<5s}")
    for group, run in chosen.items():
        try:
            results[group] = run()
        except Exception as err:  # noqa: BLE001 - a crashing group counts as all-violating
            results[group] = {"group crashed": f"raw {type(err).__name__}: {str(err)[:90]}"}
        ok = sum(v == "ok" for v in results[group].values())
        print(f"{group:24s} {ok:4d} / {len(results[group]):<5d}")
    total = sum(len(v) for v in results.values())
    ok = sum(v == "ok" for r in results.values() for v in r.values())
    print(f"{'total':24s} {ok:4d} / {total:<5d}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
