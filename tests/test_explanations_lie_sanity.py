"""Every method added for Sixt et al. (2020) runs in CSC and both SSIM sanity checks (small CNN,
float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_ext import (
    ContrastiveExcitationBackprop,
    ContrastiveLRP,
    DeepLiftAblation,
    DeepLiftLinear,
    ModelSnapshot,
)
from captum_ext.lrp import LRP, LRPCMP, Alpha5Beta4, DeepTaylor, ExcitationBackprop
from quantus_metrics import CSC
from quantus_metrics.explain import explain_func_from
from quantus_metrics.randomisation import ModelRandomisationSSIM, RandomLogitSSIM

METHODS = {
    "DeepLiftLinear": DeepLiftLinear,
    "DeepLiftAblation": DeepLiftAblation,
    "ContrastiveLRP": ContrastiveLRP,
    "ContrastiveExcitationBackprop": ContrastiveExcitationBackprop,
    "LRP-α5β4": lambda m: LRP(m, rule_set=Alpha5Beta4()),
    "ExcitationBackprop": lambda m: LRP(m, rule_set=ExcitationBackprop()),
    "DTD": lambda m: LRP(m, rule_set=DeepTaylor()),
    "LRP-CMP": lambda m: LRP(m, rule_set=LRPCMP()),
}


def _cnn():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(8 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 5),
        ).to(torch.float64).eval()  # fmt: skip


@pytest.mark.parametrize("name", list(METHODS))
def test_method_runs_in_csc_and_ssim_checks(name):
    model, factory = _cnn(), METHODS[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 16, 16, generator=gen, dtype=torch.float64).numpy()
    y = np.array([0, 1, 2, 3])
    snapshot = ModelSnapshot.of(model)
    csc = CSC(method=factory, n_vectors=3)
    scores = csc(model=model, x_batch=x, y_batch=None)
    assert list(scores[0]) == ["input", "3", "6", "8"]
    values = np.array([v for s in scores for k, v in s.items() if k != "input"])
    assert np.all((values >= 0) & (values <= 1 + 1e-9))
    explain = explain_func_from(factory)
    logit = RandomLogitSSIM(n_resamples=200)(
        model=model, x_batch=x, y_batch=y, explain_func=explain
    )
    assert len(logit) == 4 and np.all(np.abs(logit) <= 1 + 1e-9)
    cascade = ModelRandomisationSSIM(n_resamples=200)
    layers = cascade(model=model, x_batch=x, y_batch=y, explain_func=explain)
    assert len(layers) == 4 and len(cascade.layer_names) == 4
    assert snapshot.diff(ModelSnapshot.of(model)) == []
