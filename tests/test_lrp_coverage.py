"""The coverage table's claims on a representative, CI-cheap subset (full table: benchmarks).

Conservation Σ R = f_c of bias-free LRP-0 in float64 (closed-form property) on torchvision
architectures whose forward is full of functional operations, zennit's EpsilonPlus (with its
ResNet canonizer) as the independent reference on resnet18, and the refusal of swin_t.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.lrp_coverage import (
    _conservation,
    _runs,
    bias_free,
    build,
    coverage_row,
    render,
    zennit_agreement,
)
from captum_ext.lrp import LRP, AttnLRP, Epsilon, EpsilonGammaBox, EpsilonPlus
from captum_ext.lrp.tracing import TracingError

# One model per kind of functional code: residual additions (resnet18), channel shuffle with
# chunk/cat (shufflenet), squeeze-excitation gates with Hardsigmoid/Hardswish (mobilenet v3),
# concatenating Fire modules (squeezenet), dense concatenation with unfoldable BatchNorm
# (densenet121), gates + stochastic depth (efficientnet_b0).
_MODELS = [
    "resnet18",
    "shufflenet_v2_x1_0",
    "mobilenet_v3_small",
    "squeezenet1_1",
    pytest.param("densenet121", marks=pytest.mark.slow),
    pytest.param("efficientnet_b0", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", _MODELS)
def test_bias_free_lrp0_conserves_on_torchvision_models(name):
    model, make_input = build(name)
    exact = bias_free(model)
    x = make_input(torch.float64)
    # ε = stabiliser = 1e-30: random-init deep models have logits far below 1e-12.
    lrp = LRP(exact, rule_set=Epsilon(1e-30, stabilizer=1e-30), check_conservation=1e-6)
    relevance = lrp.attribute(x, target=0)
    f = exact(x)[:, 0].detach()
    error = ((relevance.sum((1, 2, 3)) - f).abs() / f.abs()).max()
    assert error < 1e-6, f"{name}: relative conservation error {error:.2e}"


@pytest.mark.slow
def test_pretrained_efficientnet_lite0_row():
    # Real weights (BatchNorm with running means, eps=1e-3, ReLU6, TF "same" padding done by a
    # Conv2d subclass): the three rule sets run finite, bias-free LRP-0 conserves in float64.
    pytest.importorskip("efficientnet_lite_pytorch")
    try:
        model, make_input = build("efficientnet_lite0")
    except ImportError as err:  # the `real` extra's weights or images are missing
        pytest.skip(str(err))
    x = make_input(torch.float32)
    for rule_set in (EpsilonPlus(), EpsilonGammaBox(-1.0, 1.0), AttnLRP()):
        assert _runs(model, rule_set, x) == "✓"
    assert float(_conservation("efficientnet_lite0", model, make_input)) < 1e-6


def test_resnet18_agrees_with_zennit():
    cell = zennit_agreement("resnet18", *build("resnet18"))
    assert float(cell) < 1e-5


def test_swin_is_refused_before_computing_with_the_operation():
    model, make_input = build("swin_t")
    calls = []
    model.features[0][0].register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(TracingError, match=r"shifted_window_attention at .*swin_transformer\.py"):
        LRP(model, rule_set=EpsilonPlus()).attribute(make_input(torch.float32), target=0)
    assert calls == []


def test_coverage_row_and_table_of_a_functional_model():
    row = coverage_row("GatedNet")
    assert row["EpsilonPlus"] == row["EpsilonGammaBox"] == row["AttnLRP"] == "✓"
    assert float(row["Σ R error (ε≈0, f64)"]) < 1e-6
    assert float(row["time / gradient"]) > 0
    table = render([row])
    assert table.splitlines()[2].startswith("| GatedNet |")
