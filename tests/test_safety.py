"""Never a harmed model, never a silently wrong answer.

Threads, train mode, failing calls and the model's state: every attribution call runs on a
private view of the model (captum_ext.core.isolation), so the user's module is never written.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from torch import nn

from captum_ext import (
    CAFO,
    CASO,
    LRP,
    AdaptGrad,
    FusionGrad,
    LayerLRP,
    ModelSnapshot,
    NoiseGrad,
    RectGrad,
    SeededNoiseTunnel,
)
from captum_ext.core.isolation import TrainModeWarning, model_view
from captum_ext.zoo import SmallVGG
from tests.safety_models import Act, Attention, ClampHardsigmoid, ClampHardswish


def _vgg(seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = SmallVGG(3, 10, width=4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.double().eval()


def _x(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)).double()


def test_view_shares_storage_and_never_writes_the_model():
    model = _vgg()
    before = ModelSnapshot.of(model)
    view, memo = model_view(model)
    assert view is not model and view.features[0] is not model.features[0]
    assert view.features[0].weight.data_ptr() == model.features[0].weight.data_ptr()
    view.features[0].register_forward_hook(lambda *a: None)
    view.features[0]._parameters["weight"] = nn.Parameter(torch.zeros(1))
    view.features[2].inplace = True
    assert ModelSnapshot.of(model).diff(before) == []


def test_threads_lrp_rectgrad_and_inference_match_single_threaded():
    model = _vgg()
    x, target = _x(), torch.tensor([0, 3, 5, 9])
    before = ModelSnapshot.of(model)
    with torch.no_grad():
        logits = model(x)
    ref_lrp = LRP(model).attribute(x, target=target)
    ref_rect = RectGrad(model).attribute(x, target=target)
    errors: list[str] = []
    start = threading.Barrier(3)

    def run(name, fn, reference, n=15):
        start.wait()
        for _ in range(n):
            try:
                out = fn()
            except Exception as err:  # noqa: BLE001 - any failure is a finding
                errors.append(f"{name}: {type(err).__name__} {err}")
                continue
            if not torch.allclose(out, reference, rtol=1e-9, atol=1e-12):
                errors.append(f"{name}: max diff {(out - reference).abs().max():.3g}")

    def infer():
        with torch.no_grad():
            return model(x)

    lrp, rect = LRP(model), RectGrad(model)  # one instance shared by many calls
    threads = [
        threading.Thread(
            target=run, args=("LRP", lambda: lrp.attribute(x, target=target), ref_lrp)
        ),
        threading.Thread(
            target=run, args=("RectGrad", lambda: rect.attribute(x, target=target), ref_rect)
        ),
        threading.Thread(target=run, args=("inference", infer, logits, 40)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ModelSnapshot.of(model).diff(before) == []
    # later calls are still right
    torch.testing.assert_close(LRP(model).attribute(x, target=target), ref_lrp)


def test_two_lrp_threads_on_one_resnet_block_model():
    from captum_ext.zoo import torchvision_model

    model = torchvision_model("resnet18", n_classes=10, seed=0).double()
    x, target = torch.rand(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 2])
    reference = LRP(model).attribute(x, target=target)
    before = ModelSnapshot.of(model)
    results: list[torch.Tensor] = []
    errors: list[str] = []

    def run():
        for _ in range(3):
            try:
                results.append(LRP(model).attribute(x, target=target))
            except Exception as err:  # noqa: BLE001
                errors.append(repr(err))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for r in results:
        torch.testing.assert_close(r, reference, rtol=1e-9, atol=1e-12)
    assert ModelSnapshot.of(model).diff(before) == []


def _train_mode_model() -> nn.Module:
    model = _vgg()
    model.train()
    return model


def _methods(model):
    yield "LRP", lambda x, t: LRP(model).attribute(x, target=t)
    yield "LayerLRP", lambda x, t: LayerLRP(model, model.features[3]).attribute(x, target=t)
    yield "RectGrad", lambda x, t: RectGrad(model).attribute(x, target=t)
    yield (
        "AdaptGrad",
        lambda x, t: AdaptGrad(Saliency(model), bounds=(0.0, 1.0)).attribute(
            x, target=t, nt_samples=3, seed=0
        ),
    )
    yield (
        "SeededNoiseTunnel",
        lambda x, t: SeededNoiseTunnel(Saliency(model)).attribute(
            x, target=t, nt_samples=3, stdevs=0.1, seed=0
        ),
    )
    yield (
        "NoiseGrad",
        lambda x, t: NoiseGrad(Saliency(model), n_models=2).attribute(
            x, target=t, seed=0, show_progress=False
        ),
    )
    yield (
        "FusionGrad",
        lambda x, t: FusionGrad(Saliency(model), n_models=2, n_samples=2).attribute(
            x, target=t, seed=0, show_progress=False
        ),
    )
    yield "CAFO", lambda x, t: CAFO(model).attribute(x, target=t, n_iter=2)
    yield "CASO", lambda x, t: CASO(model).attribute(x, target=t, n_iter=2)


@pytest.mark.parametrize("name", [n for n, _ in _methods(nn.Identity())])
def test_train_mode_leaves_buffers_and_global_rng_untouched(name):
    model = _train_mode_model()
    fn = dict(_methods(model))[name]
    x, t = _x(3), torch.tensor([1, 2, 3])
    before = ModelSnapshot.of(model)
    rng = torch.get_rng_state()
    with pytest.warns(TrainModeWarning, match="eval mode"):
        first = fn(x, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainModeWarning)
        second = fn(x, t)
    assert torch.equal(torch.get_rng_state(), rng)
    assert ModelSnapshot.of(model).diff(before) == []
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    # deterministic = the eval-mode function
    model.eval()
    torch.testing.assert_close(fn(x, t), first, rtol=1e-9, atol=1e-12)


def test_failing_noisegrad_restores_requires_grad():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            raise RuntimeError("boom")

    x = torch.rand(2, 4)
    with pytest.raises(RuntimeError, match="boom"):
        NoiseGrad(Saliency(Boom()), n_models=1).attribute(x, target=0, show_progress=False)
    assert not x.requires_grad


@pytest.mark.parametrize(
    ("act", "reference"),
    [(nn.Hardsigmoid(), ClampHardsigmoid()), (nn.Hardswish(), ClampHardswish())],
    ids=["hardsigmoid", "hardswish"],
)
def test_caso_double_backward_through_hard_activations(act, reference):
    model = Act(act).double().eval()
    oracle = Act(reference).double().eval()
    oracle.load_state_dict(model.state_dict())
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = CASO(model).attribute(x, target=1, hessian="autograd", n_iter=3)
        want = CASO(oracle).attribute(x, target=1, hessian="autograd", n_iter=3)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert "forward" not in vars(model.act)  # only the private view was patched


def test_caso_double_backward_through_attention():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Attention().double().eval()
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = CASO(model).attribute(x, target=1, hessian="autograd", n_iter=2)
    # oracle: the curvature at the solution's first step is H·g from finite differences of the
    # gradient, compared through CASO's own λ₂ = L/2 + c1 (L from the exact dense Hessian)
    from torch.autograd.functional import hessian

    def loss(row):
        logits = model(row.view(1, 3, 4))
        return torch.nn.functional.cross_entropy(logits, torch.tensor([1]))

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        dense = [hessian(loss, x[i].flatten()) for i in range(2)]
    top = torch.stack([torch.linalg.eigvalsh(h)[-1].clamp_min(0) for h in dense])
    caso = CASO(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        caso.attribute(x, target=1, hessian="autograd", n_iter=2, power_iterations=40)
    torch.testing.assert_close(caso.last_lambda2, top / 2 + 10.0, rtol=1e-6, atol=1e-8)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_caso_half_precision_eigenvalues(dtype):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5)).eval()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    caso32 = CASO(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        caso32.attribute(x, target=1, n_iter=2)
        half = CASO(model.to(dtype))
        out = half.attribute(x.to(dtype), target=1, n_iter=2)
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    # the closed-form top eigenvalue agrees with float32 to half precision
    torch.testing.assert_close(half.last_lambda2.float(), caso32.last_lambda2, rtol=0.05, atol=0.05)


def test_pattern_fit_and_explain_func_from_leave_a_train_mode_model_untouched():
    from captum_ext import PatternAttribution
    from quantus_metrics import explain_func_from

    model = _train_mode_model()
    before, rng = ModelSnapshot.of(model), torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        PatternAttribution(model).fit(_x(6), progress=False)
        # Captum's own Saliency would update BatchNorm statistics and draw Dropout masks
        explain = explain_func_from(Saliency)
        first = explain(model=model, inputs=_x(2).numpy(), targets=[1, 2])
        second = explain(model=model, inputs=_x(2).numpy(), targets=[1, 2])
    assert ModelSnapshot.of(model).diff(before) == []
    assert torch.equal(torch.get_rng_state(), rng)
    np.testing.assert_array_equal(first, second)
