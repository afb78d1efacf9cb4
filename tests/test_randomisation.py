"""Randomisation SSIM and random-logit SSIM (Sixt et al., 2020, Figure 4) against independent
oracles."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import quantus
import torch
from captum.attr import GuidedBackprop, Saliency
from skimage.metrics import structural_similarity
from torch import nn

from captum_ext.core import ModelSnapshot
from captum_ext.core.randomness import derive_seed
from captum_ext.zoo import SmallCNN
from quantus_metrics.explain import explain_func_from
from quantus_metrics.randomisation import (
    ModelRandomisationSSIM,
    RandomLogitSSIM,
    parameterised_layers,
    randomise_layer,
)

SALIENCY = explain_func_from(Saliency, abs=False)


@pytest.fixture(scope="module")
def digits_batch(digits_test):
    images, labels = digits_test.tensors()
    return images[:6].numpy(), labels[:6].numpy()


@pytest.fixture(scope="module")
def cnn32():
    """A small CNN for 32×32 digits (the small CNN's 8M-parameter dense layer is slow)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 8 * 8, 32),
            nn.ReLU(),
            nn.Linear(32, 10),
        ).eval()


class Reordered(nn.Module):
    """Registration order (head first) differs from execution order (body first)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 4)
        self.body2 = nn.Linear(16, 16)
        self.body1 = nn.Linear(16, 16)
        self.norm = nn.BatchNorm1d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.head(torch.relu(self.body2(self.norm(torch.relu(self.body1(x))))))


def _reordered() -> Reordered:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Reordered().eval()


def _x_images(n: int = 6) -> np.ndarray:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0)).numpy()


def _recorder(states: list[dict[str, torch.Tensor]]):
    def explain(model, inputs, targets, **kwargs):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return SALIENCY(model=model, inputs=inputs, targets=targets)

    return explain


def _layer_of(key: str) -> str:
    return key.rsplit(".", 1)[0]


@pytest.mark.slow
def test_guided_backprop_ignores_last_layer_while_gradient_does_not(digits_batch):
    # Adebayo et al. (2018) / Sixt et al. (2020): Guided BP maps barely change when the logit layer
    # is
    # randomised; the gradient's do.
    x, y = digits_batch
    with torch.random.fork_rng(devices=[]):  # the deep small CNN: convergence needs depth
        torch.manual_seed(0)
        cnn32 = SmallCNN(1, 10).eval()
    layer = {"layers": ["classifier.3"], "n_resamples": 500}
    gbp = ModelRandomisationSSIM(**layer)(
        model=cnn32, x_batch=x, y_batch=y, explain_func=explain_func_from(GuidedBackprop)
    )
    grad = ModelRandomisationSSIM(**layer)(model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY)
    gbp_scores = np.array([s["classifier.3"] for s in gbp])
    grad_scores = np.array([s["classifier.3"] for s in grad])
    assert gbp_scores.mean() > 0.85 and grad_scores.mean() < 0.4, (gbp_scores, grad_scores)
    assert (gbp_scores > grad_scores).all()


def test_scores_equal_a_slow_skimage_reference(cnn32, digits_batch):
    # Oracle: rebuild the randomised model by hand (documented procedure: reset_parameters
    # under a private seed), explain, normalise with numpy percentiles and score with skimage.
    x, y = digits_batch
    metric = ModelRandomisationSSIM(layers=["9"], seed=3, n_resamples=100)
    scores = metric(model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY)
    randomised = copy.deepcopy(cnn32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(3, "9"))
        randomised[9].reset_parameters()

    def normalised(model):
        maps = SALIENCY(model=model, inputs=x, targets=y).astype(np.float64).sum(axis=1)
        lo = np.percentile(maps, 0.5, axis=(1, 2), keepdims=True)
        hi = np.percentile(maps, 99.5, axis=(1, 2), keepdims=True)
        return np.clip((hi - maps) / (hi - lo), 0, 1)

    a, b = normalised(cnn32), normalised(randomised)
    for i in range(len(x)):
        ref = max(
            structural_similarity(a[i], b[i], win_size=5, data_range=2.0),
            structural_similarity(a[i], 1 - b[i], win_size=5, data_range=2.0),
        )
        assert abs(scores[i]["9"] - ref) < 1e-5


def test_execution_order_cascading_and_independent():
    model = _reordered()
    assert parameterised_layers(model, torch.zeros(2, 16)) == ["body1", "body2", "head"]
    assert parameterised_layers(model, torch.zeros(2, 16), include_norm=True) == [
        "body1",
        "norm",
        "body2",
        "head",
    ]
    original = {k: v.clone() for k, v in model.state_dict().items()}
    for order in ("cascading", "independent"):
        states: list[dict[str, torch.Tensor]] = []
        metric = ModelRandomisationSSIM(order=order, win_size=3, n_resamples=100)
        metric(
            model=model,
            x_batch=_x_images(),
            y_batch=np.zeros(6, int),
            explain_func=_recorder(states),
        )
        assert metric.layer_names == ["head", "body2", "body1"]
        assert len(states) == 4  # reference + one per layer
        changed = [
            sorted({_layer_of(k) for k in original if not torch.equal(original[k], s[k])})
            for s in states
        ]
        if order == "cascading":
            assert changed == [[], ["head"], ["body2", "head"], ["body1", "body2", "head"]]
        else:
            assert changed == [[], ["head"], ["body2"], ["body1"]]  # exactly one layer each
    # Same-shaped layers get different weights (quantus.MPRT gives them identical ones).
    assert not torch.equal(states[2]["body2.weight"], states[3]["body1.weight"])


def test_norm_layers_only_when_asked():
    states: list[dict[str, torch.Tensor]] = []
    metric = ModelRandomisationSSIM(randomise_norm_layers=True, win_size=3, n_resamples=100)
    metric(
        model=_reordered(),
        x_batch=_x_images(),
        y_batch=np.zeros(6, int),
        explain_func=_recorder(states),
    )
    assert metric.layer_names == ["head", "body2", "norm", "body1"]
    # A randomised norm layer is really random (reset_parameters would give ones and zeros).
    assert not torch.equal(states[3]["norm.weight"], torch.ones(16))


def test_model_rng_untouched_and_reproducible_also_on_failure(cnn32, digits_batch):
    x, y = digits_batch
    before = ModelSnapshot.of(cnn32)
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    run = {"model": cnn32, "x_batch": x, "y_batch": y, "explain_func": SALIENCY}
    options = {"layers": ["9", "3"], "n_resamples": 200}
    first = ModelRandomisationSSIM(seed=1, **options)(**run)
    second = ModelRandomisationSSIM(seed=1, **options)(**run)
    other = ModelRandomisationSSIM(seed=2, **options)(**run)
    assert first == second and first != other
    calls = []

    def failing(model, inputs, targets, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("explainer broke")
        return SALIENCY(model=model, inputs=inputs, targets=targets)

    with pytest.raises(RuntimeError, match="explainer broke"):
        ModelRandomisationSSIM(**options)(**{**run, "explain_func": failing})
    assert before.diff(ModelSnapshot.of(cnn32)) == []
    assert torch.equal(torch_state, torch.random.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


def test_randomise_layer_default_and_truncated_normal():
    layer = nn.Linear(64, 32)
    reference = copy.deepcopy(layer)
    state = torch.random.get_rng_state()
    randomise_layer(layer, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        reference.reset_parameters()
    assert torch.equal(layer.weight, reference.weight) and torch.equal(layer.bias, reference.bias)
    randomise_layer(layer, seed=5, init="truncated_normal")
    assert layer.weight.abs().max() <= 0.02 and 0.007 < float(layer.weight.std()) < 0.0095
    with pytest.raises(ValueError, match="init"):
        randomise_layer(layer, seed=5, init="xavier")


def test_constant_maps_are_scored_not_fatal():
    def zeros(model, inputs, targets, **kwargs):
        return np.zeros_like(inputs)

    metric = ModelRandomisationSSIM(win_size=3, n_resamples=100)
    scores = metric(
        model=_reordered(), x_batch=_x_images(), y_batch=np.zeros(6, int), explain_func=zeros
    )
    # Two constant maps normalise to the same constant 0.5 map: SSIM is exactly 1.
    assert all(value == 1.0 for s in scores for value in s.values())
    assert metric.n_constant_maps == 6 * 4


def test_confidence_intervals_and_plot(cnn32, digits_batch, tmp_path):
    x, y = digits_batch
    metric = ModelRandomisationSSIM(layers=["9", "7"], n_resamples=2000)
    scores = metric(model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY, batch_size=3)
    assert len(scores) == len(x)
    for name, (low, high) in metric.confidence_intervals.items():
        mean = np.mean([s[name] for s in scores])
        assert low <= mean <= high and high - low < 1.0
    ax = metric.plot(label="Saliency", path_to_save=str(tmp_path / "mr.png"))
    assert ax.get_ylabel().startswith("SSIM") and (tmp_path / "mr.png").exists()


def test_bad_input(cnn32, digits_batch):
    x, y = digits_batch
    with pytest.raises(ValueError, match="execution order: 0, 3, 7, 9"):
        ModelRandomisationSSIM(layers=["fc9"])(
            model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY
        )
    with pytest.raises(ValueError, match="order"):
        ModelRandomisationSSIM(order="bottom_up")
    with pytest.raises(ValueError, match="win_size"):
        ModelRandomisationSSIM(win_size=4)
    with pytest.raises(ValueError, match="y_batch"):
        ModelRandomisationSSIM()(model=cnn32, x_batch=x, y_batch=y[:3], explain_func=SALIENCY)
    with pytest.raises(ValueError, match="y_batch holds classes"):
        RandomLogitSSIM()(model=cnn32, x_batch=x, y_batch=y + 10, explain_func=SALIENCY)
    with pytest.raises(ValueError, match="2-D images"):
        RandomLogitSSIM()(
            model=nn.Linear(16, 3),
            x_batch=np.zeros((4, 16), np.float32),
            y_batch=np.zeros(4, int),
            explain_func=SALIENCY,
        )


def test_random_logit_draws_other_classes_uniformly(cnn32):
    y = np.arange(3000) % 10
    metric = RandomLogitSSIM(seed=4)
    drawn = metric.custom_preprocess(
        model=cnn32, x_batch=np.zeros((3000, 1, 32, 32), np.float32), y_batch=y
    )
    other = drawn["y_other_batch"]
    assert np.all(other != y) and set(other) == set(range(10))
    counts = np.bincount((other - y) % 10, minlength=10)[1:]
    expected = 3000 / 9
    assert ((counts - expected) ** 2 / expected).sum() < 27.9  # χ²(8) at p = 0.0005
    metric._bar.close()


def test_random_logit_ssim_equals_skimage_reference(cnn32, digits_batch):
    x, y = digits_batch
    metric = RandomLogitSSIM(seed=2, n_resamples=500)
    scores = metric(model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY)
    other = metric.other_classes
    assert np.all(other != y)

    def normalised(targets):
        maps = SALIENCY(model=cnn32, inputs=x, targets=targets).astype(np.float64)[:, 0]
        lo = np.percentile(maps, 0.5, axis=(1, 2), keepdims=True)
        hi = np.percentile(maps, 99.5, axis=(1, 2), keepdims=True)
        return np.clip((hi - maps) / (hi - lo), 0, 1)

    a, b = normalised(y), normalised(other)
    for i in range(len(x)):
        ref = max(
            structural_similarity(a[i], b[i], win_size=5, data_range=2.0),
            structural_similarity(a[i], 1 - b[i], win_size=5, data_range=2.0),
        )
        assert abs(scores[i] - ref) < 1e-5
    low, high = metric.confidence_interval
    assert low <= np.mean(scores) <= high
    again = RandomLogitSSIM(seed=2, n_resamples=500)(
        model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY
    )
    assert again == scores


def test_both_metrics_run_in_quantus_evaluate(cnn32, digits_batch):
    x, y = digits_batch
    before = ModelSnapshot.of(cnn32)
    results = quantus.evaluate(
        metrics={
            "MRSSIM": ModelRandomisationSSIM(layers=["9"], n_resamples=100),
            "RandomLogitSSIM": RandomLogitSSIM(n_resamples=100),
        },
        xai_methods={"Saliency": SALIENCY, "GuidedBackprop": explain_func_from(GuidedBackprop)},
        model=cnn32,
        x_batch=x,
        y_batch=y,
        explain_func_kwargs={},
    )
    for method in ("Saliency", "GuidedBackprop"):
        assert len(results[method]["MRSSIM"]) == len(x)
        assert set(results[method]["MRSSIM"][0]) == {"9"}
        assert len(results[method]["RandomLogitSSIM"]) == len(x)
    gbp = np.mean(results["GuidedBackprop"]["RandomLogitSSIM"])
    sal = np.mean(results["Saliency"]["RandomLogitSSIM"])
    assert gbp > sal  # Sixt et al. (2020), Fig. 4a: Guided BP is class-insensitive
    assert before.diff(ModelSnapshot.of(cnn32)) == []


def test_evaluate_at_randomises_every_layer_but_scores_only_checkpoints(cnn32, digits_batch):
    # Oracle: the full cascade. Scoring only at checkpoints must give the same per-sample
    # scores there (every layer above is still randomised), and explain only at checkpoints.
    x, y = digits_batch
    full = ModelRandomisationSSIM(seed=5, n_resamples=100)
    every = full(model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY)
    calls: list[int] = []

    def counting(model, inputs, targets, **kwargs):
        calls.append(1)
        return SALIENCY(model=model, inputs=inputs, targets=targets, **kwargs)

    sparse = ModelRandomisationSSIM(seed=5, n_resamples=100, evaluate_at=3)
    some = sparse(model=cnn32, x_batch=x, y_batch=y, explain_func=counting)
    cascade = full.layer_names
    first, middle, last = sparse.layer_names  # spread evenly: both ends and one between
    assert len(cascade) > 3 and (first, last) == (cascade[0], cascade[-1])
    assert 0 < cascade.index(middle) < len(cascade) - 1
    assert len(calls) == 1 + 3  # the reference map and one per checkpoint
    for mine, reference in zip(some, every, strict=True):
        for name in sparse.layer_names:
            assert abs(mine[name] - reference[name]) < 1e-9
    named = ModelRandomisationSSIM(seed=5, n_resamples=100, evaluate_at=[cascade[1]])
    one = named(model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY)
    assert [list(s) for s in one] == [[cascade[1]]] * len(x)
    assert all(abs(s[cascade[1]] - r[cascade[1]]) < 1e-9 for s, r in zip(one, every, strict=True))
    with pytest.raises(ValueError, match="cascading"):
        ModelRandomisationSSIM(order="independent", evaluate_at=2)
    with pytest.raises(ValueError, match="not randomised"):
        ModelRandomisationSSIM(evaluate_at=["nope"])(
            model=cnn32, x_batch=x, y_batch=y, explain_func=SALIENCY
        )
    with pytest.raises(ValueError, match="≥ 1"):
        ModelRandomisationSSIM(evaluate_at=0)
