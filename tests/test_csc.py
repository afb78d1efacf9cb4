"""CSC (Sixt et al., 2020, section 5): convergence oracles, random baselines, safety and Quantus
fit."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest
import quantus
import torch
from captum.attr import LRP, Deconvolution, GuidedBackprop, IntegratedGradients, Saliency
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule
from torch import nn

from captum_ext.core import ModelSnapshot
from quantus_metrics.csc import CSC, cosine_similarity_convergence, random_baseline
from quantus_metrics.explain import explain_func_from

PUBLISHED_BASELINES = {10: 0.228, 32: 0.121, 64: 0.085, 128: 0.060, 1024: 0.021}


def _relu_stack(depth: int = 8, width: int = 64, seed: int = 0) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        layers.append(nn.Linear(width, 10))
        return nn.Sequential(*layers).double().eval()


def _set_rules(model: nn.Module, make_rule) -> None:
    for module in model:
        if isinstance(module, nn.Linear):
            module.rule = make_rule()


def _x(n: int = 16, features: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(
        n, features, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _layer_medians(result) -> dict[str, float]:
    return {name: float(np.nanmedian(v.numpy())) for name, v in result.values.items()}


@pytest.mark.parametrize("channels", sorted(PUBLISHED_BASELINES))
def test_random_baseline_matches_published_values(channels):
    exact = random_baseline(channels)
    assert abs(exact - PUBLISHED_BASELINES[channels]) < 0.0015  # the paper rounds to 3 digits
    # Monte-Carlo estimate: the median of 40 000 |cos| has a standard error ≈ 0.3 / (√n C^½).
    simulated = random_baseline(
        channels, n_samples=40_000, generator=torch.Generator().manual_seed(0)
    )
    assert abs(simulated - exact) < 5 * 0.6 / (np.sqrt(4_000) * np.sqrt(channels)) + 1e-3


def test_zplus_converges_on_dense_relu_stack():
    # Captum's α1β0 with zero bias on post-ReLU (non-negative) inputs is exactly the z⁺ rule.
    model = _relu_stack()
    _set_rules(model, lambda: Alpha1_Beta0_Rule(set_bias_to_zero=True))
    result = cosine_similarity_convergence(LRP(model), _x(), n_vectors=5)
    medians = _layer_medians(result)
    names = list(medians)  # input first, injection layer last
    assert names == ["input", *[str(i) for i in range(2, 15, 2)]]
    # A few layers below the injection the chain has converged (Sixt et al., 2020: ≥ 0.99).
    for name in names[:-3]:
        assert medians[name] >= 0.99, (name, medians)
    # ...and convergence grows monotonically with depth below the injection layer.
    assert medians[names[0]] >= medians[names[-2]]


def test_captum_ext_zplus_rule_converges():
    import captum_ext.lrp as lrp

    model = _relu_stack()
    result = cosine_similarity_convergence(
        lrp.LRP(model, rule_set=lrp.Alpha1Beta0()), _x(), n_vectors=5
    )
    medians = _layer_medians(result)
    for name in list(medians)[:-3]:
        assert medians[name] >= 0.99, (name, medians)


def test_lrp_epsilon_small_does_not_converge():
    model = _relu_stack()
    _set_rules(model, lambda: EpsilonRule(epsilon=1e-9))
    medians = _layer_medians(cosine_similarity_convergence(LRP(model), _x(), n_vectors=5))
    assert max(medians.values()) < 0.9, medians


def test_gradient_does_not_converge_on_relu_stack():
    medians = _layer_medians(cosine_similarity_convergence(Saliency(_relu_stack()), _x()))
    assert max(medians.values()) < 0.5, medians


def test_gradient_through_orthogonal_layers_keeps_the_injected_cosines():
    # Closed form: orthogonal matrices preserve angles, so every layer's |cos| equals the
    # |cos| of the injected N(0, I) vectors (recomputed here from the same seeded draw), and
    # the median matches the random baseline of C within sampling error.
    width, n, n_vectors = 32, 200, 5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = []
        for _ in range(4):
            layer = nn.Linear(width, width, bias=False).double()
            nn.init.orthogonal_(layer.weight)  # in float64: orthogonal to ~1e-15
            layers.append(layer)
    model = nn.Sequential(*layers).double()
    result = cosine_similarity_convergence(
        Saliency(model),
        _x(n, width),
        n_vectors=n_vectors,
        generator=torch.Generator().manual_seed(5),
    )
    v = torch.randn(
        n_vectors * n, width, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    v = v.reshape(n_vectors, n, width)
    expected = torch.stack(
        [
            torch.nn.functional.cosine_similarity(v[i], v[j], dim=1).abs()
            for i, j in itertools.combinations(range(n_vectors), 2)
        ]
    ).T  # (n, pairs)
    for name, values in result.values.items():
        torch.testing.assert_close(values, expected, atol=1e-10, rtol=0, msg=name)
        assert abs(float(values.median()) - random_baseline(width)) < 0.02
    assert result.channels == {"input": width, "1": width, "2": width, "3": width}


def test_conv_maps_use_per_location_cosines(cnn):
    x = torch.rand(
        2, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=cnn.features[0].weight.dtype
    )
    result = cosine_similarity_convergence(Saliency(cnn), x, n_vectors=3)
    # 3 pairs × 32×32 locations at the second conv's input (32 channels, before pooling).
    assert result.values["features.2"].shape == (2, 3 * 32 * 32)
    assert result.channels["features.2"] == 32
    assert result.channels["input"] == 1
    # One channel: |cos| is 1 wherever both vectors are non-zero.
    finite = result.values["input"][torch.isfinite(result.values["input"])]
    torch.testing.assert_close(finite, torch.ones_like(finite), atol=1e-6, rtol=0)


def test_injection_layer_limits_traced_layers(cnn):
    x = torch.rand(
        2, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=cnn.features[0].weight.dtype
    )
    result = cosine_similarity_convergence(Saliency(cnn), x, layer="features.4", n_vectors=3)
    assert list(result.values) == ["input", "features.2"]


def test_bad_input_errors(cnn):
    x = torch.rand(2, 1, 32, 32, dtype=cnn.features[0].weight.dtype)
    with pytest.raises(ValueError, match="valid module names.*features.0"):
        cosine_similarity_convergence(Saliency(cnn), x, layer="nope")
    with pytest.raises(ValueError, match="n_vectors"):
        cosine_similarity_convergence(Saliency(cnn), x, n_vectors=1)
    with pytest.raises(ValueError, match="n_vectors"):
        CSC(method=Saliency, n_vectors=1)
    with pytest.raises(TypeError, match="Supported: .*Saliency"):
        cosine_similarity_convergence(IntegratedGradients(cnn), x)
    with pytest.raises(ValueError, match="non-finite"):
        cosine_similarity_convergence(Saliency(cnn), torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="needs the attribution method"):
        CSC()(model=cnn, x_batch=x.numpy(), y_batch=np.zeros(2, dtype=int))


def test_model_and_global_rng_untouched_also_on_failure():
    model = _tiny_cnn()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    before = ModelSnapshot.of(model)
    state = torch.random.get_rng_state()
    for method in (Saliency(model), GuidedBackprop(model), Deconvolution(model)):
        cosine_similarity_convergence(method, x, n_vectors=2)
        with pytest.raises(RuntimeError):  # wrong input size fails inside the forward pass
            cosine_similarity_convergence(method, x[..., :12], n_vectors=2)
    assert before.diff(ModelSnapshot.of(model)) == []
    assert torch.equal(state, torch.random.get_rng_state())


def test_seeded_and_reproducible(mlp):
    x = torch.rand(4, 64, dtype=mlp[1].weight.dtype, generator=torch.Generator().manual_seed(0))
    a = CSC(method=Saliency, seed=3)(model=mlp, x_batch=x.numpy(), y_batch=None)
    b = CSC(method=Saliency, seed=3)(model=mlp, x_batch=x.numpy(), y_batch=None)
    c = CSC(method=Saliency, seed=4)(model=mlp, x_batch=x.numpy(), y_batch=None)
    assert a == b and a != c


def _tiny_cnn() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 8 * 8, 10),
        ).double()


CAPTUM = {"Saliency": Saliency, "GuidedBackprop": GuidedBackprop, "Deconvolution": Deconvolution}
OPTIONAL = {
    "RectGrad": ("captum_ext.rectgrad", "RectGrad", False),
    "PatternNet": ("captum_ext.pattern", "PatternNet", True),
    "PatternAttribution": ("captum_ext.pattern", "PatternAttribution", True),
    "LRP-EpsilonPlus": ("captum_ext.lrp", "LRP", False),
    "DeepLift": ("captum.attr", "DeepLift", False),
}


def _method_case(name: str):
    """Model, float64 input and ``model -> Attribution`` factory for a registered method.

    Captum's own LRP fails on nn.Flatten even with IdentityRule (hook size error), so it runs
    on a dense stack; everything else on a tiny CNN.
    """
    model = _relu_stack(depth=3) if name == "CaptumLRP" else _tiny_cnn()
    shape = (3, 64) if name == "CaptumLRP" else (3, 1, 16, 16)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if name not in OPTIONAL:
        return model, x, CAPTUM.get(name, LRP)
    module_name, cls_name, fit = OPTIONAL[name]
    cls = getattr(importlib.import_module(module_name), cls_name)

    def factory(m, cls=cls, fit=fit):
        return cls(m).fit(x, progress=False) if fit else cls(m)

    return model, x, factory


@pytest.mark.parametrize("name", [*CAPTUM, "CaptumLRP", *OPTIONAL])
def test_every_registered_method_runs_in_quantus_evaluate(name):
    model, x, factory = _method_case(name)
    snapshot = ModelSnapshot.of(model)
    results = quantus.evaluate(
        metrics={"CSC": CSC(n_vectors=3)},
        xai_methods={name: explain_func_from(factory)},
        model=model,
        x_batch=x.numpy(),
        y_batch=np.array([0, 1, 2]),
        explain_func_kwargs={},
    )
    scores = results[name]["CSC"]
    assert len(scores) == 3 and list(scores[0])[0] == "input"
    for sample in scores:
        values = np.array([v for k, v in sample.items() if k != "input"])
        assert np.all((values >= 0) & (values <= 1 + 1e-9)), sample
    assert snapshot.diff(ModelSnapshot.of(model)) == []


@pytest.mark.parametrize("name", [*CAPTUM, "CaptumLRP", *OPTIONAL])
def test_sequential_and_batched_backward_give_the_same_scores(name):
    """One backward over the n×-repeated batch (GPU default) and n backward passes through one
    forward (CPU default) inject the same vectors: identical values per layer (float64)."""
    model, x, factory = _method_case(name)
    method = factory(model)
    results = [
        cosine_similarity_convergence(
            method, x, n_vectors=4, generator=torch.Generator().manual_seed(5), batched=batched
        )
        for batched in (True, False)
    ]
    assert list(results[0].values) == list(results[1].values) and len(results[0].values) >= 3
    for layer, values in results[0].values.items():
        torch.testing.assert_close(
            results[1].values[layer], values, rtol=1e-10, atol=1e-12, equal_nan=True
        )


def test_distributions_baselines_and_plot(mlp, tmp_path):
    x = torch.rand(5, 64, dtype=mlp[1].weight.dtype, generator=torch.Generator().manual_seed(0))
    metric = CSC(method=Saliency, n_vectors=4, return_distributions=True)
    scores = metric(model=mlp, x_batch=x.numpy(), y_batch=None, batch_size=2)
    assert len(scores) == 5
    assert set(metric.distributions) == set(scores[0])
    assert metric.distributions["3"].shape == (5, 6)  # 6 pairs of 4 vectors, dense layer
    np.testing.assert_allclose(
        np.nanmedian(metric.distributions["3"], axis=1), [s["3"] for s in scores]
    )
    assert metric.channels["3"] == 64
    assert metric.baselines["3"] == pytest.approx(PUBLISHED_BASELINES[64], abs=0.0015)
    ax = metric.plot(label="Saliency", path_to_save=str(tmp_path / "csc.png"))
    assert ax.get_yscale() == "log" and (tmp_path / "csc.png").exists()
    aggregated = CSC(method=Saliency, return_aggregate=True)(
        model=mlp, x_batch=x.numpy(), y_batch=None
    )
    assert set(aggregated[0]) == set(scores[0])


@pytest.mark.slow
def test_example_runs(capsys):
    import runpy
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "csc_and_sanity_checks.py"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "CSC: median |cos|" in out and "random logit" in out
